"""A person resolves an item the moment the store shows it: the owning run may not have taken
it in yet (its opening activity's result is on its way back). The gateway asks again for a
short while instead of answering 409 "not open" for an item the person can see open."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.settings import load_settings
from contracts.v1.processes import ExceptionResolution, ResolutionAction
from gateway import processes as gp
from gateway.errors import GatewayError
from gateway.metrics import GatewayMetrics


def _processes(tmp_path: Any) -> gp.Processes:
    return gp.Processes(None, load_settings(home=tmp_path), GatewayMetrics())  # type: ignore[arg-type]


RESOLUTION = ExceptionResolution(
    item_id="exc_1", action=ResolutionAction.RETRY, actor="ops", actor_roles=["ops"]
)


async def test_a_run_that_takes_the_item_in_a_moment_later_accepts_it(tmp_path: Any) -> None:
    processes = _processes(tmp_path)
    answers: list[Any] = [
        GatewayError(409, "NoOpenException", "not open in this run"),
        GatewayError(409, "NoOpenException", "not open in this run"),
        {"outcome": "posted"},
    ]

    async def update(workflow_id: str, name: str, arg: Any) -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    processes.update = update  # type: ignore[method-assign]
    assert await processes.resolve("wf", RESOLUTION) == {"outcome": "posted"}


async def test_other_refusals_are_answered_at_once(tmp_path: Any) -> None:
    processes = _processes(tmp_path)
    calls = 0

    async def update(workflow_id: str, name: str, arg: Any) -> Any:
        nonlocal calls
        calls += 1
        raise GatewayError(409, "AlreadyResolved", "already resolved")

    processes.update = update  # type: ignore[method-assign]
    with pytest.raises(GatewayError) as refused:
        await processes.resolve("wf", RESOLUTION)
    assert refused.value.code == "AlreadyResolved" and calls == 1


async def test_an_item_never_taken_in_is_refused_after_the_grace(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gp, "OPENING_GRACE_S", 0.5)
    processes = _processes(tmp_path)

    async def update(workflow_id: str, name: str, arg: Any) -> Any:
        raise GatewayError(409, "NoOpenException", "not open in this run")

    processes.update = update  # type: ignore[method-assign]
    with pytest.raises(GatewayError) as refused:
        await processes.resolve("wf", RESOLUTION)
    assert refused.value.code == "NoOpenException"
