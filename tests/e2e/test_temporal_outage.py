"""Nothing accepted is lost while Temporal is down (the issue's acceptance), end to end.

The real dev server runs as a child process with its state in a SQLite file; it is stopped for
`PSSYNC_E2E_OUTAGE_S` seconds (20 by default; `bench/temporal_outage.py` runs 150) while deals
are won in the CRM twin and time is approved in the PSA twin. The twins' webhook senders give up
after their first attempt, so no sender retry can rescue anything. Once the server is back with
its state, every deal must get exactly one project (a PSA workspace and an ERP job) and every
approved entry exactly one ERP timebill: the gateway's inbox relay replays what it stored.
The scenario is `bench.temporal_outage.run_outage`, so the bench measures exactly this.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.temporal_outage import link_projects, outage_stack, run_outage

pytestmark = pytest.mark.e2e

OUTAGE_S = float(os.environ.get("PSSYNC_E2E_OUTAGE_S", "20"))


@pytest.mark.timeout(300)
async def test_events_accepted_during_a_temporal_outage_all_take_effect_once(
    tmp_path: Path,
) -> None:
    async with outage_stack(tmp_path) as stack:
        await link_projects(stack, 2)
        report = await run_outage(stack, outage_s=OUTAGE_S, deals=3, approvals=4, settle_s=90)

    assert report["deliveries"]["attempts_per_delivery"] == [1], report  # senders gave up
    # every delivery of the outage was verified and stored, answered 202 "queued"
    assert report["deliveries"]["stored_in_inbox"] == report["deliveries"]["during_outage"]
    assert report["deliveries"]["during_outage"] == 3 + 2 * 4
    assert (report["lost"], report["duplicates"]) == (0, 0), report
    assert (report["deals"], report["projects"]) == (3, 3), report
    assert report["approvals"] == report["postings"] == 2 * 4 + 2, report
    assert report["saga_status"] == ["COMPLETED"], report
    assert report["relay"]["backlog"] == 0 and report["relay"]["failed"] == 0, report
    assert report["relay"]["replayed"] >= report["deliveries"]["during_outage"], report
