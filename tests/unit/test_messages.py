"""Workflow messages survive a rolling deploy, and no model default reads the clock.

During a deploy an older worker receives signals, updates and carried state from a newer
gateway or run: a message with one field it does not know must still be accepted, not
refused (a refused signal is dropped for good). Canonical entities and messages are built
inside workflows, where only `workflow.now()` and `workflow.random()` are deterministic, so
no default may reach for the clock, randomness or uuid.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio.contrib.pydantic import pydantic_data_converter

import contracts.v1
from contracts.v1.processes import ExceptionResolution, ResolutionAction
from contracts.v1.time_to_invoice import EntriesChanged, PipelineCarry, TimePipelineInput


def _modules() -> Iterator[Any]:
    for info in pkgutil.iter_modules(contracts.v1.__path__):
        yield importlib.import_module(f"contracts.v1.{info.name}")


def _models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for module in _modules():
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseModel) and obj.__module__.startswith("contracts.v1"):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


MESSAGES = [
    m
    for m in _models()
    if any(base.__name__ == "Message" for base in m.__mro__[1:]) and m.__name__ != "Message"
]


def test_there_are_messages() -> None:
    assert len(MESSAGES) > 30


@pytest.mark.parametrize("model", MESSAGES, ids=lambda m: m.__name__)
def test_every_message_tolerates_a_field_it_does_not_know(model: type[BaseModel]) -> None:
    assert model.model_config.get("extra") == "ignore"


def test_an_old_worker_takes_a_newer_signal_through_the_data_converter() -> None:
    newer = {
        "refs": [{"kind": "time", "entry_id": "T-1", "version": "3", "approver": "new field"}],
        "source": "webhook",
        "priority": "high",  # added by a newer gateway
    }
    (payload,) = pydantic_data_converter.payload_converter.to_payloads([newer])
    (signal,) = pydantic_data_converter.payload_converter.from_payloads([payload], [EntriesChanged])
    assert signal.refs[0].entry_id == "T-1" and signal.refs[0].version == "3"


def test_an_older_carry_without_the_desk_still_starts_a_run() -> None:
    older = {"psa_tenant": "default", "psa_project_id": "101", "carry": {"pending": []}}
    request = TimePipelineInput.model_validate(older)
    assert request.carry == PipelineCarry()
    resolution = ExceptionResolution.model_validate(
        {"item_id": "exc_1", "action": "retry", "actor": "ops", "reason_code": "later"}
    )
    assert resolution.action is ResolutionAction.RETRY


def _takes_data(factory: Any) -> bool:
    try:
        return bool(inspect.signature(factory).parameters)
    except ValueError:  # a builtin such as list or dict
        return False


class _NoClock:
    """Stands in for `datetime`, `time`, `uuid` and `random` in the contracts' modules."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a model default read {name} (the clock or randomness)")


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.__name__)
def test_no_default_reads_the_clock_or_randomness(
    model: type[BaseModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in _modules():
        for name in ("datetime", "time", "uuid", "random", "uuid4"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, _NoClock())
    for field in model.model_fields.values():
        factory = field.default_factory
        if factory is not None and not _takes_data(factory):
            factory()  # type: ignore[call-arg]


def test_an_entity_built_without_a_time_has_none() -> None:
    from contracts import System
    from contracts.v1 import Customer

    customer = Customer(external_id="ACC-1", name="Acme", source_system=System.CRM)
    assert customer.updated_at is None
    stamped = customer.model_copy(update={"updated_at": datetime(2026, 1, 1, tzinfo=UTC)})
    assert stamped.updated_at is not None
