"""Reconciliation of labor actuals end to end on the real dev server: time approved in the PSA
twin reaches the ERP twin through webhooks, the gateway and a real `pssync worker` process;
then the twins drift behind pssync's back the way real life makes them drift, through their
own databases (no webhook is sent for any of it):

- an approved entry whose webhook was never sent        -> missing_in_erp, repaired
- a timebill deleted in the ERP                           -> missing_in_erp, repaired
- an entry unapproved in the PSA                          -> posted_not_approved, repaired
- an entry edited and approved again in the PSA           -> stale_version, repaired
- a timebill's hours edited by hand in the ERP            -> amount_mismatch, escalated
- approved time in a period closed in the ERP             -> missing_in_erp, escalated
- a second live timebill for one entry (an older version's
  posting never reversed)                                 -> duplicate_posting, escalated
- time entered straight into the ERP (not pssync's)       -> period_total_mismatch, escalated

`POST /api/reconciliations` runs a pass: each drift is found and repaired through the time
pipeline or escalated as an exception item; the ERP twin then agrees with the PSA twin except
for the four escalated drifts, and a second pass finds nothing new (the repairs are verified,
the escalations not repeated).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bench._harness.waiting import must_eventually as eventually
from tests.e2e._desk import desk_items, reconcile
from tests.e2e.test_time_to_invoice import OPS, World, pipeline_world, reconciled

pytestmark = pytest.mark.e2e


@pytest.fixture
def settle_now(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The gateway's runs compare what changed a moment ago too (the drift is fresh here)."""
    monkeypatch.setenv("PSSYNC_RECONCILE__SETTLE_S", "0")
    yield


async def run_pass(world: World) -> dict[str, Any]:
    """Start a labor-actuals run through the API and wait for its report."""
    return await reconcile(world.gateway, "labor_actuals")


def this_month_entries(world: World, ids: list[int]) -> list[int]:
    first = date.today().replace(day=1)
    rows = world.psa_rows(
        "SELECT id, date_performed FROM psa_time_entry "
        f"WHERE id IN ({','.join(map(str, ids))}) ORDER BY id"
    )
    return [int(i) for i, day in rows if date.fromisoformat(str(day)) >= first]


