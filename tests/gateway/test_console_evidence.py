"""An item's page shows a vendor refusal as a person reads it: what pssync sent (method, path,
body) and what the system answered (status, body), secrets redacted and text escaped, with the
rest of what the run recorded as before."""

from __future__ import annotations

import html
from typing import Any

from store import NewExceptionItem
from tests.gateway.test_console import browser, item_page
from tests.gateway.test_gateway import Gw

__all__ = ["browser"]


async def test_an_item_shows_what_was_sent_and_what_the_erp_answered(gw: Gw, browser: Any) -> None:
    item = NewExceptionItem(
        id="evidence-sent-1",
        workflow_id="opp-to-project/acme/006EVID",
        process="opportunity_to_project",
        cause_code="CUSTOMER_CREDIT_HOLD",
        field="customer",
        detail="Acme Corp is on credit hold",
        owner="delivery_manager",
        context={
            "step": "erp_project",
            "opportunity_id": "006EVID",
            "evidence": {
                "system": "ERP",
                "request": {
                    "method": "POST",
                    "path": "/services/rest/record/v1/job?expand=<script>x</script>",
                    "body": {
                        "companyName": "Acme <b>platform</b>",
                        "auth": [{"client_secret": "s3cr3t"}],
                        "note": "Bearer tok-123",
                    },
                },
                "response": {
                    "status": 400,
                    "body": {
                        "o:errorCode": "CUSTOMER_CREDIT_HOLD",
                        "echo": {"password": "hunter2"},
                    },
                    "request_id": "ns-req-9",
                },
            },
        },
    )
    page = await item_page(gw, browser, item)
    text = page.text
    assert "What pssync sent" in text and "What the ERP answered" in text
    assert "on credit hold" in text  # the cause in business words
    for secret in ("s3cr3t", "tok-123", "hunter2"):
        assert secret not in text
    assert "<script>x</script>" not in text and "<b>platform</b>" not in text
    shown = html.unescape(text)
    assert "POST /services/rest/record/v1/job?expand=<script>x</script>" in shown
    assert '"companyName": "Acme <b>platform</b>"' in shown
    assert 'id="answered-status">400<' in text and "ns-req-9" in text
    assert '"o:errorCode": "CUSTOMER_CREDIT_HOLD"' in shown
    assert '"opportunity_id": "006EVID"' in shown  # the rest of the context, as before


async def test_an_item_without_vendor_evidence_shows_its_context_only(gw: Gw, browser: Any) -> None:
    item = NewExceptionItem(
        id="evidence-none-1",
        workflow_id="time-to-invoice/acme/P-9",
        process="time_to_invoice",
        cause_code="MissingRateCard",
        field="role",
        detail="no bill rate for role Architect on 2026-04-03",
        owner="delivery_manager",
        context={
            "entry_key": "time:T-1",
            "checked": {"rate_card_id": "RC-STD", "roles_on_card": ["Consultant"]},
        },
    )
    page = await item_page(gw, browser, item)
    assert "What pssync sent" not in page.text
    assert '"roles_on_card": [' in html.unescape(page.text)
