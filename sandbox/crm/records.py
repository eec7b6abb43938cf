"""The CRM twin's record writes: IDs, audit stamps, stages, line-item prices and roll-ups,
and the per-type create/update rules shared by the sObject routes."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlmodel import Session, select

from sandbox._ids import is_salesforce_id, salesforce_id, salesforce_id_18
from sandbox.crm.bodies import _fail, _money, _not_found, _now
from sandbox.crm.describe import SOBJECTS, STAGES, TWIN_POD, FieldSpec, SObject
from sandbox.crm.tables import CrmAccount, CrmOpportunity, CrmOpportunityLineItem, CrmSequence

# --------------------------------------------------------------------------- store helpers


def _next_id(session: Session, prefix: str) -> str:
    seq = session.get(CrmSequence, prefix)
    if seq is None:
        seq = CrmSequence(prefix=prefix, next=1)
    number = seq.next
    seq.next += 1
    session.add(seq)
    return salesforce_id(prefix, number, pod=TWIN_POD)


def _stamp(row: Any, now: datetime) -> None:
    """Bump audit fields; SystemModstamp strictly increases so it can serve as a version."""
    previous = getattr(row, "SystemModstamp", None)
    if previous is not None and now <= previous:
        now = previous + timedelta(milliseconds=1)
    row.LastModifiedDate = now
    row.SystemModstamp = now


def _audit(now: datetime) -> dict[str, Any]:
    """The audit stamps of a record created at `now`."""
    return {"CreatedDate": now, "LastModifiedDate": now, "SystemModstamp": now}


def _with_value(session: Session, sobject: SObject, name: str, value: Any) -> list[Any]:
    """The records whose field `name` holds `value` (at most one for an External ID field)."""
    table = sobject.table
    return list(session.exec(select(table).where(getattr(table, name) == value)).all())


def _get(session: Session, sobject: SObject, record_id: str) -> Any:
    if not is_salesforce_id(record_id):
        raise _not_found()
    rid = salesforce_id_18(record_id)
    if not rid.startswith(sobject.prefix):
        raise _not_found()
    row = session.get(sobject.table, rid)
    if row is None:
        raise _not_found()
    return row


def _apply_stage(opp: CrmOpportunity, stage: str, probability_given: bool) -> None:
    probability, closed, won, forecast = STAGES[stage]
    opp.StageName = stage
    opp.IsClosed = closed
    opp.IsWon = won
    opp.ForecastCategoryName = forecast
    if not probability_given:
        opp.Probability = str(probability)


def _roll_up(session: Session, opp: CrmOpportunity) -> None:
    """Amount is the sum of the line items' TotalPrice once an opportunity has products."""
    lines = session.exec(
        select(CrmOpportunityLineItem).where(CrmOpportunityLineItem.OpportunityId == opp.Id)
    ).all()
    opp.HasOpportunityLineItem = bool(lines)
    if lines:
        opp.Amount = _money(sum((Decimal(li.TotalPrice) for li in lines), Decimal(0)))


def _check_reference(session: Session, spec: FieldSpec, value: str | None) -> None:
    if value is None or spec.refers_to is None:
        return
    target = SOBJECTS[spec.refers_to]
    if not value.startswith(target.prefix) or session.get(target.table, value) is None:
        raise _fail(
            "INVALID_CROSS_REFERENCE_KEY",
            f"invalid cross reference id: {spec.name} {value}",
            spec.name,
        )


