"""Reseeding the twins (every `pssync up` does) keeps what people did since: an HR
termination stays, a won deal stays won. Over HTTP through the twins' own APIs."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import httpx

from sandbox.app import seeded_sandbox
from sandbox.seed import build_firm
from tests._servers import serve

AUTH = {"Authorization": "Bearer dev-static-token"}


async def test_reseed_keeps_terminations_and_won_deals(tmp_path: Path) -> None:
    firm = build_firm(7)
    worker = next(w for w in firm.workers if w.status == "active" and w.termination_date is None)
    deal = firm.opportunities[0]
    until = (date.today() + timedelta(days=7)).isoformat()
    hcm_worker = f"/hcm/ccx/api/v1/default/workers/Employee_ID={worker.id}"
    opportunity = f"/crm/services/data/v61.0/sobjects/Opportunity/{deal.id}"

    async with (
        serve(seeded_sandbox(tmp_path).app) as base,
        httpx.AsyncClient(base_url=base, headers=AUTH) as http,
    ):
        terminated = await http.post(
            f"{hcm_worker}/terminate", json={"terminationDate": until, "lastDayOfWork": until}
        )
        assert terminated.status_code < 300, terminated.text
        won = await http.patch(opportunity, json={"StageName": "Closed Won"})
        assert won.status_code == 204, won.text

    # the next `pssync up` seeds the same files again
    async with (
        serve(seeded_sandbox(tmp_path).app) as base,
        httpx.AsyncClient(base_url=base, headers=AUTH) as http,
    ):
        after = (await http.get(hcm_worker)).json()
        assert after["workerStatus"]["terminationDate"] == until
        opp = (await http.get(opportunity)).json()
        assert opp["StageName"] == "Closed Won" and opp["IsWon"] is True
