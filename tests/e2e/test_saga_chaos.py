"""Saga chaos, quick, end to end on the real dev server (`bench/saga_chaos.py`, the scenarios
`same_customer` and `psa_lost_30` at their `--quick` sizes): twins in their own process,
`pssync worker` in its own, webhooks through the gateway.

- deals of one customer won at the same moment: one project per deal, one ERP customer and
  one enterprise customer ID per account, no failed run;
- the PSA loses 30% of its answers (applied, then 504): one workspace and one ERP job per
  deal, no story, milestone or resource request twice.

The counts are the bench's own, read from the twins' databases and the store.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.saga_chaos import QUICK, parse_args, run

pytestmark = pytest.mark.e2e


def clean(scenario: dict[str, object]) -> list[str]:
    """Every system's kinds that are not one-per-key, for the assertion message."""
    systems = scenario["systems"]
    assert isinstance(systems, dict)
    return [
        f"{system}.{kind}: {tally}"
        for system, s in systems.items()
        for kind, tally in s["by_kind"].items()
        if tally.get("duplicates") or tally.get("missing") or tally.get("unexpected")
        or tally.get("wrong")
    ]  # fmt: skip


@pytest.mark.timeout(240)
async def test_same_customer_races_and_lost_psa_answers_leave_one_of_each(tmp_path: Path) -> None:
    report = await run(
        parse_args(["--quick", "--scenarios", "same_customer,psa_lost_30"]), home=tmp_path
    )

    same = report["scenarios"]["same_customer"]
    pairs = QUICK["pairs"]
    assert clean(same) == [], clean(same)
    assert (same["duplicates"], same["missing"], same["wrong"]) == (0, 0, 0)
    assert same["failed_runs"] == 0, same["runs"]
    assert same["projects"] == 2 * pairs
    assert same["customers"] == pairs
    erp, store = same["systems"]["erp"]["by_kind"], same["systems"]["store"]["by_kind"]
    assert erp["customers"]["records"] == pairs
    assert store["customer_enterprise_ids"]["records"] == pairs
    assert erp["jobs_on_the_account_customer"]["records"] == 2 * pairs

    lost = report["scenarios"]["psa_lost_30"]
    deals = QUICK["psa_lost_deals"]
    assert clean(lost) == [], clean(lost)
    assert (lost["duplicates"], lost["missing"]) == (0, 0)
    assert lost["failed_runs"] == 0, lost["runs"]
    assert lost["workspaces"] == lost["erp_jobs"] == deals
    assert lost["faults"]["psa"]["lost_responses"] > 0  # the fault was on
    psa = lost["systems"]["psa"]["by_kind"]
    for kind in ("stories", "billing_milestones", "resource_requests"):
        assert psa[kind]["duplicates"] == psa[kind]["unexpected"] == 0, psa[kind]

    assert report["ok"], report
