"""Runs and health in a real browser: Debian's Chromium (Playwright, no browser download)
against a real uvicorn gateway on 127.0.0.1, the real Temporal dev server and
test_console_health's stand-in run (an ERP activity that keeps failing, a run that fails).

An ops person signs in, opens *Health* from the navigation, narrows it to the stand-in's
process and finds the run stuck on its retrying activity, the failed run with its cause and
the worker's numbers for the ERP; the page's screenshot goes to docs/console/health.png.
Skips when /usr/bin/chromium or Playwright is missing.
"""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError

from tests.browser._chromium import SHOTS, needs_chromium, signed_in_page
from tests.gateway.test_console_health import (
    PROCESS,
    Start,
    retrying,
    settings,
    start_run,
    visible,
)
from tests.gateway.test_gateway import Gw, engine, gw, store

__all__ = ["engine", "gw", "settings", "start_run", "store"]

pytestmark = needs_chromium


async def test_ops_find_the_stuck_and_failed_runs_in_the_browser(gw: Gw, start_run: Start) -> None:
    stuck = await start_run("retry", "E-1001", "period 2026-11 is closed for postings")
    failed = await start_run("fail", "E-1002", "no budget line for the change order")
    with pytest.raises(WorkflowFailureError):
        await failed.result()
    await visible(gw.client, stuck.id, "Running")
    await visible(gw.client, failed.id, "Failed")
    await retrying(stuck)
    async with signed_in_page(gw, "/console/health", "dev-ops-token") as page:
        await page.wait_for_selector("#systems")
        await page.get_by_role("link", name="Health").click()
        await page.get_by_label("Process", exact=True).select_option(PROCESS)
        await page.get_by_role("button", name="Show").click()
        await page.wait_for_url(f"**/console/health?process={PROCESS}")
        row = page.locator(f'#stuck tr[data-run="{stuck.id}"]')
        assert "erp.stand_in_post" in await row.inner_text()
        cause = page.locator(f'#failures tr[data-run="{failed.id}"]')
        assert "the ERP project E-1002 is closed" in await cause.inner_text()
        erp = await page.locator('#systems tr[data-system="ERP"]').inner_text()
        assert "%" in erp
        await page.screenshot(path=str(SHOTS / "health.png"), full_page=True)
