"""The time-to-invoice bench's world: provisioned projects, the entries made for them, and the
`Bench` that sets them up and hands them to the pipelines the way the sweep does."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from temporalio.client import Client, WorkflowHistory

from activities.time_to_invoice import SWEEP_PAGE, signal_pipeline
from bench._harness import GatewayProcess, Twins, WorkerRunner, until
from bench._harness.histories import decode_inputs
from contracts.naming import TASK_QUEUE, opportunity_workflow_id, time_pipeline_workflow_id
from contracts.v1.processes import ProvisionProjectResult
from contracts.v1.time_to_invoice import (
    ENTRIES_CHANGED_SIGNAL,
    STATUS_QUERY,
    EntriesChanged,
    EntryKind,
    EntryRef,
    PipelineStatus,
    TimePipelineInput,
    entry_key,
)
from demo import deal_from_template, provisionable_templates, wait_for_workflow
from sandbox.seed import build_firm
from stack import Stack

SEED = 7
SIGNAL_CHUNK = SWEEP_PAGE
"""Entries per `entries_changed` signal, as the sweep sends them."""
SWEEP_OUT_S = 86_400.0


@dataclass
class Project:
    psa_id: str
    made: int = 0
    """Entries generated for this project so far (the next one's index)."""


@dataclass
class Entry:
    project: str
    entry_id: str

    @property
    def key(self) -> str:
        return entry_key(EntryKind.TIME, self.entry_id)


@dataclass
class EntryFactory:
    """What the entries are made of: users (active workers) and days."""

    users: list[str]
    worker_of_user: dict[str, str]
    days: list[date]

    def next_entry(self, project: Project) -> dict[str, Any]:
        """A time entry no other entry of the project looks like (worker, day, minutes), so
        the duplicate check never fires: users fastest, then days, then durations."""
        k = project.made
        project.made += 1
        users, days = len(self.users), len(self.days)
        minutes = 60 + 15 * (k // (users * days))
        if minutes > 1440:
            raise ValueError("too many entries for the workers and days chosen")
        return {
            "workspace_id": int(project.psa_id),
            "user_id": int(self.users[k % users]),
            "date_performed": self.days[(k // users) % days].isoformat(),
            "time_in_minutes": minutes,
        }


class Bench:
    def __init__(
        self,
        stack: Stack,
        args: argparse.Namespace,
        runner: WorkerRunner,
        gateway: GatewayProcess | None = None,
    ):
        self.stack = stack
        self.args = args
        self.runner = runner
        self.gateway = gateway
        """The gateway in its own process (None: the stack's, in this process)."""
        self.client: Client = stack.client
        self.twins = Twins(stack)
        self.firm = build_firm(SEED)
        self.deal_counter = 0

    # -- set-up -------------------------------------------------------------------------------

    async def provision(self, count: int) -> list[str]:
        """`count` won deals through the OpportunityToProject saga (USD rate cards): the PSA
        project ids."""
        from connectors.crm import SalesforceCrm

        templates = [
            i
            for i in provisionable_templates(self.firm)
            if self.firm.opportunities[i].currency == "USD"
        ]
        crm = SalesforceCrm(self.stack.settings.crm.model_copy(update={"max_concurrency": 32}))

        async def one(n: int) -> str:
            index = templates[n % len(templates)]
            new = deal_from_template(
                self.firm, index, name=f"{self.firm.opportunities[index].name} (tti bench {n})"
            )
            opp_id = await crm.create_opportunity(new)
            await crm.set_stage(opp_id, "Closed Won")
            wf_id = opportunity_workflow_id(self.stack.settings.crm.tenant, opp_id)
            handle = await wait_for_workflow(
                self.client, wf_id, timeout_s=120, result_type=ProvisionProjectResult
            )
            result: ProvisionProjectResult = await asyncio.wait_for(handle.result(), 120)
            return result.psa_project_id

        try:
            return list(await asyncio.gather(*(one(n) for n in range(count))))
        finally:
            await crm.aclose()

    async def entry_factory(self) -> EntryFactory:
        today = date.today()
        first = date(today.year, today.month, 1)
        first = (first - timedelta(days=1)).replace(day=1)  # the first of last month
        days = [first + timedelta(days=d) for d in range((today - first).days)]
        users = await self.twins.worker_users()
        fit = [
            w
            for w in self.firm.workers
            if w.status == "active"
            and w.termination_date is None
            and w.hire_date < first
            and w.id in users
        ]
        if len(fit) < self.args.workers:
            raise RuntimeError(f"only {len(fit)} workers fit, {self.args.workers} asked for")
        chosen = fit[: self.args.workers]
        return EntryFactory(
            users=[users[w.id] for w in chosen],
            worker_of_user={users[w.id]: w.id for w in chosen},
            days=days,
        )

    async def make_entries(
        self, factory: EntryFactory, projects: list[Project], count: int, *, approved: bool
    ) -> list[Entry]:
        """`count` entries spread round-robin over `projects`, created in one go per chunk."""
        specs = [factory.next_entry(projects[i % len(projects)]) for i in range(count)]
        ids = await self.twins.bulk(specs, approved=approved)
        return [Entry(str(s["workspace_id"]), i) for s, i in zip(specs, ids, strict=True)]

    # -- helpers ------------------------------------------------------------------------------

    async def counts(self) -> dict[str, int]:
        return await asyncio.to_thread(self.stack.store.time_posting_counts)

    async def hand_over(
        self, entries: list[Entry], defaults: TimePipelineInput, source: str
    ) -> None:
        """Signal-with-start each project's pipeline with its entries, `SIGNAL_CHUNK` a signal,
        projects concurrently — what the sweep does with what it finds."""
        by_project: dict[str, list[EntryRef]] = {}
        for e in entries:
            by_project.setdefault(e.project, []).append(
                EntryRef(kind=EntryKind.TIME, entry_id=e.entry_id, version="2")
            )

        async def one(project: str, refs: list[EntryRef]) -> None:
            for i in range(0, len(refs), SIGNAL_CHUNK):
                await signal_pipeline(
                    self.client,
                    defaults,
                    project,
                    ENTRIES_CHANGED_SIGNAL,
                    EntriesChanged(refs=refs[i : i + SIGNAL_CHUNK], source=source),
                    task_queue=TASK_QUEUE,
                )

        await asyncio.gather(*(one(p, r) for p, r in by_project.items()))

    async def wait_posted(self, target: int, *, timeout_s: float, what: str) -> dict[str, int]:
        """Until the ledger holds `target` posted rows; fails early on exception items or when
        the worker or the gateway process has gone."""

        async def check() -> dict[str, int] | None:
            self.runner.check_alive()
            if self.gateway is not None:
                self.gateway.check_alive()
            c = await self.counts()
            if c["exception"] or c["rejected"]:
                raise RuntimeError(f"{what}: entries became exception items: {c}")
            return c if c["posted"] >= target else None

        result: dict[str, int] = await until(check, timeout_s=timeout_s, every_s=0.05, what=what)
        return result

    async def pipeline_statuses(self, projects: list[str]) -> list[PipelineStatus]:
        tenant = self.stack.settings.psa.tenant
        return list(
            await asyncio.gather(
                *(
                    self.client.get_workflow_handle(time_pipeline_workflow_id(tenant, p)).query(
                        STATUS_QUERY, result_type=PipelineStatus
                    )
                    for p in projects
                )
            )
        )

    @staticmethod
    def latency_projects(entries: list[Entry]) -> list[str]:
        return sorted({e.project for e in entries})

    async def pipeline_histories(self, projects: list[str]) -> list[WorkflowHistory]:
        """The pipelines' histories with the inputs the timeline reads decrypted (histories
        come from the server as stored: encrypted by pssync's payload codec)."""
        tenant = self.stack.settings.psa.tenant
        histories = list(
            await asyncio.gather(
                *(
                    self.client.get_workflow_handle(
                        time_pipeline_workflow_id(tenant, p)
                    ).fetch_history()
                    for p in projects
                )
            )
        )
        await decode_inputs(histories, self.client.data_converter.payload_codec)
        return histories
