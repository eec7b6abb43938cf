"""NetSuite invoices: created once per idempotency key (an async job keyed like a batch),
voided by transform, read back one by one or, many projects' at once, over SuiteQL.

SuiteQL has no `invoice` table: an invoice is a row of `transaction` with `type = 'CustInvc'`
(`status` a letter, `A` Open, `B` Paid In Full, `V` Voided; `foreigntotal` its total in its
own currency). With the project apart from the customer (pssync's invoices set `entity` = the
customer, `job` = the project), the project is on the lines: `transactionline.entity`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connectors._vendor_errors import unmappable
from connectors.erp.mapping import (
    _ISO_DATES,
    _NO_CURRENCIES,
    _memo_period,
    _money,
    _raise_info,
    batch_idempotency_key,
    invoice_body,
    invoice_from_netsuite,
)
from connectors.erp.netsuite._base import _NetSuiteBase
from connectors.erp.port import SYSTEM, InvoiceHeader
from connectors.erp.values import DateFormat, currency_code, invoice_status, ref_id
from contracts.errors import TransientError
from contracts.v1.models import Invoice

_IN_LIST = 100
"""Values per SuiteQL `IN (...)` list."""
_INVOICES_OF = (
    "SELECT DISTINCT t.id, t.externalid, t.trandate, t.foreigntotal, t.currency, t.status,"
    " t.memo, t.custbody_pssync_milestone, t.lastmodifieddate, tl.entity AS job"
    " FROM transaction t INNER JOIN transactionline tl ON tl.transaction = t.id"
    " WHERE t.type = 'CustInvc' AND tl.mainline = 'F' AND tl.entity IN ({jobs})"
    " ORDER BY t.id, tl.entity"
)
"""The invoices (header fields, no lines) of some projects: one row per invoice and project
its item lines bill (not the main line: its `entity` is the customer, and customers and
projects share one id space), in a stable order for paging."""


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

    if TYPE_CHECKING:  # `_PostingsMixin`'s, beside this one in `NetSuiteErp`

        async def _job_ids(self, projects: Sequence[str]) -> dict[str, str]: ...

    async def list_invoices_of(self, projects: Sequence[str]) -> dict[str, list[InvoiceHeader]]:
        """Many projects' invoices in a few SuiteQL queries: the projects' internal ids (one
        query per 100 not yet known), their invoices (`transaction` rows of type `CustInvc`
        whose lines are the project's, 100 projects a query, pages of 1,000) with the header
        fields pssync reads (no lines)."""
        wanted = list(dict.fromkeys(projects))
        job_ids = await self._job_ids(wanted)
        found: dict[str, list[InvoiceHeader]] = {p: [] for p in wanted}
        ids = sorted({int(j) for j in job_ids.values()})
        rows: list[dict[str, Any]] = []
        for i in range(0, len(ids), _IN_LIST):
            chunk = ", ".join(str(j) for j in ids[i : i + _IN_LIST])
            rows += await self._suiteql(_INVOICES_OF.format(jobs=chunk))
        if not rows:
            return found
        currencies = await self._currencies(*(row.get("currency") for row in rows))
        by_job: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_job.setdefault(str(ref_id(row.get("job")) or ""), []).append(row)
        for project, job_id in job_ids.items():
            found[project] = [
                invoice_header_from_row(
                    row, project=project, date_format=self.date_format, currencies=currencies
                )
                for row in by_job.get(job_id, [])
            ]
        return found


@unmappable(SYSTEM, "invoice")
def invoice_header_from_row(
    row: Mapping[str, Any],
    *,
    project: str,
    date_format: DateFormat = _ISO_DATES,
    currencies: Mapping[str, str] = _NO_CURRENCIES,
) -> InvoiceHeader:
    """A SuiteQL `transaction` row of an invoice (text values, bare ids, dates in the
    account's format, `job` the project its lines bill) as the header reconciliation compares:
    its key, milestone, period, total and status."""
    currency = currency_code(row.get("currency"), currencies) or "USD"
    return InvoiceHeader(
        erp_id=str(row["id"]),
        key=row.get("externalid") or None,
        project=project,
        milestone_code=row.get("custbody_pssync_milestone") or None,
        period=_memo_period(row.get("memo")),
        invoice_date=date_format.parse(row["trandate"]),
        total=_money(row.get("foreigntotal") or 0, currency),
        status=invoice_status(row.get("status")),
        updated_at=_stamp(row.get("lastmodifieddate")),
    )


def _stamp(value: Any) -> datetime | None:
    """`lastmodifieddate` when it is an ISO time stamp (the twin's); None otherwise (an
    account may show it in its own format: then nothing is left to settle by it)."""
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
