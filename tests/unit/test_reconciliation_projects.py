"""Project master, compared: a won deal, its xref links and the PSA and ERP projects as found ->
each kind of drift with its keys, values, owner and disposition; nothing where they agree.
Pure functions, no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from activities.reconciliation.project_rules import (
    Deal,
    FoundProject,
    ProjectContext,
    ProjectRepair,
    compare_project,
)
from contracts.systems import System
from contracts.v1.reconciliation import Disposition, DriftKind

NOW = datetime(2027, 2, 10, 3, 0, tzinfo=UTC)
CTX = ProjectContext(tenant="acme", now=NOW, settle_s=300)
EID = "01JP0000000000000000000777"
PSA = FoundProject("101", "Acme data platform", "USD", "CC-110")
ERP = FoundProject("9", "Acme data platform", "USD", "CC-110")


def deal(**changes: object) -> Deal:
    values: dict[str, object] = {
        "opportunity_id": "006A",
        "name": "Acme data platform",
        "updated_at": NOW - timedelta(days=1),
        "enterprise_id": EID,
        "psa_link": "101",
        "erp_link": "9",
        "psa": PSA,
        "erp": ERP,
    }
    return Deal(**(values | changes))  # type: ignore[arg-type]


def test_a_deal_provisioned_and_in_agreement_has_no_drift() -> None:
    assert compare_project(CTX, deal()) == []


def test_a_won_deal_never_provisioned_is_for_a_person_whose_retry_provisions_it() -> None:
    bare = deal(enterprise_id=None, psa=None, erp=None, psa_link=None, erp_link=None)
    [found] = compare_project(CTX, bare)
    assert (found.drift.kind, found.drift.disposition) == (
        DriftKind.PROJECT_MISSING_PSA_PROJECT, Disposition.ESCALATE,
    )  # fmt: skip
    assert found.drift.keys == {"tenant": "acme", "opportunity": "006A"}
    assert found.repair == ProjectRepair("006A", provision=True)


def test_a_deal_changed_a_moment_ago_or_closed_before_since_is_left_alone() -> None:
    assert compare_project(CTX, deal(enterprise_id=None, updated_at=NOW)) == []
    since = ProjectContext(tenant="acme", now=NOW, since=date(2027, 1, 1))
    old = deal(enterprise_id=None, closed_on=date(2026, 12, 31))
    assert compare_project(since, old) == []
    assert len(compare_project(since, deal(enterprise_id=None, closed_on=date(2027, 1, 1)))) == 1


def test_a_project_gone_from_its_system_is_escalated() -> None:
    [found] = compare_project(CTX, deal(erp=None))
    assert (found.drift.kind, found.drift.disposition, found.drift.owner) == (
        DriftKind.PROJECT_MISSING_ERP_PROJECT, Disposition.ESCALATE, System.ERP,
    )  # fmt: skip
    assert "gone" in found.drift.detail and found.repair is None
    [psa_gone] = compare_project(CTX, deal(psa=None, psa_link=None))
    assert psa_gone.drift.kind is DriftKind.PROJECT_MISSING_PSA_PROJECT
    assert psa_gone.drift.keys["enterprise_id"] == EID


def test_a_lost_xref_link_is_written_again_and_a_wrong_one_escalated() -> None:
    [lost] = compare_project(CTX, deal(psa_link=None))
    assert (lost.drift.kind, lost.drift.disposition) == (
        DriftKind.PROJECT_XREF_MISSING, Disposition.REPAIR,
    )  # fmt: skip
    assert lost.drift.keys["system"] == "PSA"
    assert lost.repair == ProjectRepair("006A", EID, link=("PSA", "workspace", "101"))
    [wrong] = compare_project(CTX, deal(erp_link="77"))
    assert (wrong.drift.kind, wrong.drift.disposition) == (
        DriftKind.PROJECT_XREF_MISSING, Disposition.ESCALATE,
    )  # fmt: skip


def test_copied_fields_that_differ_are_one_drift_each_owned_by_the_copy() -> None:
    erp = FoundProject("9", "Acme platform", "EUR", "CC-110")
    psa = FoundProject("101", "Acme data platform", "USD", "CC-999")
    found = compare_project(CTX, deal(erp=erp, psa=psa))
    by_field = {f.drift.keys["field"]: f.drift for f in found}
    assert set(by_field) == {"name", "currency", "cost_center"}
    assert by_field["name"].values == {"psa": "Acme data platform", "erp": "Acme platform"}
    assert by_field["name"].owner is System.ERP
    assert by_field["cost_center"].owner is System.PSA
    assert {d.disposition for d in by_field.values()} == {Disposition.ESCALATE}
    assert len({d.fingerprint for d in by_field.values()}) == 3
