"""The saga helper: compensations registered before their steps, run in reverse on failure.

    saga = Saga()
    saga.add("archive PSA project", lambda: archive(enterprise_id))   # before the step:
    psa_id = await create_shell(...)                                  # a crash after the
                                                                      # vendor applied it
    ...                                                               # still leaves it to undo
    except (ActivityError, ApplicationError, asyncio.CancelledError) as err:
        failures = await saga.compensate()
        raise saga.failure(err, f"provisioning {opp} failed", type="ProvisioningFailed")

One failure semantics for every workflow: every registered undo runs, in reverse order, even
when one before it failed; the failures are reported (label and reason), not raised over the
original error, which stays the cause of what the run finally raises.

Deterministic: the undos are the workflow's own coroutines; no I/O here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError


@dataclass(frozen=True)
class CompensationFailure:
    label: str
    reason: str

    def __str__(self) -> str:
        return f"{self.label}: {self.reason}"


class Saga:
    """The compensations of one run, in the order their steps were started."""

    def __init__(self) -> None:
        self._undos: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        self.failures: list[CompensationFailure] = []
        self.compensated: list[str] = []

    def add(self, label: str, undo: Callable[[], Awaitable[Any]]) -> None:
        """Register `undo` *before* its step runs: a step whose answer was lost may still
        have been applied, and its undo must be idempotent anyway."""
        self._undos.append((label, undo))

    @property
    def labels(self) -> list[str]:
        """The registered compensations, newest first (the order they would run in)."""
        return [label for label, _ in reversed(self._undos)]

    def __bool__(self) -> bool:
        return bool(self._undos)

    async def compensate(self) -> list[CompensationFailure]:
        """Run every registered undo in reverse; one that fails does not stop the others.
        Returns (and keeps in `failures`) the ones that failed. Each undo runs once."""
        undos, self._undos = self._undos, []
        for label, undo in reversed(undos):
            workflow.logger.info("compensating: %s", label)
            try:
                await undo()
            except (ActivityError, ApplicationError, ChildWorkflowError) as err:
                failure = CompensationFailure(label, reason_of(err))
                workflow.logger.error("compensation failed: %s", failure)
                self.failures.append(failure)
            else:
                self.compensated.append(label)
        return list(self.failures)

    def failure(self, cause: BaseException, message: str, *, type: str) -> ApplicationError:
        """The error a compensated run ends with: non-retryable, naming the original reason
        and any compensation that failed (also in `details`); raise it `from cause`."""
        text = f"{message}: {reason_of(cause)}"
        if self.failures:
            text += "; compensation failed: " + "; ".join(str(f) for f in self.failures)
        error = ApplicationError(
            text,
            {
                "compensated": list(self.compensated),
                "compensation_failures": [str(f) for f in self.failures],
            },
            type=type,
            non_retryable=True,
        )
        error.__cause__ = cause
        return error


def reason_of(err: BaseException) -> str:
    """A person-readable reason: the activity's own error rather than the wrapper's."""
    if isinstance(err, asyncio.CancelledError):
        return "cancelled"
    if isinstance(err, ActivityError | ChildWorkflowError) and err.cause is not None:
        cause = err.cause
        return str(cause.message if isinstance(cause, ApplicationError) else cause)
    if isinstance(err, ApplicationError):
        return err.message
    return str(err)
