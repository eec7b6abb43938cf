"""Reseeding the twins (every `pssync up` does) keeps what people did since: an HR
termination stays, a won deal stays won. Over HTTP through the twins' own APIs."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from sandbox.app import seeded_sandbox
from sandbox.seed import build_firm

AUTH = {"Authorization": "Bearer dev-static-token"}


def test_reseed_keeps_terminations_and_won_deals(tmp_path: Path) -> None:
    firm = build_firm(7)
    worker = next(w for w in firm.workers if w.status == "active" and w.termination_date is None)
    deal = firm.opportunities[0]
    today = date.today()
    with TestClient(seeded_sandbox(tmp_path).app) as http:
        terminated = http.post(
            f"/hcm/ccx/api/v1/default/workers/Employee_ID={worker.id}/terminate",
            headers=AUTH,
            json={
                "terminationDate": (today + timedelta(days=7)).isoformat(),
                "lastDayOfWork": (today + timedelta(days=7)).isoformat(),
            },
        )
        assert terminated.status_code < 300, terminated.text
        won = http.patch(
            f"/crm/services/data/v61.0/sobjects/Opportunity/{deal.id}",
            headers=AUTH,
            json={"StageName": "Closed Won"},
        )
        assert won.status_code == 204, won.text

    with TestClient(seeded_sandbox(tmp_path).app) as http:  # the next `pssync up`
        after = http.get(
            f"/hcm/ccx/api/v1/default/workers/Employee_ID={worker.id}", headers=AUTH
        ).json()
        assert after["workerStatus"]["terminationDate"] == (today + timedelta(days=7)).isoformat()
        opp = http.get(
            f"/crm/services/data/v61.0/sobjects/Opportunity/{deal.id}", headers=AUTH
        ).json()
        assert opp["StageName"] == "Closed Won" and opp["IsWon"] is True
