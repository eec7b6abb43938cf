"""Business keys have one canonical form (`contracts.ids`), and workflow ids are built only from
it (`contracts.naming`): a tenant in another letter case, or a Salesforce id's 15- and
18-character forms, name one run; control characters never reach a workflow id."""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.ids import (
    InvalidId,
    canonical_date_key,
    canonical_hcm_id,
    canonical_psa_id,
    canonical_salesforce_id,
    canonical_tenant,
    salesforce_id_18,
)
from contracts.naming import (
    assignment_sync_workflow_id,
    change_order_workflow_id,
    opportunity_workflow_id,
    termination_workflow_id,
    time_pipeline_workflow_id,
    time_sweep_schedule_id,
)

CANONICAL: dict[str, Callable[[str], str]] = {
    "tenant": canonical_tenant,
    "salesforce": canonical_salesforce_id,
    "psa": canonical_psa_id,
    "hcm": canonical_hcm_id,
}

ALNUM = string.ascii_letters + string.digits
sf15 = st.text(alphabet=ALNUM, min_size=15, max_size=15)
# Anything: mostly near-miss keys (right alphabet, odd case and lengths), some arbitrary text.
keyish = st.one_of(
    st.text(alphabet=ALNUM + "._-/ \x00\t\n\x7f\u200b", max_size=70),
    st.text(max_size=70),
    sf15,
    sf15.map(salesforce_id_18),
    sf15.map(lambda s: salesforce_id_18(s).lower()),
)


def _control(ch: str) -> bool:
    return unicodedata.category(ch).startswith("C") or ch.isspace()


def _accepts(canonical: Callable[[str], str], value: str) -> str | None:
    try:
        return canonical(value)
    except InvalidId:
        return None


# --------------------------------------------------------------------------- properties


@pytest.mark.parametrize("kind", sorted(CANONICAL))
@given(value=keyish)
def test_normalising_is_idempotent(kind: str, value: str) -> None:
    canonical = CANONICAL[kind]
    once = _accepts(canonical, value)
    if once is not None:
        assert canonical(once) == once


@pytest.mark.parametrize("kind", sorted(CANONICAL))
@given(value=keyish, junk=st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]), at=st.data())
def test_control_characters_are_never_accepted(
    kind: str, value: str, junk: str, at: st.DataObject
) -> None:
    position = at.draw(st.integers(min_value=0, max_value=len(value)))
    dirty = value[:position] + junk + value[position:]
    with pytest.raises(InvalidId):
        CANONICAL[kind](dirty)
    out = _accepts(CANONICAL[kind], value)
    assert out is None or not any(_control(ch) or ch == "/" for ch in out)


@given(id15=sf15)
def test_salesforce_15_and_18_character_forms_are_one_id(id15: str) -> None:
    id18 = canonical_salesforce_id(id15)
    assert len(id18) == 18 and id18[:15] == id15
    # 18-character ids are case-insensitive: the suffix restores the case of the first 15.
    for form in (id18, id18.lower(), id18.upper(), id18.swapcase()):
        assert canonical_salesforce_id(form) == id18
    assert opportunity_workflow_id("default", id15) == opportunity_workflow_id("DEFAULT", id18)


@given(a=sf15, b=sf15)
def test_distinct_salesforce_ids_stay_distinct(a: str, b: str) -> None:
    # 15-character ids are case-sensitive: only the same id maps to the same 18.
    assert (canonical_salesforce_id(a) == canonical_salesforce_id(b)) == (a == b)


@given(tenant=st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1))
def test_tenants_differing_in_case_are_one_tenant(tenant: str) -> None:
    canonical = _accepts(canonical_tenant, tenant)
    if canonical is not None:
        assert canonical == tenant.lower()
        assert canonical_tenant(tenant.upper()) == canonical_tenant(tenant.swapcase())


# --------------------------------------------------------------------------- examples


def test_known_salesforce_checksums() -> None:
    # Salesforce's own example pair, and the twin's minted ids.
    assert canonical_salesforce_id("001A000001CtNiu") == "001A000001CtNiuIAF"
    assert canonical_salesforce_id("0065g0000000001") == "0065g0000000001AAA"
    assert canonical_salesforce_id("0065G0000000001AAA") == "0065g0000000001AAA"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "0065g00000000",  # 13
        "0065g0000000001A",  # 16
        "0065g000000000-AAA",  # not alphanumeric
        "0065g0000000001AA9",  # a suffix character outside A-Z0-5
        "000000000000000AAB",  # the suffix flags a digit as upper case
    ],
)
def test_malformed_salesforce_ids_are_refused(value: str) -> None:
    with pytest.raises(InvalidId):
        canonical_salesforce_id(value)


@pytest.mark.parametrize(
    "value", ["", "a b", "a/b", "x\x00", "\u00fc", "-lead", "t" * 64, "DEFAULT\n"]
)
def test_malformed_tenants_are_refused(value: str) -> None:
    with pytest.raises(InvalidId):
        canonical_tenant(value)


def test_record_ids_keep_their_case_but_workday_wids_are_lower_case() -> None:
    assert canonical_psa_id("ws42") == "ws42"
    assert canonical_hcm_id("W-00042") == "W-00042"
    wid = "02341DE2" + "a" * 24
    assert canonical_hcm_id(wid) == wid.lower()
    for bad in ("", "a/b", "1\x00", "x" * 65, ".x"):
        with pytest.raises(InvalidId):
            canonical_psa_id(bad)
    assert canonical_date_key("2026-06-30") == "2026-06-30"
    for bad in ("2026-6-30", "2026-02-30", "20260630"):
        with pytest.raises(InvalidId):
            canonical_date_key(bad)


def test_workflow_ids_derive_from_canonical_keys_only() -> None:
    assert opportunity_workflow_id("ACME", "0065g0000000001") == (
        "opp-to-project/acme/0065g0000000001AAA"
    )
    assert change_order_workflow_id("Default", "77") == "change-order/default/77"
    assert termination_workflow_id("DEFAULT", "02341DE2" + "A" * 24, "2026-06-30") == (
        f"termination/default/02341de2{'a' * 24}/2026-06-30"
    )
    assert assignment_sync_workflow_id("Default", "42") == "assignment-sync/default/42"
    assert time_pipeline_workflow_id("Default", "42") == "time-to-invoice/default/42"
    assert time_sweep_schedule_id("Default") == "time-to-invoice-sweep/default"
    with pytest.raises(InvalidId):
        opportunity_workflow_id("default\x00", "0065g0000000001")
    with pytest.raises(InvalidId):
        time_pipeline_workflow_id("default", "42/../43")
