"""Reconciliation in the store: runs recorded and finished, drifts upserted by fingerprint (the
first sighting kept), closed when a run of their scope no longer finds them, a person's decision,
the paged drift list of a run, the gauges /metrics reads, and the scope of projects. Runs on
SQLite and PostgreSQL like every store test."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from store import NotFound, Store

T0 = datetime(2027, 2, 1, 2, 0, tzinfo=UTC)


def drift(fp: str, run: str, *, at: datetime = T0, **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "fingerprint": fp,
        "domain": "labor_actuals",
        "kind": "missing_in_erp",
        "tenant": "acme",
        "project": "P1",
        "period": "2027-01",
        "keys": {"tenant": "acme", "entry": f"time:{fp}"},
        "values": {"psa": "8.000000", "erp": None},
        "owner": "ERP",
        "disposition": "repair",
        "detail": "approved, not posted",
        "state": "repaired",
        "repairs": 1,
        "escalations": 0,
        "first_seen": at,
        "last_seen": at,
        "first_run": run,
        "last_run": run,
        "closed_run": None,
        "closed_at": None,
    }
    return values | fields


def test_a_run_is_started_once_and_finished_with_its_totals(store: Store) -> None:
    first = store.start_reconciliation_run(
        "reconcile/labor_actuals/acme/all/1", domain="labor_actuals", tenant="acme",
        started_at=T0, requested_by="cli:ops", since=date(2027, 1, 1),
    )  # fmt: skip
    again = store.start_reconciliation_run(
        "reconcile/labor_actuals/acme/all/1", domain="labor_actuals", tenant="acme",
        started_at=T0 + timedelta(hours=1),
    )  # fmt: skip
    assert first.state == again.state == "running"
    assert again.started_at == T0 and again.requested_by == "cli:ops"
    assert again.since == date(2027, 1, 1)

    done = store.finish_reconciliation_run(
        first.id, finished_at=T0 + timedelta(seconds=42), found=3, repaired=2, escalated=1,
        by_kind={"missing_in_erp": 2, "amount_mismatch": 1}, vendor_calls=17, seconds=41.5,
    )  # fmt: skip
    assert done.state == "finished" and done.found == 3 and done.vendor_calls == 17
    stored = store.get_reconciliation_run(first.id)
    assert stored is not None and stored.by_kind == {"missing_in_erp": 2, "amount_mismatch": 1}
    assert stored.finished_at == T0 + timedelta(seconds=42) and stored.seconds == 41.5
    assert store.get_reconciliation_run("nope") is None
    with pytest.raises(NotFound):
        store.finish_reconciliation_run("nope", finished_at=T0)
    with pytest.raises(ValueError, match="unknown"):
        store.finish_reconciliation_run(first.id, finished_at=T0, bogus=1)


def test_runs_are_listed_newest_first_and_filtered(store: Store) -> None:
    for i, (domain, project) in enumerate(
        [("labor_actuals", None), ("labor_actuals", "P1"), ("project_master", None)]
    ):
        store.start_reconciliation_run(
            f"r{i}", domain=domain, tenant="acme", project=project,
            started_at=T0 + timedelta(minutes=i),
        )  # fmt: skip
    assert [r.id for r in store.list_reconciliation_runs()] == ["r2", "r1", "r0"]
    assert [r.id for r in store.list_reconciliation_runs(domain="labor_actuals")] == ["r1", "r0"]
    assert [r.id for r in store.list_reconciliation_runs(project="P1")] == ["r1"]
    assert [r.id for r in store.list_reconciliation_runs(limit=1, offset=1)] == ["r1"]


def test_the_same_drift_found_again_is_one_row_with_its_first_sighting_kept(store: Store) -> None:
    later = T0 + timedelta(days=1)
    assert store.record_drifts([drift("a", "run1"), drift("b", "run1")]) == 2
    store.record_drifts(
        [drift("a", "run2", at=later, values={"psa": "9.000000", "erp": None}, repairs=2)]
    )
    priors = store.drift_priors(["a", "b", "c"])
    assert set(priors) == {"a", "b"}
    a = priors["a"]
    assert (a.first_seen, a.first_run) == (T0, "run1")
    assert (a.last_seen, a.last_run, a.repairs) == (later, "run2", 2)
    assert a.values == {"psa": "9.000000", "erp": None}
    with pytest.raises(ValueError, match="unknown drift columns"):
        store.record_drifts([drift("c", "run1", colour="red")])


def test_drifts_a_run_no_longer_finds_are_closed_in_its_scope_only(store: Store) -> None:
    store.record_drifts(
        [
            drift("seen", "run1"),
            drift("gone", "run1"),
            drift("acked", "run1", state="acknowledged"),
            drift("other-project", "run1", project="P2"),
            drift("old-period", "run1", period="2026-11"),
            drift("other-domain", "run1", domain="project_master", kind="xref_missing"),
            drift("closed-before", "run0", state="gone"),
        ]
    )
    store.record_drifts([drift("seen", "run2")])
    closed = store.close_gone_drifts(
        "run2", domain="labor_actuals", tenant="acme", at=T0, project="P1",
        since_period="2026-12",
    )  # fmt: skip
    assert sorted(d.fingerprint for d in closed) == ["acked", "gone"]
    assert {d.fingerprint: d.state for d in closed} == {"gone": "repaired", "acked": "acknowledged"}
    priors = store.drift_priors(["seen", "gone", "other-project", "old-period", "other-domain"])
    assert priors["gone"].state == "gone" and priors["gone"].closed_run == "run2"
    assert priors["seen"].state == "repaired"
    assert priors["other-project"].state == priors["old-period"].state == "repaired"
    assert priors["other-domain"].state == "repaired"
    # The tenant-wide scope closes the rest of the domain's (not what is closed already).
    wider = store.close_gone_drifts("run2", domain="labor_actuals", tenant="acme", at=T0)
    assert sorted(d.fingerprint for d in wider) == ["old-period", "other-project"]
    assert store.close_gone_drifts("run2", domain="labor_actuals", tenant="acme", at=T0) == []
    rows, total = store.run_drifts("run2")
    # Found by run2 ("seen") and closed by it (the rest of the domain's but "closed-before").
    assert total == 5
    assert {r.fingerprint for r in rows} == {
        "seen", "gone", "acked", "other-project", "old-period",
    }  # fmt: skip


def test_a_decision_sets_the_state_only_from_the_expected_ones(store: Store) -> None:
    store.record_drifts([drift("x", "run1", state="escalated")])
    row = store.set_drift_state(
        "x", "acknowledged", actor="fin", item_id="exc_1", only_from=["escalated"]
    )
    assert row is not None and (row.state, row.resolved_by, row.item_id) == (
        "acknowledged", "fin", "exc_1",
    )  # fmt: skip
    unchanged = store.set_drift_state("x", "repaired", only_from=["escalated"])
    assert unchanged is not None and unchanged.state == "acknowledged"
    assert store.set_drift_state("missing", "gone") is None


def test_a_runs_drifts_are_paged_and_counted(store: Store) -> None:
    store.record_drifts(
        [drift(f"d{i:02d}", "run1", kind="amount_mismatch" if i % 2 else "missing_in_erp")
         for i in range(25)]
    )  # fmt: skip
    first, total = store.run_drifts("run1", limit=10)
    second, _ = store.run_drifts("run1", offset=10, limit=10)
    assert total == 25 and len(first) == len(second) == 10
    assert not {r.fingerprint for r in first} & {r.fingerprint for r in second}
    only, n = store.run_drifts("run1", kind="amount_mismatch")
    assert n == 12 and {r.kind for r in only} == {"amount_mismatch"}
    assert store.count_standing_drifts(domain="labor_actuals", tenant="acme") == 25
    assert store.count_standing_drifts(domain="labor_actuals", tenant="acme", project="P9") == 0


def test_gauges_count_standing_drifts_the_oldest_and_the_last_finished_run(store: Store) -> None:
    store.record_drifts(
        [
            drift("a", "r", state="escalated", kind="amount_mismatch"),
            drift("b", "r", at=T0 + timedelta(hours=1)),
            drift("c", "r", at=T0 - timedelta(days=3), state="acknowledged"),
            drift("d", "r", at=T0 - timedelta(days=9), state="gone"),
        ]
    )
    store.start_reconciliation_run("r", domain="labor_actuals", tenant="acme", started_at=T0)
    gauges = store.drift_gauges()
    assert gauges.open == {
        ("labor_actuals", "amount_mismatch", "escalated"): 1,
        ("labor_actuals", "missing_in_erp", "repaired"): 1,
    }
    assert gauges.oldest == {"labor_actuals": T0}
    assert gauges.last_success == {}
    store.finish_reconciliation_run("r", finished_at=T0 + timedelta(minutes=5))
    assert store.drift_gauges().last_success == {"labor_actuals": T0 + timedelta(minutes=5)}


def test_the_scope_is_the_projects_pssync_knows_in_id_order(store: Store) -> None:
    store.link_xref("E1", "project", "PSA", "acme", "workspace", "11")
    store.link_xref("E1", "project", "ERP", "acme", "job", "901")
    store.link_xref("E2", "project", "PSA", "other", "workspace", "12")
    store.record_time_postings(
        [
            {
                "entry_key": "time:1", "kind": "time", "entry_id": "1", "psa_project_id": "13",
                "erp_project": "eid:E3", "entry_version": "1", "state": "posted",
                "hours": Decimal(8), "billable": True,
            },
            {
                "entry_key": "time:2", "kind": "time", "entry_id": "2", "psa_project_id": "11",
                "erp_project": "eid:E1", "entry_version": "1", "state": "posted",
                "hours": Decimal(1), "billable": True,
            },
        ]
    )  # fmt: skip
    assert store.reconciliation_projects("acme") == [("11", "eid:E1"), ("13", "eid:E3")]
    assert store.reconciliation_projects("acme", after="11") == [("13", "eid:E3")]
    assert store.reconciliation_projects("acme", limit=1) == [("11", "eid:E1")]
    assert [r.entry_key for r in store.ledger_rows("11")] == ["time:2"]
