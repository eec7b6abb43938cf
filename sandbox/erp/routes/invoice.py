"""`POST /services/rest/record/v1/invoice/{id}/!transform/void`: voiding an invoice."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from sandbox._twin import TwinError
from sandbox.erp.bodies import VoidBody
from sandbox.erp.common import INVOICE_PAID, INVOICE_VOIDED, RECORD, _now
from sandbox.erp.context import ErpContext
from sandbox.erp.records import RECORD_TYPES, _find
from sandbox.erp.web import _read_body, created


def register(router: APIRouter, ctx: ErpContext) -> None:
    """The invoice void transform (before the generic record routes)."""

    @router.post(
        f"{RECORD}/invoice/{{ident}}/!transform/void",
        summary="Void an invoice (it stays, Voided, with the reason in its memo)",
    )
    async def void_invoice(ident: str, request: Request) -> Response:
        empty = not (await request.body()).strip()
        body = VoidBody() if empty else await _read_body(request, VoidBody)
        with ctx.state.session() as s:
            row = _find(s, RECORD_TYPES["invoice"], ident)
            if row.status == INVOICE_PAID:
                raise TwinError(
                    400,
                    "INVALID_TRANSACTION_STATE",
                    f"Invoice {row.id} is paid in full; a paid invoice cannot be voided.",
                    "status",
                )
            if row.status != INVOICE_VOIDED:
                note = f"Voided: {body.memo}" if body.memo else "Voided"
                row.memo = f"{row.memo}\n{note}" if row.memo else note
                row.status = INVOICE_VOIDED
                row.last_modified = _now()
                s.add(row)
                s.commit()
            return created(request, RECORD_TYPES["invoice"], row)
