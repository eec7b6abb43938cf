"""The approvals inbox in a real browser: Debian's Chromium (Playwright, no browser download)
against a real uvicorn gateway on 127.0.0.1, the real Temporal dev server and
test_console_approvals' stand-in change-order run.

A delivery manager signs in, finds the change order waiting for them, opens it, approves it
with a comment and sees the run accept it; screenshots of the pages go to docs/console/.
Skips when /usr/bin/chromium or Playwright is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.v1.change_orders import DELIVERY_MANAGER
from tests.gateway.test_console_approvals import Start, decisions_of, start_change_order
from tests.gateway.test_gateway import Gw, engine, gw, settings, store

__all__ = ["engine", "gw", "settings", "start_change_order", "store"]

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")


async def test_a_delivery_manager_approves_a_change_order_in_the_browser(
    gw: Gw, start_change_order: Start
) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    co = await start_change_order("E-1001", [DELIVERY_MANAGER])
    base = str(gw.http.base_url).rstrip("/")
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 900})
            await page.goto(f"{base}/console/approvals")
            assert "/console/sign-in" in page.url
            await page.get_by_label("Bearer token").fill("dev-dm-token")
            await page.get_by_role("button", name="Sign in").click()
            await page.wait_for_selector("#approvals")
            assert page.url.endswith("/console/approvals")
            await page.screenshot(path=str(SHOTS / "approvals.png"), full_page=True)

            await page.get_by_role("link", name=co).click()
            form = page.locator("#decision-approve")
            await form.wait_for()
            await form.get_by_label("Comment (optional)").fill("scope agreed with the client")
            await page.screenshot(path=str(SHOTS / "approval.png"), full_page=True)
            await form.get_by_role("button", name="Approve").click()
            await page.wait_for_selector("text=The run accepted it")
            assert "Approved as delivery_manager" in await page.locator(".flash-ok").inner_text()
            await page.screenshot(path=str(SHOTS / "approval-accepted.png"), full_page=True)
        finally:
            await browser.close()
    [decision] = await decisions_of(gw, co)
    assert (decision.actor, decision.approve, decision.note) == (
        "dana.manager",
        True,
        "scope agreed with the client",
    )
