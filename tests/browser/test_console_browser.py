"""The console in a real browser: Debian's Chromium (Playwright, no browser download) against a
real uvicorn gateway on 127.0.0.1 (an OS-chosen port), the real Temporal dev server and
test_gateway's stand-in saga owning the item.

A delivery manager signs in, finds the item in the inbox, corrects the cost center with
edit-and-retry and sees the run accept it; screenshots of the pages go to docs/console/.
Skips when /usr/bin/chromium or Playwright is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gateway.test_console import run_with_item
from tests.gateway.test_gateway import Gw, engine, gw, settings, store

__all__ = ["engine", "gw", "settings", "store"]

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")


async def test_a_delivery_manager_fixes_an_item_in_the_browser(gw: Gw) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    workflow_id, item_id = await run_with_item(gw)
    base = str(gw.http.base_url).rstrip("/")
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 900})
            await page.goto(f"{base}/console/exceptions")
            assert "/console/sign-in" in page.url
            await page.screenshot(path=str(SHOTS / "sign-in.png"))
            await page.get_by_label("Bearer token").fill("dev-dm-token")
            await page.get_by_role("button", name="Sign in").click()
            await page.wait_for_selector("text=Signed in as dana.manager.")
            await page.screenshot(path=str(SHOTS / "exception-inbox.png"), full_page=True)

            await page.get_by_role("link", name=item_id).click()
            await page.wait_for_selector("#action-retry_with_data")
            form = page.locator("#action-retry_with_data")
            await form.get_by_label("Cost center (the field at fault)").fill("CC-200")
            await form.get_by_label("Note (optional)").fill("opened CC-200 in the ERP")
            await page.screenshot(path=str(SHOTS / "exception-item.png"), full_page=True)
            await form.get_by_role("button", name="Correct and retry").click()
            await page.wait_for_selector("text=The run accepted it")
            await page.screenshot(path=str(SHOTS / "exception-item-resolved.png"), full_page=True)
        finally:
            await browser.close()
    result = await gw.client.get_workflow_handle(workflow_id).result()
    [received] = result["resolutions"]
    assert received["corrections"] == {"cost_center": "CC-200"}
    assert received["actor"] == "dana.manager"