def _line_prices(values: dict[str, Any], current: CrmOpportunityLineItem | None) -> None:
    """Salesforce's rule: UnitPrice or TotalPrice, never both; the other is derived."""
    if values.get("UnitPrice") is not None and values.get("TotalPrice") is not None:
        raise _fail(
            "FIELD_INTEGRITY_EXCEPTION",
            "field integrity exception: TotalPrice (Unit Price and Total Price cannot both "
            "be specified)",
            "TotalPrice",
        )
    quantity = Decimal(values.get("Quantity") or (current.Quantity if current else "0"))
    if quantity <= 0:
        raise _fail(
            "FIELD_INTEGRITY_EXCEPTION",
            "field integrity exception: Quantity (quantity must be positive)",
            "Quantity",
        )
    if values.get("TotalPrice") is not None:
        total = Decimal(values["TotalPrice"])
        values["UnitPrice"] = _money(total / quantity)
        values["TotalPrice"] = _money(total)
        return
    unit_raw = values.get("UnitPrice") or (current.UnitPrice if current else None)
    if unit_raw is None:
        raise _fail(
            "REQUIRED_FIELD_MISSING", "Required fields are missing: [UnitPrice]", "UnitPrice"
        )
    values["UnitPrice"] = _money(Decimal(unit_raw))
    values["TotalPrice"] = _money(quantity * Decimal(unit_raw))


def update_row(session: Session, sobj: SObject, row: Any, values: dict[str, Any]) -> bool:
    """Apply an update to `row` (committed); True when it made an opportunity won."""
    for name, value in values.items():
        _check_reference(session, sobj.fields[name], value)
        if value is None and sobj.fields[name].required:
            raise _fail("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{name}]", name)
    now = _now()
    became_won = False
    if isinstance(row, CrmOpportunity):
        if row.HasOpportunityLineItem:
            # Amount is a roll-up of the products: never set directly. The currency
            # may be restated, not changed.
            for name in ("Amount", "CurrencyIsoCode"):
                if name in values and (name == "Amount" or values[name] != getattr(row, name)):
                    raise _fail(
                        "FIELD_INTEGRITY_EXCEPTION",
                        f"field integrity exception: {name} (cannot be changed on an "
                        "opportunity with products; it follows the line items)",
                        name,
                    )
        was_won = row.IsWon
        stage = values.pop("StageName", None)
        for name, value in values.items():
            setattr(row, name, value)
        if stage is not None:
            _apply_stage(row, stage, "Probability" in values)
        became_won = row.IsWon and not was_won
    elif isinstance(row, CrmOpportunityLineItem):
        if {"Quantity", "UnitPrice", "TotalPrice"} & values.keys():
            _line_prices(values, row)
        for name, value in values.items():
            setattr(row, name, value)
        session.add(row)
        opp = session.get(CrmOpportunity, row.OpportunityId)
        if opp is not None:
            _roll_up(session, opp)  # autoflush: sees the line's new TotalPrice
            _stamp(opp, now)
            session.add(opp)
    else:
        for name, value in values.items():
            setattr(row, name, value)
    _stamp(row, now)
    session.add(row)
    session.commit()
    return became_won


def insert_row(session: Session, sobj: SObject, values: dict[str, Any]) -> tuple[str, bool]:
    """Create a record (committed): its Id, and whether it was created won."""
    now = _now()
    became_won = False
    for name, value in values.items():
        _check_reference(session, sobj.fields[name], value)
    row: Any
    if sobj.name == "Account":
        row = CrmAccount(Id=_next_id(session, sobj.prefix), **_audit(now), **values)
    elif sobj.name == "Opportunity":
        stage = values.pop("StageName")
        row = CrmOpportunity(
            Id=_next_id(session, sobj.prefix), StageName=stage, **_audit(now), **values
        )
        if row.CurrencyIsoCode is None:
            row.CurrencyIsoCode = "USD"
        _apply_stage(row, stage, "Probability" in values)
        became_won = row.IsWon
    else:
        opp = session.get(CrmOpportunity, values["OpportunityId"])
        assert opp is not None  # checked by _check_reference
        _line_prices(values, None)
        row = CrmOpportunityLineItem(
            Id=_next_id(session, sobj.prefix),
            CurrencyIsoCode=opp.CurrencyIsoCode,
            **_audit(now),
            **values,
        )
        session.add(row)
        session.flush()
        _roll_up(session, opp)
        _stamp(opp, now)
        session.add(opp)
    session.add(row)
    session.commit()
    return str(row.Id), became_won
