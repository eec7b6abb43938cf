"""The operations console's acceptance on the whole stack, in Debian's Chromium (Playwright, no
browser download): the real Temporal dev server, the twins, the gateway and the worker.

A delivery manager signs in, finds the `MissingRateCard` item the time pipeline held (an entry
for a role the project's rate card lacks), corrects its role with edit-and-retry and the ERP
twin holds the entry posted once; the delivery manager and then finance approve a change order
in the approvals pages and the ERP budget is revised; a form posted without the CSRF token is
refused and changes nothing; a finance controller sees no actions on a provisioning item only
a delivery manager (or ops) may resolve. Skips when /usr/bin/chromium or Playwright is missing.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from contracts.settings import DEV_TOKENS, load_settings
from contracts.v1.processes import ProvisionProjectResult
from demo import DealOutcome, deal_from_template, provisionable_templates, wait_for_workflow
from demo.change_order import FINANCE_DELTA, erp_budget, submit_change_order
from demo.deals import win_deal
from demo.time_to_invoice import (
    RATED_ROLE,
    UNRATED_MINUTES,
    log_entries,
    log_unrated_entry,
    open_time_run,
)
from demo.waits import wait_for_open_exception
from sandbox.seed import build_firm
from stack import Stack, running_stack

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
FIRM = build_firm(7)
DM, FINANCE = DEV_TOKENS["delivery_manager"], DEV_TOKENS["finance_controller"]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium"),
]


async def won(stack: Stack, index: int, **changes: Any) -> DealOutcome:
    """Win the firm's `index`-th provisionable deal (with `changes`) in the CRM twin."""
    template = provisionable_templates(FIRM)[index]
    return await win_deal(stack, deal_from_template(FIRM, template, **changes))


async def provisioned(stack: Stack, deal: DealOutcome) -> DealOutcome:
    handle = await wait_for_workflow(
        stack.client, deal.workflow_id, result_type=ProvisionProjectResult
    )
    result = await asyncio.wait_for(handle.result(), 60)
    deal.enterprise_id = result.enterprise_id
    deal.psa_project_id = result.psa_project_id
    deal.erp_project_id = result.erp_project_id
    return deal


async def sign_in(page: Any, base: str, token: str, then: str) -> None:
    """Open `then`, be sent to the sign-in form, sign in with `token` and land on `then`."""
    await page.goto(f"{base}{then}")
    assert "/console/sign-in" in page.url
    await page.get_by_label("Bearer token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"**{then}")


async def approve(page: Any, base: str, co_id: str, role: str) -> None:
    """From the approvals inbox, open the change order and approve it with a comment."""
    await page.goto(f"{base}/console/approvals")
    await page.wait_for_selector("#approvals")
    await page.get_by_role("link", name=co_id, exact=True).click()
    form = page.locator("#decision-approve")
    await form.wait_for()
    await form.get_by_label("Comment (optional)").fill(f"impact checked as {role}")
    await form.get_by_role("button", name="Approve").click()
    await page.wait_for_selector("text=The run accepted it")
    assert f"Approved as {role}" in await page.locator(".flash-ok").inner_text()


async def test_the_console_on_the_whole_stack(tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    settings = load_settings(home=tmp_path / ".pssync")
    async with running_stack(settings, ephemeral_ports=True) as stack:
        deal, bad = await asyncio.gather(won(stack, 0), won(stack, 1, cost_center="CC-404"))
        cc_item = await wait_for_open_exception(stack, bad.workflow_id)
        await provisioned(stack, deal)
        day = date.today() - timedelta(days=1)
        async with open_time_run(stack, deal) as run:
            entries = await log_entries(run, day, 3)
            odd = await log_unrated_entry(run, day)
            item = await wait_for_open_exception(stack, run.workflow_id)
            await run.until(lambda: len(run.erp_rows(entries)) == 3, "3 postings in the ERP")
        assert item.cause_code == "MissingRateCard" and run.erp_rows([odd]) == []

        base = stack.urls["gateway"]
        async with playwright.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            try:
                page = await browser.new_page(viewport={"width": 1366, "height": 900})
                await sign_in(page, base, DM, "/console/exceptions")

                # the inbox lists the held entry; its page offers edit-and-retry on the role
                row = page.locator("tr", has=page.get_by_role("link", name=item.id, exact=True))
                assert "MissingRateCard" in await row.inner_text()
                await page.get_by_role("link", name=item.id, exact=True).click()
                form = page.locator("#action-retry_with_data")
                await form.wait_for()
                await form.get_by_label("Role (the field at fault)").fill(RATED_ROLE)
                await form.get_by_label("Note (optional)").fill(f"billed as {RATED_ROLE}")
                SHOTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(SHOTS / "e2e-missing-rate-card.png"), full_page=True)
                await form.get_by_role("button", name="Correct and retry").click()
                await page.wait_for_selector("text=The run accepted it")
                assert "(outcome: posted)" in await page.locator(".flash-ok").inner_text()
                await run.until(lambda: bool(run.erp_rows([odd])), "the corrected posting")
                [posting] = run.erp_rows([odd])
                assert posting.kind != "reversal"
                assert Decimal(str(posting.hours)) == Decimal(UNRATED_MINUTES) / 60

                # a change order above the finance threshold: both approve in the console
                before = await erp_budget(stack, deal)
                co_id, handle, status = await submit_change_order(stack, deal)
                assert sorted(status["required_roles"]) == [
                    "delivery_manager",
                    "finance_controller",
                ]
                await approve(page, base, str(co_id), "delivery_manager")

                # a form without the CSRF token, with the DM's own session: refused, no change
                await page.goto(f"{base}/console/exceptions/{cc_item.id}")
                await page.locator("#action-retry_with_data").wait_for()
                forged = await page.request.post(
                    f"{base}/console/exceptions/{cc_item.id}/resolution",
                    form={"action": "retry_with_data", "correction.cost_center": "CC-100"},
                )
                assert forged.status == 403
                assert "This form cannot be accepted" in await forged.text()  # the CSRF refusal
                unchanged = await asyncio.to_thread(stack.store.get_exception, cc_item.id)
                assert unchanged is not None
                assert (unchanged.status, unchanged.resolution) == ("open", None)

                await page.get_by_role("button", name="Sign out").click()
                await page.wait_for_url("**/console/sign-in**")
                await sign_in(page, base, FINANCE, "/console/approvals")
                await approve(page, base, str(co_id), "finance_controller")
                result = await asyncio.wait_for(handle.result(), 60)

                # finance on the provisioning item: the page, but none of the DM's actions
                await page.goto(f"{base}/console/exceptions/{cc_item.id}")
                await page.locator("#no-actions").wait_for()
                assert await page.locator("form[id^='action-']").count() == 0
                await page.screenshot(
                    path=str(SHOTS / "e2e-finance-no-actions.png"), full_page=True
                )
            finally:
                await browser.close()

        after = await erp_budget(stack, deal)
        assert result.outcome == "applied"
        assert after.amount.amount - before.amount.amount == FINANCE_DELTA
        assert after.version > before.version
        assert run.erp_rows([odd]) == [posting]
