"""Which zone a `WorkerTermination` run's days are days in (workflow code: deterministic).

HCM states the termination date, and pssync derives the payroll cutoff and the end of the
rescind window, as calendar days where the worker works (`TerminationInput.time_zone`). Runs
begun before the `termination-local-midnight` patch waited for UTC midnights, and their
histories hold those timers: they keep UTC days when they replay.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.v1.worker_termination import LOCAL_MIDNIGHT_PATCH, TerminationInput


def days_in(request: TerminationInput) -> str | None:
    """The worker's IANA zone for a run begun since the patch; None (UTC days) without a zone
    or for a run whose history predates the patch. Call it once, at the start of the run."""
    if request.time_zone is None or not workflow.patched(LOCAL_MIDNIGHT_PATCH):
        return None
    return request.time_zone