async def test_labor_drift_injected_in_the_twins_is_repaired_or_escalated(
    tmp_path: Path, settle_now: None
) -> None:
    async with pipeline_world(tmp_path, projects=2) as world:
        ids = await world.approve(world.plan(10))
        await reconciled(world, 60)
        await eventually(world.pipelines_idle, 30)
        deleted, unapproved, stale, edited, doubled = this_month_entries(world, ids)[:5]
        p = world.projects[0]

        # -- the drift, behind pssync's back -------------------------------------------------
        today = date.today()
        last_month = today.replace(day=1) - timedelta(days=1)
        [_dropped, late] = (
            await world.twins.post(
                "/psa/_admin/time_entries/bulk",
                json={
                    "entries": [
                        {
                            "workspace_id": p.psa_id,
                            "user_id": p.users[0],
                            "date_performed": today.isoformat(),
                            "time_in_minutes": 1425,
                        },
                        {
                            "workspace_id": p.psa_id,
                            "user_id": p.users[1],
                            "date_performed": last_month.isoformat(),
                            "time_in_minutes": 1410,
                        },
                    ],
                    "approved": True,
                    "emit": False,
                },
            )
        ).json()["ids"]
        erp_db = world.stack.sandbox.state("erp").engine
        psa_db = world.stack.sandbox.state("psa").engine
        with erp_db.begin() as conn:
            conn.exec_driver_sql(f"DELETE FROM erp_timebill WHERE source_entry = '{deleted}'")
            conn.exec_driver_sql(
                f"UPDATE erp_timebill SET hours = '0.25' WHERE source_entry = '{edited}'"
            )
            [(posted,)] = conn.exec_driver_sql(
                f"SELECT external_id FROM erp_timebill WHERE source_entry = '{doubled}'"
            ).all()
            older = posted.rsplit("-v", 1)[0] + f"-v{int(posted.rsplit('-v', 1)[1]) - 1}"
            copy = (
                "INSERT INTO erp_timebill (external_id, last_modified, job_id, employee, "
                "tran_date, period_id, period_name, hours, rate, cost_amount, bill_amount, "
                "currency, department_id, memo, is_billable, reverses_id, kind, source_entry) "
                "SELECT {external_id}, last_modified, job_id, employee, tran_date, period_id, "
                "period_name, {hours}, rate, cost_amount, bill_amount, currency, department_id, "
                "memo, is_billable, NULL, kind, {source} FROM erp_timebill "
                f"WHERE external_id = '{posted}'"
            )
            # The same entry posted twice: an older version's posting still live beside it.
            conn.exec_driver_sql(
                copy.format(external_id=f"'{older}'", hours="hours", source="source_entry")
            )
            # Time a person entered straight into the ERP: no externalId, no PSA entry.
            conn.exec_driver_sql(copy.format(external_id="NULL", hours="'3.5'", source="NULL"))
            conn.exec_driver_sql(
                "UPDATE erp_accounting_period SET closed = 1 "
                f"WHERE start_date <= '{last_month.isoformat()}' "
                f"AND end_date >= '{last_month.isoformat()}'"
            )
        with psa_db.begin() as conn:
            conn.exec_driver_sql(
                f"UPDATE psa_time_entry SET approved = 0, lock_version = lock_version + 1 "
                f"WHERE id = {unapproved}"
            )
            conn.exec_driver_sql(
                "UPDATE psa_time_entry SET time_in_minutes = 1395, "
                f"lock_version = lock_version + 2 WHERE id = {stale}"
            )

        # -- the first pass ------------------------------------------------------------------
        first = await run_pass(world)
        run = first["run"]
        assert run["by_kind"] == {
            "amount_mismatch": 1,
            "duplicate_posting": 1,
            "missing_in_erp": 3,
            "period_total_mismatch": 1,
            "posted_not_approved": 1,
            "stale_version": 1,
        }, first
        assert (run["found"], run["repaired"], run["escalated"]) == (8, 4, 4)
        assert run["vendor_calls"] > 0 and run["projects"] == 2
        by_entry = {d["keys"].get("entry"): d for d in first["drifts"]}
        assert by_entry[f"time:{late}"]["state"] == "escalated"
        assert by_entry[f"time:{edited}"]["values"]["erp"] == "0.250000"
        twice = by_entry[f"time:{doubled}"]
        assert (twice["kind"], twice["state"]) == ("duplicate_posting", "escalated")
        assert Decimal(twice["values"]["erp"]) == 2 * Decimal(twice["values"]["psa"])
        [stray] = [d for d in first["drifts"] if d["kind"] == "period_total_mismatch"]
        assert stray["state"] == "escalated" and stray["values"]["erp"] == "3.500000"
        assert stray["keys"]["period"] == f"{today:%Y-%m}"

        # Repaired through the time pipeline: the ERP agrees but for the four escalated.
        await eventually(world.pipelines_idle, 60)

        def agrees_but_escalated() -> bool:
            rec = world.reconcile()
            return (
                rec.duplicates == {str(doubled): 2}
                and rec.missing == {str(late)}
                and rec.extra == {"None"}  # the posting no PSA entry explains
                and (all(w.startswith(f"{edited}:") for w in rec.wrong) and len(rec.wrong) == 1)
            )

        await eventually(agrees_but_escalated, 60)
        versions = world.erp_rows(
            f"SELECT external_id, hours FROM erp_timebill WHERE source_entry = '{stale}' "
            "ORDER BY id"
        )
        assert [e.rsplit("-", 1)[-1] for e, _ in versions] == ["v2", "reversal", "v4"]
        assert Decimal(versions[-1][1]) == Decimal(1395) / 60
        [(reversal,)] = world.erp_rows(
            "SELECT count(*) FROM erp_timebill r JOIN erp_timebill o ON r.reverses_id = o.id "
            f"WHERE o.source_entry = '{unapproved}'"
        )
        assert reversal == 1

        causes = sorted(i["cause_code"] for i in await desk_items(world.gateway, 4))
        assert causes == [
            "amount_mismatch",
            "duplicate_posting",
            "missing_in_erp",
            "period_total_mismatch",
        ]

        # -- the second pass: nothing new ----------------------------------------------------
        second = (await run_pass(world))["run"]
        assert (second["new"], second["repaired"], second["escalated"]) == (0, 0, 0), second
        assert (second["found"], second["kept"], second["gone"]) == (4, 4, 4)
        items = await world.gateway.get(
            "/api/exceptions", params={"process": "reconciliation"}, headers=OPS
        )
        assert len(items.json()["items"]) == 4  # no second item for the same drift
        await world.assert_no_run_failed()
