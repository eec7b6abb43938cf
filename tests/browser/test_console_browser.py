"""The console in a real browser: Debian's Chromium (Playwright, no browser download) against a
real uvicorn gateway on 127.0.0.1 (an OS-chosen port), the real Temporal dev server and
test_gateway's stand-in saga owning the item.

A delivery manager signs in, finds the item in the inbox, corrects the cost center with
edit-and-retry and sees the run accept it; screenshots of the pages go to docs/console/.
Skips when /usr/bin/chromium or Playwright is missing.
"""

from __future__ import annotations

from tests.browser._chromium import SHOTS, needs_chromium, signed_in_page
from tests.gateway.test_console import run_with_item
from tests.gateway.test_gateway import Gw, engine, gw, settings, store

__all__ = ["engine", "gw", "settings", "store"]

pytestmark = needs_chromium


async def test_a_delivery_manager_fixes_an_item_in_the_browser(gw: Gw) -> None:
    workflow_id, item_id = await run_with_item(gw)
    async with signed_in_page(
        gw, "/console/exceptions", "dev-dm-token", sign_in_shot="sign-in.png"
    ) as page:
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
    result = await gw.client.get_workflow_handle(workflow_id).result()
    [received] = result["resolutions"]
    assert received["corrections"] == {"cost_center": "CC-200"}
    assert received["actor"] == "dana.manager"
