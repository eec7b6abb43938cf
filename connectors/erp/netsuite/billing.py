"""NetSuite invoices: created once per idempotency key (an async job keyed like a batch),
voided by transform, read back."""

from __future__ import annotations

from connectors.erp.mapping import (
    _raise_info,
    batch_idempotency_key,
    invoice_body,
    invoice_from_netsuite,
)
from connectors.erp.netsuite._base import _NetSuiteBase
from connectors.erp.port import SYSTEM
from contracts.errors import TransientError
from contracts.v1.models import Invoice


class _BillingMixin(_NetSuiteBase):
    # -- invoices ---------------------------------------------------------------------------

    async def create_invoice(self, invoice: Invoice) -> str:
        total = invoice.total
        entity = await self._reference("customer", invoice.customer_id, field="entity")
        job = await self._reference("job", invoice.project_id, field="job")
        body = invoice_body(invoice, currency=total.currency, entity=entity, job=job)
        key = batch_idempotency_key([invoice.idempotency_key], scope="invoice")
        outcome = (await self._async_upsert("invoice", [body], key))[invoice.idempotency_key]
        if outcome.error is not None:
            _raise_info(outcome.error)
        if outcome.erp_id is None:
            raise TransientError(f"{SYSTEM} reported no id for the invoice", system=SYSTEM)
        return outcome.erp_id

    async def void_invoice(self, erp_id: str, *, reason: str) -> None:
        """NetSuite voids a transaction by transforming it (`!transform/void`); the twin
        answers a repeat with 204 too, so a retried or repeated void is a no-op."""
        await self._send(
            "POST",
            f"{self._path('invoice', erp_id)}/!transform/void",
            {"memo": reason},
            ok=(200, 204),
        )

    async def get_invoice(self, erp_id: str) -> Invoice:
        # The `item` sublist comes as links unless expanded.
        body = await self._get(self._path("invoice", erp_id), params={"expandSubResources": "true"})
        currencies = await self._currencies(body.get("currency"))
        return invoice_from_netsuite(body, date_format=self.date_format, currencies=currencies)
