"""Workforce, the comparison itself (pure: no I/O): a worker HCM shows as a leaver, their PSA
assignments and time, and the state of their termination run -> the drifts.

    findings = compare_leaver(context, leaver)

A leaver is a worker whose termination HCM holds and whose termination date has come (a
termination dated later is still ahead: its run waits for the date). After their last day
worked (the termination date when HCM gives none) the PSA must show:

- no assignment running past the last day -> else `leaver_open_assignment` (one per
  assignment);
- no time entry still open (unapproved) on or before the last day -> else
  `leaver_open_time_entry` (one per entry);
- no time booked after the last day -> else `leaver_future_time` (one per entry).

The process that makes it so is the termination saga (`WorkerTermination`, one run per worker
and termination date). What a run does with the drift depends on that run:

- no run (the HCM poller never saw the termination: it was entered in a window the poller had
  already read, or before pssync ran), or a run still on its way to its effective steps ->
  **repair**: the run is started (or joined: it is keyed by worker and date);
- a run that took its effective steps (or finished) and the drift is still there, or a run a
  person or HCM rescinded -> **escalate**: a person decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from contracts.systems import System
from contracts.v1.reconciliation import Disposition, Domain, Drift, DriftKind


class RunState(StrEnum):
    NONE = "none"
    """No termination run for the worker and date."""
    IN_PROGRESS = "in_progress"
    """Running, its effective steps (ending assignments, closing time entry) not yet done."""
    ACTED = "acted"
    """Its effective steps are done (it may still wait for payroll or a rescind), or it
    finished."""
    RESCINDED = "rescinded"


@dataclass(frozen=True)
class LeaverAssignment:
    assignment_id: str
    psa_project_id: str
    start_date: date
    end_date: date


@dataclass(frozen=True)
class LeaverTime:
    entry_id: str
    psa_project_id: str
    performed: date
    approved: bool


@dataclass(frozen=True)
class Leaver:
    worker_id: str
    termination_date: date
    last_day: date
    assignments: Sequence[LeaverAssignment] = ()
    time: Sequence[LeaverTime] = ()
    run: RunState = RunState.NONE
    run_id: str | None = None
    updated_at: datetime | None = None
    """When HCM last changed the worker."""


@dataclass(frozen=True)
class WorkforceContext:
    tenant: str
    today: date
    now: datetime
    settle_s: float = 300.0
    since: date | None = None
    """Terminations dated before this date's month are not compared (the key `period` is
    the termination's month, so a run from `since` closes only drifts of its own scope)."""
    project: str | None = None
    """Only this PSA project's assignments and time."""


@dataclass(frozen=True)
class TerminationRepair:
    """Start (or join) the worker's termination run."""

    worker_id: str
    termination_date: date
    last_day: date


@dataclass(frozen=True)
class WorkforceFinding:
    drift: Drift
    repair: TerminationRepair | None = None
    evidence: dict[str, str | None] = field(default_factory=dict)


def is_leaver(termination_date: date | None, today: date) -> bool:
    """HCM holds a termination whose date has come."""
    return termination_date is not None and termination_date <= today


def compare_leaver(ctx: WorkforceContext, leaver: Leaver) -> list[WorkforceFinding]:
    """Every workforce drift of one leaver (none for a termination before `since`, or one HCM
    changed within the settle window: the HCM poller may not have read it yet)."""
    period = f"{leaver.termination_date:%Y-%m}"
    if ctx.since is not None and period < f"{ctx.since:%Y-%m}":
        return []
    if leaver.updated_at is not None and ctx.now - leaver.updated_at < timedelta(
        seconds=ctx.settle_s
    ):
        return []
    last = leaver.last_day
    found: list[tuple[DriftKind, str, dict[str, str], dict[str, str | None], str]] = []
    for a in leaver.assignments:
        if a.end_date > last and _in_scope(ctx, a.psa_project_id):
            found.append((
                DriftKind.WORKFORCE_LEAVER_OPEN_ASSIGNMENT,
                a.psa_project_id,
                {"assignment": a.assignment_id},
                {"hcm": last.isoformat(), "psa": a.end_date.isoformat()},
                f"assignment {a.assignment_id} runs to {a.end_date}",
            ))  # fmt: skip
    for t in leaver.time:
        if not _in_scope(ctx, t.psa_project_id):
            continue
        if t.performed > last:
            found.append((
                DriftKind.WORKFORCE_LEAVER_FUTURE_TIME,
                t.psa_project_id,
                {"entry": f"time:{t.entry_id}"},
                {"hcm": last.isoformat(), "psa": t.performed.isoformat()},
                f"time entry {t.entry_id} is booked on {t.performed}"
                + (" and approved" if t.approved else ""),
            ))  # fmt: skip
        elif not t.approved:
            found.append((
                DriftKind.WORKFORCE_LEAVER_OPEN_TIME_ENTRY,
                t.psa_project_id,
                {"entry": f"time:{t.entry_id}"},
                {"hcm": last.isoformat(), "psa": t.performed.isoformat()},
                f"time entry {t.entry_id} of {t.performed} is still unapproved",
            ))  # fmt: skip
    if not found:
        return []
    disposition, why = _disposition(leaver)
    repair = (
        TerminationRepair(leaver.worker_id, leaver.termination_date, last)
        if disposition is Disposition.REPAIR
        else None
    )
    evidence: dict[str, str | None] = {
        "termination_date": leaver.termination_date.isoformat(),
        "last_day_worked": last.isoformat(),
        "termination_run": leaver.run_id,
        "run_state": leaver.run.value,
    }
    findings = []
    for kind, project, extra, values, what in found:
        drift = Drift(
            domain=Domain.WORKFORCE,
            kind=kind,
            keys={
                "tenant": ctx.tenant,
                "worker_id": leaver.worker_id,
                "period": period,
                "psa_project_id": project,
                **extra,
            },
            values=values,
            owner=System.PSA,
            disposition=disposition,
            detail=f"worker {leaver.worker_id} left on {last} (HCM): {what}; {why}",
        )
        findings.append(WorkforceFinding(drift, repair, evidence))
    return findings


def _in_scope(ctx: WorkforceContext, project: str) -> bool:
    return ctx.project is None or project == ctx.project


def _disposition(leaver: Leaver) -> tuple[Disposition, str]:
    match leaver.run:
        case RunState.NONE:
            return Disposition.REPAIR, "no termination run: it is started"
        case RunState.IN_PROGRESS:
            return Disposition.REPAIR, "the termination run is on its way: joined"
        case RunState.RESCINDED:
            return (
                Disposition.ESCALATE,
                f"the termination run {leaver.run_id} was rescinded, yet HCM shows the "
                "worker terminated: a person decides",
            )
    return (
        Disposition.ESCALATE,
        f"the termination run {leaver.run_id} took its steps and it is still so: a person decides",
    )
