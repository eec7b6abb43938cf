"""The PSA and ERP the workforce bench writes to, and how it counts and checks them.

- `twins` (the default): the real `KantataPsa` and `NetSuiteErp` adapters against the PSA and
  ERP twins, each served in this process on a free port (in memory, fault injection off),
  reached with the twins' static bearer token. Vendor calls are the HTTP requests the twins
  counted (their own request stats; the bench reads the twins' databases, not their APIs, so
  it adds none). The end state is read from the twins' tables: each worker's Kantata user
  (found by pssync's `hcm_worker` external reference: role, and the User custom fields for
  location, practice, manager, FTE, first bookable day and leave calendar), the NetSuite labor
  cost rows of `customrecord_pssync_labor_cost_rate` and the employee's `laborCost`.
- `fakes`: the connectors' in-memory fakes (`ledger.LoggedPsa` / `LoggedErp`), as before;
  vendor calls are the fakes' port calls.

Either way `view()` gives `ledger.verify` a `LoggedPsa` / `LoggedErp` holding the end state and
the write log (every resource write; every labor cost row with the row in force after it).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import SecretStr
from sqlmodel import select

from bench._harness import STATIC_TOKEN, gather_limited, serve_app
from bench._workforce.ledger import LoggedErp, LoggedPsa, ResourceWriteLog, psa_calls
from connectors.erp import NetSuiteErp
from connectors.erp.employees import ErpEmployee as Employee
from connectors.erp.labor_cost import LaborCostRate, rate_on
from connectors.psa import KantataPsa
from connectors.psa._constants import WORKER_MODEL
from connectors.psa.kantata.resources import RESOURCE_SUBJECT, resource_from_kantata
from connectors.psa.resources import PsaResource
from contracts.money import Money
from contracts.settings import SystemSettings
from sandbox import erp as erp_twin
from sandbox import psa as psa_twin
from sandbox._twin import TwinState
from sandbox.erp.labor_cost_tables import ErpLaborCostRateRow
from sandbox.erp.tables import ErpDepartment, ErpEmployee

SYSTEM_CHOICES = ("twins", "fakes")


class Systems:
    """The PSA and ERP of one phase (the lifecycle, or the naive baseline)."""

    name = ""
    psa: Any
    erp: Any

    def calls(self) -> dict[str, int]:
        """Vendor calls so far, by system ("psa", "erp")."""
        raise NotImplementedError

    def writes(self) -> int:
        """Resource writes and labor cost rows so far (cheap: the write logs' lengths)."""
        raise NotImplementedError

    def view(self) -> tuple[LoggedPsa, LoggedErp]:
        """The end state and the write logs, for `ledger.verify` and `ledger.last_write`."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def routes(self) -> dict[str, int]:
        """Vendor calls so far by method and route (ids replaced by `{id}`), where known."""
        return {}

    async def departments(self, codes: set[str]) -> None:
        """Set-up: the ERP's departments for the HCM cost center codes (the fakes accept
        any code)."""
        return None

    async def employees(self, worker_ids: list[str]) -> None:
        """The naive baseline's set-up: each worker's ERP employee, as HR's own feed would
        have made it (the naive workflow writes only the resource and the rate row, and a
        NetSuite labor cost row becomes a labor cost only on an employee). The fakes keep
        labor costs without employees: nothing to do."""
        return None

    async def aclose(self) -> None:
        return None


class FakeSystems(Systems):
    name = "fakes"

    def __init__(self) -> None:
        self.psa, self.erp = LoggedPsa(), LoggedErp()

    def calls(self) -> dict[str, int]:
        return {"psa": psa_calls(self.psa), "erp": self.erp.calls}

    def writes(self) -> int:
        return len(self.psa.writes) + len(self.erp.writes)

    def view(self) -> tuple[LoggedPsa, LoggedErp]:
        return self.psa, self.erp

    def describe(self) -> str:
        return "in-memory FakePsa / FakeErp (calls: the fakes' port calls)"


class LoggingKantata(ResourceWriteLog, KantataPsa):
    """`KantataPsa` with every resource write logged (monotonic time, resource)."""

    def __init__(self, settings: SystemSettings) -> None:
        super().__init__(settings)
        self.writes = []


class LoggingNetSuite(NetSuiteErp):
    """`NetSuiteErp` with every labor cost row write logged (monotonic time, row, the row in
    force on `today` after it, read from the twin's table: no request of its own)."""

    def __init__(self, settings: SystemSettings, twin: TwinState) -> None:
        super().__init__(settings)
        self.twin = twin
        self.writes: list[tuple[float, LaborCostRate, LaborCostRate | None]] = []

    async def put_labor_cost_rate(self, rate: LaborCostRate, *, today: date) -> LaborCostRate:
        out = await super().put_labor_cost_rate(rate, today=today)
        in_force = rate_on(labor_rows(self.twin, rate.worker_id).get(rate.worker_id, []), today)
        self.writes.append((time.monotonic(), rate, in_force))
        return out


class TwinSystems(Systems):
    """The PSA and ERP twins served in this process, the real adapters against them."""

    name = "twins"

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self.psa_app = psa_twin.create_app()
        self.erp_app = erp_twin.create_app()
        self.psa_state: TwinState = self.psa_app.state.twin
        self.erp_state: TwinState = self.erp_app.state.twin

    async def __aenter__(self) -> TwinSystems:
        self.tally: Counter[str] = Counter()
        psa_url = await self._stack.enter_async_context(
            serve_app(RouteTally(self.psa_app, "psa", self.tally))
        )
        erp_url = await self._stack.enter_async_context(
            serve_app(RouteTally(self.erp_app, "erp", self.tally))
        )
        self.psa = LoggingKantata(_settings(psa_url))
        self.erp = LoggingNetSuite(_settings(erp_url), self.erp_state)
        self._stack.push_async_callback(self.erp.aclose)
        self._stack.push_async_callback(self.psa.aclose)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._stack.aclose()

    def calls(self) -> dict[str, int]:
        return {"psa": self.psa_state.requests, "erp": self.erp_state.requests}

    def writes(self) -> int:
        return len(self.psa.writes) + len(self.erp.writes)

    def routes(self) -> dict[str, int]:
        return dict(self.tally)

    async def departments(self, codes: set[str]) -> None:
        with self.erp_state.session() as s:
            for code in sorted(codes):
                s.add(ErpDepartment(external_id=code, name=f"Cost center {code}"))
            s.commit()

    def view(self) -> tuple[LoggedPsa, LoggedErp]:
        psa, erp = LoggedPsa(), LoggedErp()
        psa.resources.update(psa_resources(self.psa_state))
        psa.writes = self.psa.writes
        erp.labor_rates.update(labor_rows(self.erp_state))
        erp.cost_rates.update(labor_costs(self.erp_state))
        erp.writes = self.erp.writes
        return psa, erp

    async def employees(self, worker_ids: list[str]) -> None:
        async def one(worker_id: str) -> None:
            await self.erp.upsert_employee(
                Employee(worker_id=worker_id, first_name="Bench", last_name=worker_id)
            )

        await gather_limited(worker_ids, 8, one)

    def describe(self) -> str:
        return (
            "KantataPsa / NetSuiteErp against the PSA / ERP twins served in this process "
            "(in memory, no faults; calls: the twins' request counts)"
        )


class RouteTally:
    """ASGI wrapper counting a twin's vendor requests by method and route (`/_admin` left
    out), ids and external ids replaced: where the calls the twin's own stats count go."""

    def __init__(self, app: Any, system: str, tally: Counter[str]) -> None:
        self.app, self.system, self.tally = app, system, tally

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = str(scope.get("path", ""))
        if scope.get("type") == "http" and not path.startswith("/_admin"):
            route = _IDS.sub("/{id}", _EIDS.sub("eid:{id}", path))
            self.tally[f"{self.system} {scope.get('method')} {route}"] += 1
        await self.app(scope, receive, send)


_EIDS = re.compile(r"eid:[^/]+")
_IDS = re.compile(r"/\d+(?=[./]|$)")


def top_routes(before: dict[str, int], after: dict[str, int], n: int = 15) -> dict[str, int]:
    """The `n` routes with the most calls between two `routes()` readings."""
    delta = Counter({k: v - before.get(k, 0) for k, v in after.items()})
    return {k: v for k, v in delta.most_common(n) if v}


def make_systems(name: str) -> Any:
    """An async context manager giving the `Systems` of `name` (`SYSTEM_CHOICES`)."""
    if name == "twins":
        return TwinSystems()
    if name == "fakes":
        return contextlib.nullcontext(FakeSystems())
    raise ValueError(f"--systems {name!r}: one of {', '.join(SYSTEM_CHOICES)}")


def _settings(base_url: str) -> SystemSettings:
    return SystemSettings(base_url=base_url, auth="bearer", token=SecretStr(STATIC_TOKEN))


# --------------------------------------------------------------------------- twin state


def psa_resources(state: TwinState) -> dict[str, PsaResource]:
    """Each worker's resource as the PSA twin holds it: the user pssync's `hcm_worker`
    reference names, its role and the User custom fields' values (mapped as the adapter reads
    them). A worker with two users (a double invitation) is reported on the last one."""
    with state.session() as s:
        refs = s.exec(
            select(psa_twin.PsaExternalReference).where(
                psa_twin.PsaExternalReference.subject_type == RESOURCE_SUBJECT,
                psa_twin.PsaExternalReference.service_model == WORKER_MODEL,
            )
        ).all()
        users = {u.id: u for u in s.exec(select(psa_twin.PsaUser)).all()}
        names = {f.id: f.name for f in s.exec(select(psa_twin.PsaCustomField)).all()}
        values = s.exec(
            select(psa_twin.PsaCustomFieldValue).where(
                psa_twin.PsaCustomFieldValue.subject_type == RESOURCE_SUBJECT
            )
        ).all()
    custom: dict[int, dict[str, str]] = {}
    for v in values:
        custom.setdefault(v.subject_id, {})[names.get(v.custom_field_id, "")] = v.value
    out: dict[str, PsaResource] = {}
    for ref in sorted(refs, key=lambda r: r.id or 0):
        user = users.get(ref.subject_id)
        if user is None:
            continue
        body = {
            "full_name": user.full_name,
            "email_address": user.email_address,
            "role": user.role,
            "active": user.active,
        }
        worker_id = ref.service_model_ref
        out[worker_id] = resource_from_kantata(worker_id, body, custom.get(user.id or 0, {}))
    return out


def labor_rows(state: TwinState, worker_id: str | None = None) -> dict[str, list[LaborCostRate]]:
    """The ERP twin's labor cost rows (of one worker, or all), by worker, oldest first."""
    query = select(ErpLaborCostRateRow)
    if worker_id is not None:
        query = query.where(ErpLaborCostRateRow.employee == worker_id)
    with state.session() as s:
        rows = s.exec(query).all()
    out: dict[str, list[LaborCostRate]] = {}
    for row in rows:
        if row.employee is None or row.rate is None or row.effective is None:
            continue
        out.setdefault(row.employee, []).append(
            LaborCostRate(
                worker_id=row.employee,
                rate=Money(Decimal(row.rate), row.currency or "USD"),
                effective_from=row.effective,
                key=row.event or row.external_id or str(row.id),
                sequence=row.sequence or 0,
            )
        )
    for history in out.values():
        history.sort(key=lambda r: (r.effective_from, r.sequence, r.key))
    return out


def labor_costs(state: TwinState) -> dict[str, Money]:
    """Each employee's labor cost (`laborCost`), by external ID (the HCM worker id)."""
    with state.session() as s:
        employees = s.exec(select(ErpEmployee)).all()
    return {
        e.external_id: Money(Decimal(str(e.labor_cost)), e.currency or "USD")
        for e in employees
        if e.external_id and e.labor_cost not in (None, "")
    }
