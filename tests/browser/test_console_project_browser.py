"""A project's story in a real browser: Debian's Chromium (Playwright, no browser download)
against a real uvicorn gateway on 127.0.0.1, the real Temporal dev server and
test_console_projects' project (xref links, a ledger over two periods, an invoice, an open item,
a drift, a saga run and a change order in visibility).

A finance controller signs in, opens *Projects*, enters the project's PSA id and lands on its
story; the screenshot goes to docs/console/project.png. Skips when /usr/bin/chromium or
Playwright is missing.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from temporalio.client import WorkflowHandle

from tests.browser._chromium import SHOTS, needs_chromium, signed_in_page
from tests.gateway.test_console_projects import build_story, start_run
from tests.gateway.test_gateway import Gw, engine, gw, settings, store

__all__ = ["engine", "gw", "settings", "store"]

pytestmark = needs_chromium


async def test_finance_finds_a_projects_story_in_the_browser(gw: Gw) -> None:
    story = await asyncio.to_thread(build_story, gw.store)
    runs: list[WorkflowHandle[Any, Any]] = [
        await start_run(
            gw.client, f"opp-to-project/story/{story.opp}", "opportunity_to_project", story.eid
        ),
        await start_run(
            gw.client,
            f"change-order/story/CO-{uuid.uuid4().hex[:6]}",
            "change_order",
            story.eid,
            change_order=f"CO-{story.psa}",
        ),
    ]
    try:
        async with signed_in_page(gw, "/console/projects", "dev-finance-token") as page:
            await page.wait_for_selector("#projects")
            await page.get_by_label("Project id (any system)").fill(story.psa)
            await page.get_by_role("button", name="Show the project").click()
            await page.wait_for_selector("#postings")
            assert page.url.endswith(f"/console/projects/{story.eid}")
            # Visibility indexes a start shortly after it: reload until the runs show.
            for _ in range(50):
                if await page.locator("#runs tbody tr").count() >= 2:
                    break
                await asyncio.sleep(0.2)
                await page.reload()
            assert await page.locator("#change-orders tbody tr").count() == 1
            net = page.locator(
                'tr[data-period="2026-10"][data-kind="time"] td[data-col="net_amount"]'
            )
            assert await net.inner_text() == "1,860.00 EUR"
            await page.screenshot(path=str(SHOTS / "project.png"), full_page=True)
    finally:
        for handle in runs:
            await handle.terminate("test over")
