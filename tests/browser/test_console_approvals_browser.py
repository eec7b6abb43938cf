"""The approvals inbox in a real browser: Debian's Chromium (Playwright, no browser download)
against a real uvicorn gateway on 127.0.0.1, the real Temporal dev server and
test_console_approvals' stand-in change-order run.

A delivery manager signs in, finds the change order waiting for them, opens it, approves it
with a comment and sees the run accept it; screenshots of the pages go to docs/console/.
Skips when /usr/bin/chromium or Playwright is missing.
"""

from __future__ import annotations

from contracts.v1.change_orders import DELIVERY_MANAGER
from tests.browser._chromium import SHOTS, needs_chromium, signed_in_page
from tests.gateway.test_console_approvals import Start, decisions_of, start_change_order
from tests.gateway.test_gateway import Gw, engine, gw, settings, store

__all__ = ["engine", "gw", "settings", "start_change_order", "store"]

pytestmark = needs_chromium


async def test_a_delivery_manager_approves_a_change_order_in_the_browser(
    gw: Gw, start_change_order: Start
) -> None:
    co = await start_change_order("E-1001", [DELIVERY_MANAGER])
    async with signed_in_page(gw, "/console/approvals", "dev-dm-token") as page:
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
    [decision] = await decisions_of(gw, co)
    assert (decision.actor, decision.approve, decision.note) == (
        "dana.manager",
        True,
        "scope agreed with the client",
    )
