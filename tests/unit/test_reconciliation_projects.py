"""Project master, compared: a won deal, its xref links and the PSA and ERP projects as found ->
each kind of drift with its keys, values, owner and disposition; nothing where they agree.
Pure functions, no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from activities.reconciliation.project_rules import (
    Deal,
    FoundProject,
    OtherProject,
    ProjectContext,
    ProjectRepair,
    compare_project,
)
from contracts.money import Money
from contracts.systems import System
from contracts.v1.models import ProjectStatus
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
    # (name, currency and status belong to the PSA, cost center and budget to the ERP)
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


BUDGET = Money("150000.00", "USD")
PSA_FULL = FoundProject(
    "101", "Acme data platform", "USD", "CC-110", Money("150000", "USD"), ProjectStatus.ACTIVE
)
ERP_FULL = FoundProject("9", "Acme data platform", "USD", "CC-110", BUDGET, ProjectStatus.ACTIVE)


def test_budget_and_status_as_each_system_shapes_them_agree() -> None:
    assert compare_project(CTX, deal(psa=PSA_FULL, erp=ERP_FULL)) == []
    # closed for time entry is still open for the ERP (it still bills); closed and archived
    # are both over
    psa = replace(PSA_FULL, status=ProjectStatus.CLOSED_FOR_TIME)
    assert compare_project(CTX, deal(psa=psa, erp=ERP_FULL)) == []
    psa = replace(PSA_FULL, status=ProjectStatus.ARCHIVED)
    erp = replace(ERP_FULL, status=ProjectStatus.CLOSED)
    assert compare_project(CTX, deal(psa=psa, erp=erp)) == []


def test_a_budget_or_status_held_by_one_side_only_is_not_compared() -> None:
    unbudgeted = replace(PSA_FULL, budget=None)
    other = replace(ERP_FULL, budget=Money(1, "USD"))
    assert compare_project(CTX, deal(psa=unbudgeted, erp=other)) == []
    provisioning = replace(PSA_FULL, status=ProjectStatus.PROVISIONING)
    closed = replace(ERP_FULL, status=ProjectStatus.CLOSED)
    assert compare_project(CTX, deal(psa=provisioning, erp=closed)) == []


def test_a_budget_that_differs_is_escalated_as_the_psa_copy_of_the_erp_budget() -> None:
    psa = replace(PSA_FULL, budget=Money("120000.5", "USD"))
    [found] = compare_project(CTX, deal(psa=psa, erp=ERP_FULL))
    drift = found.drift
    assert (drift.kind, drift.disposition, drift.owner) == (
        DriftKind.PROJECT_FIELD_MISMATCH, Disposition.ESCALATE, System.PSA,
    )  # fmt: skip
    assert drift.keys == {
        "tenant": "acme", "opportunity": "006A", "enterprise_id": EID, "field": "budget",
    }  # fmt: skip
    assert drift.values == {"psa": "120000.50 USD", "erp": "150000.00 USD"}
    assert found.evidence["system_of_record"] == "ERP" and found.repair is None


def test_a_project_closed_in_one_system_and_open_in_the_other_is_escalated_either_way() -> None:
    closed_in_psa = compare_project(
        CTX, deal(psa=replace(PSA_FULL, status=ProjectStatus.CLOSED), erp=ERP_FULL)
    )
    closed_in_erp = compare_project(
        CTX, deal(psa=PSA_FULL, erp=replace(ERP_FULL, status=ProjectStatus.CLOSED))
    )
    for found, values in (
        (closed_in_psa, {"psa": "closed", "erp": "open"}),
        (closed_in_erp, {"psa": "open", "erp": "closed"}),
    ):
        [one] = found
        assert one.drift.keys["field"] == "status" and one.drift.values == values
        assert (one.drift.disposition, one.drift.owner) == (Disposition.ESCALATE, System.ERP)
        assert one.evidence["system_of_record"] == "PSA"
    assert closed_in_psa[0].drift.fingerprint == closed_in_erp[0].drift.fingerprint


def test_a_second_project_of_the_deal_is_escalated_with_both_and_the_linked_one() -> None:
    # a person re-keyed the deal in the ERP: the xref links job 9, the enterprise ID now
    # leads to job 12, which is there too
    rekeyed = replace(ERP_FULL, external_id="12", name="Acme data platform (re-keyed)")
    [dup] = compare_project(CTX, deal(erp=rekeyed, erp_duplicates=("9",)))
    drift = dup.drift
    assert (drift.kind, drift.disposition, drift.owner) == (
        DriftKind.PROJECT_DUPLICATE_PROJECT, Disposition.ESCALATE, System.ERP,
    )  # fmt: skip
    assert drift.keys["system"] == "ERP" and drift.keys["enterprise_id"] == EID
    assert drift.values == {"xref": "9", "projects": "9,12"}
    assert dup.evidence["xref_links"] == "9" and dup.evidence["carries_enterprise_id"] == "12"
    assert dup.repair is None
    # no xref_missing nor field_mismatch while a person decides which project is the deal's
    assert "9" in drift.detail and "12" in drift.detail


def test_a_duplicate_in_the_psa_is_one_drift_of_its_own_system() -> None:
    [dup] = compare_project(CTX, deal(psa_duplicates=("99",)))
    assert dup.drift.kind is DriftKind.PROJECT_DUPLICATE_PROJECT
    assert (dup.drift.keys["system"], dup.drift.owner) == ("PSA", System.PSA)
    assert dup.drift.values == {"xref": "101", "projects": "99,101"}


# -- a deal re-keyed by hand: another project of the same customer ---------------------------


def test_a_job_made_by_hand_with_the_deals_name_is_an_escalated_duplicate() -> None:
    by_hand = OtherProject("12", "  ACME   data platform ")
    [found] = compare_project(CTX, deal(erp_others=(by_hand,)))
    assert (found.drift.kind, found.drift.disposition, found.drift.owner) == (
        DriftKind.PROJECT_DUPLICATE_PROJECT, Disposition.ESCALATE, System.ERP,
    )  # fmt: skip
    assert found.drift.keys == {
        "tenant": "acme", "opportunity": "006A", "enterprise_id": EID,
        "system": "ERP", "duplicate": "12",
    }  # fmt: skip
    assert found.drift.values == {"project": "9", "duplicate": "12"}
    assert found.evidence["duplicate_name"] == "  ACME   data platform "
    assert found.evidence["project_name"] == "Acme data platform"
    assert "same name" in (found.evidence["matched"] or "") and found.repair is None


def test_a_project_noting_the_opportunity_is_a_duplicate_whatever_its_name() -> None:
    noted = OtherProject("205", "Data platform (re-keyed)", reference="won deal 006A, re-keyed")
    [found] = compare_project(CTX, deal(psa_others=(noted,)))
    assert found.drift.kind is DriftKind.PROJECT_DUPLICATE_PROJECT
    assert (found.drift.keys["system"], found.drift.keys["duplicate"]) == ("PSA", "205")
    assert found.evidence["matched"] == "notes opportunity 006A"
    assert found.drift.values == {"project": "101", "duplicate": "205"}


def test_the_customers_other_projects_are_not_duplicates() -> None:
    others = (
        OtherProject("9", "Acme data platform", EID),  # the deal's own job
        OtherProject("13", "Acme data platform", "01JP-OTHER-DEAL"),  # another deal's (eid)
        OtherProject("14", "Acme data platform", linked_to="01JP-OTHER-DEAL"),  # linked to one
        OtherProject("15", "Acme data platform", closed=True),  # closed: dealt with
        OtherProject("16", "Acme data platform 2"),  # another name
        OtherProject("17", "Acme support", reference="006AB; see 006A-old"),  # not the id
        OtherProject("18", ""),
    )
    assert compare_project(CTX, deal(erp_others=others)) == []


def test_each_hand_made_duplicate_is_its_own_drift_beside_the_field_comparison() -> None:
    two = (OtherProject("12", "acme data platform"), OtherProject("20", "x", reference="006A"))
    renamed = replace(ERP, name="Acme data platform (ERP)")
    found = compare_project(CTX, deal(erp=renamed, erp_others=two))
    assert sorted((f.drift.kind.value, f.drift.keys.get("duplicate")) for f in found) == [
        ("duplicate_project", "12"), ("duplicate_project", "20"), ("field_mismatch", None),
    ]  # fmt: skip
