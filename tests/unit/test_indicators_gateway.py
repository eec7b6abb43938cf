"""The gateway's /metrics renders the business indicators from its store, with the SLA
thresholds of `settings.indicators` (the figures themselves: tests/store/test_store_indicators)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import httpx
from temporalio.client import Client

from contracts.settings import IndicatorSettings, load_settings
from gateway.app import create_app
from store import Store, make_engine, upgrade
from store.models import utcnow

OPS_AUTH = {"Authorization": "Bearer dev-ops-token"}


def _metric(text: str, line_start: str) -> float:
    return next(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)
    )


async def test_metrics_render_the_indicators_with_the_configured_slas(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/gw.db"
    upgrade(url)
    engine = make_engine(url)
    store = Store(engine, clock=lambda: utcnow() - timedelta(minutes=30))
    row: dict[str, Any] = {
        "entry_key": "time:1", "kind": "time", "entry_id": "1", "psa_project_id": "P1",
        "entry_version": "1", "state": "exception", "hours": Decimal("7.5"), "billable": True,
    }  # fmt: skip
    store.record_time_postings([row])
    settings = load_settings(home=tmp_path / ".pssync")
    settings.indicators = IndicatorSettings(posting_within_s=3600)
    app = create_app(settings, store, cast(Client, None))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw"
        ) as http:
            text = (await http.get("/metrics", headers=OPS_AUTH)).text
            settings.indicators = IndicatorSettings(posting_within_s=60)
            strict = create_app(settings, store, cast(Client, None))
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=strict), base_url="http://gw"
            ) as http2:
                strict_text = (await http2.get("/metrics", headers=OPS_AUTH)).text
    finally:
        engine.dispose()
    assert _metric(text, 'pssync_unposted_labor_hours{state="exception"}') == 7.5
    assert _metric(text, 'pssync_sla_threshold_seconds{sla="posting"}') == 3600
    breach = 'pssync_sla_breaches{process="time_to_invoice",sla="posting"}'
    assert _metric(text, breach) == 0  # 30 minutes old, within an hour
    assert _metric(strict_text, breach) == 1  # ... but not within a minute
    assert "# HELP pssync_unposted_labor_oldest_seconds" in text
