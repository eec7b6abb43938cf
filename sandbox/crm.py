"""CRM twin: a Salesforce REST API subset (Account, Opportunity, OpportunityLineItem).

Endpoints (any API version v31.0..v62.0 in the path; the connector uses v61.0):

- `GET   /services/data/v61.0/sobjects/{Object}/{Id}[?fields=A,B]` — one record with
  `attributes {type, url}`; 15- or 18-character IDs.
- `PATCH /services/data/v61.0/sobjects/{Object}/{Id}` — 204. Unknown fields are refused
  (`INVALID_FIELD`), read-only ones too (`INVALID_FIELD_FOR_INSERT_UPDATE`), wrong types answer
  `JSON_PARSER_ERROR`, restricted picklists `INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`. An
  opportunity with products refuses a direct `Amount` (or currency) change with
  `FIELD_INTEGRITY_EXCEPTION`: its Amount is the sum of its line items' TotalPrice.
- `POST  /services/data/v61.0/sobjects/{Object}` — 201 `{"id", "success": true, "errors": []}`.
- `PATCH /services/data/v61.0/sobjects/{Object}/{ExtIdField}/{value}` — upsert by an external
  ID field (`Pssync_Key__c` on Opportunity and OpportunityLineItem, a custom Text(255) field
  marked External ID and Unique): no match creates (201 `{"id", "success", "errors",
  "created": true}`), a match is updated (200, `"created": false`, as from API v46.0). Sent
  twice, it is still one record — the way to create safely when an answer can be lost.
- `GET   /services/data/v61.0/query?q=SELECT ...` and `GET .../query/{locator}-{offset}` —
  a tiny SOQL subset: `SELECT f, ... FROM Object [WHERE f op v [AND ...]] [ORDER BY f
  [ASC|DESC]] [LIMIT n]`, ops `= != <> < <= > >= IN (...)`. Results page with `totalSize`,
  `done`, `nextRecordsUrl`; the batch size comes from `Sforce-Query-Options: batchSize=N`
  (Salesforce clamps it to 200..2000; the twin accepts 1..2000 so paging is cheap to test).

Errors use Salesforce's shape, a JSON list: `[{"message", "errorCode", "fields"}]`; 401 is
always `INVALID_SESSION_ID`, unknown records and resources `NOT_FOUND`.

When an opportunity reaches the contracted stage (`Closed Won`, by PATCH or create) the twin
emits a signed thin event `opportunity.won` with `{"tenant", "object", "id", "stage"}` — like an
Outbound Message or a record-triggered Flow callout: at least once, the receiver re-reads.

Handlers are `async def` and touch SQLite synchronously, so no two requests' transactions
interleave on the twin's connection (an in-memory twin shares one between threads).

Money is kept as decimal strings in SQLite and rendered as JSON numbers with two decimals (as
Salesforce does); a careful client parses them as decimals.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel import Field, Session, SQLModel, select

from contracts.settings import DEV_WEBHOOK_SECRET
from sandbox._ids import is_salesforce_id, salesforce_id, salesforce_id_18
from sandbox._twin import TwinError, TwinState, WebhookSender, create_twin_app, make_twin_engine

if TYPE_CHECKING:
    from sandbox.seed import Firm

ORG_ID = salesforce_id("00D", 1)
"""The twin org's ID."""
CONTRACTED_STAGE = "Closed Won"
WON_EVENT = "opportunity.won"
MIN_API_VERSION, MAX_API_VERSION = 31.0, 62.0
TWIN_POD = "9Z"
"""Records created through the API get IDs on this pod; seeded ones use another."""

# StageName -> (Probability, IsClosed, IsWon, ForecastCategoryName), Salesforce's defaults.
STAGES: dict[str, tuple[int, bool, bool, str]] = {
    "Prospecting": (10, False, False, "Pipeline"),
    "Qualification": (10, False, False, "Pipeline"),
    "Needs Analysis": (20, False, False, "Pipeline"),
    "Value Proposition": (50, False, False, "Pipeline"),
    "Id. Decision Makers": (60, False, False, "Pipeline"),
    "Perception Analysis": (70, False, False, "Pipeline"),
    "Proposal/Price Quote": (75, False, False, "Pipeline"),
    "Negotiation/Review": (90, False, False, "Commit"),
    "Closed Won": (100, True, True, "Closed"),
    "Closed Lost": (0, True, False, "Omitted"),
}
CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD", "CHF", "JPY")
BILLING_TYPES = ("Time and Materials", "Fixed Fee", "Milestone")
PROVISIONING_STATUSES = ("Not Started", "In Progress", "Provisioned", "Failed")

_CENT = Decimal("0.01")


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def sf_datetime(value: datetime) -> str:
    """Salesforce's datetime format: `2025-01-15T10:22:31.000+0000`."""
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


# --------------------------------------------------------------------------- tables


class CrmAccount(SQLModel, table=True):
    __tablename__ = "crm_account"

    Id: str = Field(primary_key=True)
    Name: str
    CurrencyIsoCode: str = "USD"
    BillingCountry: str | None = None
    Industry: str | None = None
    Type: str | None = "Customer"
    Credit_Hold__c: bool = False
    CreatedDate: datetime
    LastModifiedDate: datetime
    SystemModstamp: datetime


class CrmOpportunity(SQLModel, table=True):
    __tablename__ = "crm_opportunity"

    Id: str = Field(primary_key=True)
    Name: str
    AccountId: str | None = Field(default=None, index=True)
    Amount: str | None = None
    CloseDate: date
    StageName: str = Field(index=True)
    Probability: str | None = None
    IsClosed: bool = False
    IsWon: bool = False
    ForecastCategoryName: str = "Pipeline"
    CurrencyIsoCode: str = "USD"
    HasOpportunityLineItem: bool = False
    Description: str | None = None
    Practice__c: str | None = None
    Cost_Center__c: str | None = None
    Rate_Card__c: str | None = None
    Delivery_Manager__c: str | None = None
    Enterprise_Project_Id__c: str | None = Field(default=None, index=True)
    Pssync_Key__c: str | None = Field(default=None, index=True)
    Provisioning_Status__c: str | None = None
    Provisioning_Error__c: str | None = None
    CreatedDate: datetime
    LastModifiedDate: datetime
    SystemModstamp: datetime


class CrmOpportunityLineItem(SQLModel, table=True):
    __tablename__ = "crm_opportunity_line_item"

    Id: str = Field(primary_key=True)
    OpportunityId: str = Field(index=True)
    ProductCode: str | None = None
    Name: str | None = None
    Description: str | None = None
    Quantity: str
    UnitPrice: str
    TotalPrice: str
    ServiceDate: date | None = None
    SortOrder: int | None = None
    CurrencyIsoCode: str = "USD"
    Billing_Type__c: str | None = None
    Role__c: str | None = None
    Pssync_Key__c: str | None = Field(default=None, index=True)
    CreatedDate: datetime
    LastModifiedDate: datetime
    SystemModstamp: datetime


class CrmSequence(SQLModel, table=True):
    __tablename__ = "crm_sequence"

    prefix: str = Field(primary_key=True)
    next: int = 1


TABLES = [
    CrmAccount.__table__,  # type: ignore[attr-defined]
    CrmOpportunity.__table__,  # type: ignore[attr-defined]
    CrmOpportunityLineItem.__table__,  # type: ignore[attr-defined]
    CrmSequence.__table__,  # type: ignore[attr-defined]
]


# --------------------------------------------------------------------------- describe


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str
    """id, string, textarea, reference, currency, double, percent, int, date, datetime,
    boolean, picklist."""
    create: bool = False
    update: bool = False
    required: bool = False
    length: int | None = None
    values: tuple[str, ...] = ()
    refers_to: str | None = None
    external_id: bool = False
    """An External ID field (unique here): usable as the key of an upsert."""


@dataclass(frozen=True)
class SObject:
    name: str
    prefix: str
    table: type[SQLModel]
    fields: dict[str, FieldSpec]
    lookup: dict[str, str] = field(default_factory=dict)
    """lower-case name -> API name."""


def _sobject(name: str, prefix: str, table: type[SQLModel], specs: list[FieldSpec]) -> SObject:
    fields = {s.name: s for s in specs}
    return SObject(name, prefix, table, fields, {n.lower(): n for n in fields})


_AUDIT = [
    FieldSpec("CreatedDate", "datetime"),
    FieldSpec("LastModifiedDate", "datetime"),
    FieldSpec("SystemModstamp", "datetime"),
]

SOBJECTS: dict[str, SObject] = {
    "Account": _sobject(
        "Account",
        "001",
        CrmAccount,
        [
            FieldSpec("Id", "id"),
            FieldSpec("Name", "string", required=True, length=255, create=True, update=True),
            FieldSpec("CurrencyIsoCode", "picklist", values=CURRENCIES, create=True, update=True),
            FieldSpec("BillingCountry", "string", length=80, create=True, update=True),
            FieldSpec("Industry", "string", length=40, create=True, update=True),
            FieldSpec("Type", "string", length=40, create=True, update=True),
            FieldSpec("Credit_Hold__c", "boolean", create=True, update=True),
            *_AUDIT,
        ],
    ),
    "Opportunity": _sobject(
        "Opportunity",
        "006",
        CrmOpportunity,
        [
            FieldSpec("Id", "id"),
            FieldSpec("Name", "string", required=True, length=120, create=True, update=True),
            FieldSpec("AccountId", "reference", refers_to="Account", create=True, update=True),
            FieldSpec("Amount", "currency", create=True, update=True),
            FieldSpec("CloseDate", "date", required=True, create=True, update=True),
            FieldSpec(
                "StageName",
                "picklist",
                required=True,
                values=tuple(STAGES),
                create=True,
                update=True,
            ),
            FieldSpec("Probability", "percent", create=True, update=True),
            FieldSpec("IsClosed", "boolean"),
            FieldSpec("IsWon", "boolean"),
            FieldSpec("ForecastCategoryName", "string"),
            FieldSpec("CurrencyIsoCode", "picklist", values=CURRENCIES, create=True, update=True),
            FieldSpec("HasOpportunityLineItem", "boolean"),
            FieldSpec("Description", "textarea", length=32000, create=True, update=True),
            FieldSpec("Practice__c", "string", length=80, create=True, update=True),
            FieldSpec("Cost_Center__c", "string", length=40, create=True, update=True),
            FieldSpec("Rate_Card__c", "string", length=40, create=True, update=True),
            FieldSpec("Delivery_Manager__c", "string", length=40, create=True, update=True),
            FieldSpec("Enterprise_Project_Id__c", "string", length=26, create=True, update=True),
            FieldSpec(
                "Pssync_Key__c", "string", length=255, create=True, update=True, external_id=True
            ),
            FieldSpec(
                "Provisioning_Status__c",
                "picklist",
                values=PROVISIONING_STATUSES,
                create=True,
                update=True,
            ),
            FieldSpec("Provisioning_Error__c", "string", length=255, create=True, update=True),
            *_AUDIT,
        ],
    ),
    "OpportunityLineItem": _sobject(
        "OpportunityLineItem",
        "00k",
        CrmOpportunityLineItem,
        [
            FieldSpec("Id", "id"),
            FieldSpec(
                "OpportunityId", "reference", create=True, required=True, refers_to="Opportunity"
            ),
            # Salesforce derives ProductCode and Name from Product2; the twin has no product
            # catalogue, so they are set on create.
            FieldSpec("ProductCode", "string", create=True, length=255),
            FieldSpec("Name", "string", create=True, length=376),
            FieldSpec("Description", "string", length=255, create=True, update=True),
            FieldSpec("Quantity", "double", required=True, create=True, update=True),
            FieldSpec("UnitPrice", "currency", create=True, update=True),
            FieldSpec("TotalPrice", "currency", create=True, update=True),
            FieldSpec("ServiceDate", "date", create=True, update=True),
            FieldSpec("SortOrder", "int", create=True, update=True),
            FieldSpec("CurrencyIsoCode", "string"),
            FieldSpec(
                "Billing_Type__c", "picklist", values=BILLING_TYPES, create=True, update=True
            ),
            FieldSpec("Role__c", "string", length=80, create=True, update=True),
            FieldSpec(
                "Pssync_Key__c", "string", length=255, create=True, update=True, external_id=True
            ),
            *_AUDIT,
        ],
    ),
}


# --------------------------------------------------------------------------- errors


def error_body(status: int, code: str, message: str, field: str | None = None) -> Any:
    """Salesforce's error shape: a list of `{message, errorCode, fields}`."""
    if status == 401:
        code, message = "INVALID_SESSION_ID", "Session expired or invalid"
    elif code == "HTTP_ERROR":
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(status, "UNKNOWN_EXCEPTION")
        if status == 404:
            message = "The requested resource does not exist"
    return [{"message": message, "errorCode": code, "fields": [field] if field else []}]


def _fail(code: str, message: str, field: str | None = None, status: int = 400) -> TwinError:
    return TwinError(status, code, message, field)


def _not_found() -> TwinError:
    return _fail("NOT_FOUND", "The requested resource does not exist", status=404)


# --------------------------------------------------------------------------- values


def _money(value: Decimal) -> str:
    return str(value.quantize(_CENT, rounding=ROUND_HALF_UP))


def _render(spec: FieldSpec, value: Any) -> Any:
    if value is None:
        return None
    if spec.kind in ("currency", "double", "percent"):
        # Salesforce sends numbers; the decimal string keeps the twin's own arithmetic exact.
        return float(Decimal(value))
    if spec.kind == "date":
        return value.isoformat()
    if spec.kind == "datetime":
        return sf_datetime(value)
    return value


def render(sobject: SObject, row: SQLModel, fields: list[str] | None = None) -> dict[str, Any]:
    """A record as Salesforce sends it: `attributes` first, then the fields."""
    rid = getattr(row, "Id")  # noqa: B009
    out: dict[str, Any] = {
        "attributes": {
            "type": sobject.name,
            "url": f"/services/data/v61.0/sobjects/{sobject.name}/{rid}",
        }
    }
    for name in fields or list(sobject.fields):
        out[name] = _render(sobject.fields[name], getattr(row, name))
    return out


def _parse_value(spec: FieldSpec, value: Any) -> Any:
    """A JSON value for `spec`, converted for storage; raises the vendor's error."""
    name = spec.name

    def parser_error(kind: str) -> TwinError:
        return _fail(
            "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of {kind} from {type(value).__name__} value "
            f"{value!r} or request may be missing a required field",
            name,
        )

    if value is None:
        if spec.required:
            raise _fail("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{name}]", name)
        return None
    if spec.kind in ("string", "textarea", "reference"):
        if not isinstance(value, str):
            raise parser_error("string")
        if spec.length is not None and len(value) > spec.length:
            raise _fail(
                "STRING_TOO_LONG",
                f"{name}: data value too large: {value[:40]} (max length={spec.length})",
                name,
            )
        if spec.kind == "reference":
            if not is_salesforce_id(value):
                raise _fail("MALFORMED_ID", f"{name}: id value of incorrect type: {value}", name)
            return salesforce_id_18(value)
        return value
    if spec.kind == "picklist":
        if not isinstance(value, str):
            raise parser_error("string")
        if value not in spec.values:
            raise _fail(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{name}: bad value for restricted picklist field: {value}",
                name,
            )
        return value
    if spec.kind in ("currency", "double", "percent", "int"):
        if isinstance(value, bool) or not isinstance(value, int | Decimal | float | str):
            raise parser_error("double")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise parser_error("double") from None
        if not number.is_finite():
            raise parser_error("double")
        if spec.kind == "int":
            if number != number.to_integral_value():
                raise parser_error("int")
            return int(number)
        if spec.kind == "percent" and not 0 <= number <= 100:
            raise _fail("NUMBER_OUTSIDE_VALID_RANGE", f"{name}: value outside of valid range", name)
        if spec.kind == "currency":
            return _money(number)
        return str(number)
    if spec.kind == "date":
        if not isinstance(value, str):
            raise parser_error("date")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise parser_error("date") from None
    if spec.kind == "boolean":
        if not isinstance(value, bool):
            raise parser_error("boolean")
        return value
    raise parser_error(spec.kind)  # pragma: no cover


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"null", parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        raise _fail("JSON_PARSER_ERROR", "Unexpected character in request body") from None
    if not isinstance(body, dict):
        raise _fail("JSON_PARSER_ERROR", "Cannot deserialize request body: expected an object")
    return body


def _check_fields(sobject: SObject, body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Refuse unknown and read-only fields; return {API name: stored value}."""
    values: dict[str, Any] = {}
    for key, value in body.items():
        if key == "attributes":
            continue
        name = sobject.lookup.get(key.lower())
        if name is None:
            raise _fail(
                "INVALID_FIELD", f"No such column '{key}' on sobject of type {sobject.name}", key
            )
        spec = sobject.fields[name]
        if not (spec.create if creating else spec.update):
            raise _fail(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {name}. Please check the security settings "
                "of this field and verify that it is read/write for your profile or "
                "permission set.",
                name,
            )
        values[name] = _parse_value(spec, value)
    if creating:
        missing = [n for n, s in sobject.fields.items() if s.required and values.get(n) is None]
        if missing:
            raise _fail(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing[0],
            )
    return values


def _version_ok(version: str) -> None:
    match = re.fullmatch(r"v(\d{2}\.\d)", version)
    if not match or not MIN_API_VERSION <= float(match.group(1)) <= MAX_API_VERSION:
        raise _not_found()


def _sobject_or_404(name: str) -> SObject:
    for key, sobject in SOBJECTS.items():
        if key.lower() == name.lower():
            return sobject
    raise _not_found()


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


# --------------------------------------------------------------------------- SOQL subset


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')"
    r"|(?P<dt>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))?)"
    r"|(?P<num>-?\d+(?:\.\d+)?)"
    r"|(?P<op><=|>=|!=|<>|=|<|>|\(|\)|,)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)


@dataclass
class Soql:
    sobject: SObject
    fields: list[str]
    where: list[tuple[str, str, Any]]
    order: list[tuple[str, bool]]
    limit: int | None


def _tokens(q: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    q = q.rstrip()
    while pos < len(q):
        m = _TOKEN.match(q, pos)
        if not m or m.end() == pos:
            raise _fail("MALFORMED_QUERY", f"unexpected token at position {pos}: {q[pos:][:20]}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _literal(spec: FieldSpec, kind: str, text: str) -> Any:
    def wrong(expected: str) -> TwinError:
        return _fail(
            "MALFORMED_QUERY",
            f"value of filter criterion for field '{spec.name}' must be of type {expected}",
            spec.name,
        )

    if kind == "word" and text.lower() == "null":
        return None
    if spec.kind in ("string", "textarea", "reference", "picklist", "id"):
        if kind != "str":
            raise wrong("string and should be enclosed in quotes")
        value = text[1:-1].replace("\\'", "'")
        if spec.kind in ("id", "reference") and is_salesforce_id(value):
            value = salesforce_id_18(value)
        return value
    if spec.kind == "boolean":
        if kind != "word" or text.lower() not in ("true", "false"):
            raise wrong("boolean and should not be enclosed in quotes")
        return text.lower() == "true"
    if spec.kind in ("currency", "double", "percent", "int"):
        if kind != "num":
            raise wrong("double and should not be enclosed in quotes")
        return Decimal(text)
    if spec.kind == "date":
        if kind != "dt" or "T" in text:
            raise wrong("date and should not be enclosed in quotes")
        return date.fromisoformat(text)
    if spec.kind == "datetime":
        if kind != "dt" or "T" not in text:
            raise wrong("dateTime and should not be enclosed in quotes")
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    raise wrong(spec.kind)  # pragma: no cover


def parse_soql(q: str) -> Soql:
    toks = _tokens(q)
    i = 0

    def peek(word: str) -> bool:
        return i < len(toks) and toks[i][0] == "word" and toks[i][1].upper() == word

    def expect_word(word: str) -> None:
        nonlocal i
        if not peek(word):
            raise _fail("MALFORMED_QUERY", f"expecting '{word}'")
        i += 1

    def next_tok() -> tuple[str, str]:
        nonlocal i
        if i >= len(toks):
            raise _fail("MALFORMED_QUERY", "unexpected end of query")
        tok = toks[i]
        i += 1
        return tok

    expect_word("SELECT")
    raw_fields: list[str] = []
    while True:
        kind, text = next_tok()
        if kind != "word" or text.upper() == "FROM":
            raise _fail("MALFORMED_QUERY", f"unexpected token: {text}")
        if i < len(toks) and toks[i][1] == "(":
            raise _fail(
                "MALFORMED_QUERY", f"aggregate and function fields are not supported: {text}"
            )
        raw_fields.append(text)
        if i < len(toks) and toks[i][1] == ",":
            i += 1
            continue
        break
    expect_word("FROM")
    kind, obj_name = next_tok()
    sobject = next((s for k, s in SOBJECTS.items() if k.lower() == obj_name.lower()), None)
    if kind != "word" or sobject is None:
        raise _fail("INVALID_TYPE", f"sObject type '{obj_name}' is not supported.")

    def field_name(text: str) -> str:
        if "." in text:
            raise _fail(
                "INVALID_FIELD",
                f"Didn't understand relationship '{text.split('.')[0]}' in field path.",
                text,
            )
        name = sobject.lookup.get(text.lower())
        if name is None:
            raise _fail(
                "INVALID_FIELD", f"No such column '{text}' on entity '{sobject.name}'.", text
            )
        return name

    fields = [field_name(f) for f in raw_fields]
    where: list[tuple[str, str, Any]] = []
    if peek("WHERE"):
        i += 1
        while True:
            kind, text = next_tok()
            if kind != "word":
                raise _fail("MALFORMED_QUERY", f"unexpected token: {text}")
            name = field_name(text)
            spec = sobject.fields[name]
            kind, op = next_tok()
            if kind == "word" and op.upper() == "IN":
                kind, paren = next_tok()
                if paren != "(":
                    raise _fail("MALFORMED_QUERY", "expecting '(' after IN")
                values = []
                while True:
                    vkind, vtext = next_tok()
                    values.append(_literal(spec, vkind, vtext))
                    _, sep = next_tok()
                    if sep == ")":
                        break
                    if sep != ",":
                        raise _fail("MALFORMED_QUERY", "expecting ',' or ')'")
                where.append((name, "IN", values))
            elif kind == "op" and op in ("=", "!=", "<>", "<", "<=", ">", ">="):
                vkind, vtext = next_tok()
                where.append((name, "!=" if op == "<>" else op, _literal(spec, vkind, vtext)))
            else:
                raise _fail("MALFORMED_QUERY", f"unexpected operator: {op}")
            if peek("AND"):
                i += 1
                continue
            if peek("OR"):
                raise _fail("MALFORMED_QUERY", "OR is not supported by this twin")
            break
    order: list[tuple[str, bool]] = []
    if peek("ORDER"):
        i += 1
        expect_word("BY")
        while True:
            _, text = next_tok()
            name = field_name(text)
            desc = False
            if peek("ASC") or peek("DESC"):
                desc = toks[i][1].upper() == "DESC"
                i += 1
            order.append((name, desc))
            if i < len(toks) and toks[i][1] == ",":
                i += 1
                continue
            break
    limit = None
    if peek("LIMIT"):
        i += 1
        kind, text = next_tok()
        if kind != "num" or not text.isdigit():
            raise _fail("MALFORMED_QUERY", "LIMIT must be a non-negative integer")
        limit = int(text)
    if i != len(toks):
        raise _fail("MALFORMED_QUERY", f"unexpected token: {toks[i][1]}")
    return Soql(sobject, fields, where, order, limit)


def _comparable(spec: FieldSpec, value: Any) -> Any:
    if value is None:
        return None
    if spec.kind in ("currency", "double", "percent", "int"):
        return Decimal(str(value))
    if spec.kind == "datetime" and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _matches(row: Any, soql: Soql) -> bool:
    for name, op, literal in soql.where:
        spec = soql.sobject.fields[name]
        value = _comparable(spec, getattr(row, name))
        if op == "IN":
            if value not in literal:
                return False
            continue
        if op == "=":
            ok = value == literal
        elif op == "!=":
            ok = value != literal
        elif value is None or literal is None:
            ok = False
        else:
            ok = {
                "<": value < literal,
                "<=": value <= literal,
                ">": value > literal,
                ">=": value >= literal,
            }[op]
        if not ok:
            return False
    return True


def _run_query(session: Session, soql: Soql) -> list[str]:
    rows: list[Any] = [
        r for r in session.exec(select(soql.sobject.table)).all() if _matches(r, soql)
    ]
    # Stable default order (Salesforce's is unspecified; the Id is a fine stand-in).
    rows.sort(key=lambda r: str(r.Id))
    for name, desc in reversed(soql.order):
        spec = soql.sobject.fields[name]

        def key(row: Any, name: str = name, spec: FieldSpec = spec) -> Any:
            return _comparable(spec, getattr(row, name))

        present = sorted((r for r in rows if getattr(r, name) is not None), key=key, reverse=desc)
        nulls = [r for r in rows if getattr(r, name) is None]
        # NULLS FIRST ascending, NULLS LAST descending: SOQL's defaults.
        rows = nulls + present if not desc else present + nulls
    if soql.limit is not None:
        rows = rows[: soql.limit]
    return [str(r.Id) for r in rows]


@dataclass
class _Cursor:
    soql: Soql
    ids: list[str]
    batch: int


def _batch_size(request: Request) -> int:
    options = request.headers.get("sforce-query-options", "")
    match = re.search(r"batchSize\s*=\s*(\d+)", options)
    if not match:
        return 2000
    return max(1, min(2000, int(match.group(1))))


# --------------------------------------------------------------------------- the app


def create_app(
    db_path: Path | None = None,
    *,
    webhook_url: str | None = None,
    webhook_secret: str = DEV_WEBHOOK_SECRET,
    tenant: str = "default",
) -> FastAPI:
    """The Salesforce twin. `tenant` goes into every won-deal event (the org's name in pssync)."""
    state = TwinState(system="crm", engine=make_twin_engine(db_path, TABLES))
    state.webhooks = WebhookSender(webhook_url, webhook_secret)
    cursors: dict[str, _Cursor] = {}
    router = APIRouter(prefix="/services/data/{version}", tags=["salesforce"])

    def won(opp_id: str) -> None:
        assert state.webhooks is not None
        state.webhooks.emit(
            WON_EVENT,
            {"tenant": tenant, "object": "Opportunity", "id": opp_id, "stage": CONTRACTED_STAGE},
        )

    @router.get("/sobjects/{sobject}/{record_id}", summary="Get a record")
    async def get_record(
        version: str, sobject: str, record_id: str, fields: str | None = None
    ) -> dict[str, Any]:
        _version_ok(version)
        sobj = _sobject_or_404(sobject)
        wanted = None
        if fields:
            wanted = []
            for raw in fields.split(","):
                name = sobj.lookup.get(raw.strip().lower())
                if name is None:
                    raise _fail(
                        "INVALID_FIELD",
                        f"No such column '{raw.strip()}' on entity '{sobj.name}'.",
                        raw.strip(),
                    )
                wanted.append(name)
        with state.session() as session:
            return render(sobj, _get(session, sobj, record_id), wanted)

    def update_row(session: Session, sobj: SObject, row: Any, values: dict[str, Any]) -> bool:
        """Apply an update to `row` (committed); True when it made an opportunity won."""
        for name, value in values.items():
            _check_reference(session, sobj.fields[name], value)
            if value is None and sobj.fields[name].required:
                raise _fail(
                    "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{name}]", name
                )
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
            row = CrmAccount(
                Id=_next_id(session, sobj.prefix),
                CreatedDate=now,
                LastModifiedDate=now,
                SystemModstamp=now,
                **values,
            )
        elif sobj.name == "Opportunity":
            stage = values.pop("StageName")
            row = CrmOpportunity(
                Id=_next_id(session, sobj.prefix),
                StageName=stage,
                CreatedDate=now,
                LastModifiedDate=now,
                SystemModstamp=now,
                **values,
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
                CreatedDate=now,
                LastModifiedDate=now,
                SystemModstamp=now,
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

    @router.patch("/sobjects/{sobject}/{record_id}", status_code=204, summary="Update a record")
    async def patch_record(
        version: str, sobject: str, record_id: str, request: Request
    ) -> Response:
        _version_ok(version)
        sobj = _sobject_or_404(sobject)
        body = await _json_object(request)
        values = _check_fields(sobj, body, creating=False)
        with state.session() as session:
            row = _get(session, sobj, record_id)
            became_won = update_row(session, sobj, row, values)
            rid = row.Id
        if became_won:
            won(rid)
        return Response(status_code=204)

    @router.patch(
        "/sobjects/{sobject}/{id_field}/{external_id}",
        summary="Upsert a record by an external ID field",
    )
    async def upsert_record(
        version: str, sobject: str, id_field: str, external_id: str, request: Request
    ) -> JSONResponse:
        _version_ok(version)
        sobj = _sobject_or_404(sobject)
        name = sobj.lookup.get(id_field.lower())
        spec = sobj.fields.get(name or "")
        if spec is None or not spec.external_id:
            raise _fail(
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {id_field}",
                status=404,
            )
        body = await _json_object(request)
        given = next((v for k, v in body.items() if k.lower() == spec.name.lower()), None)
        if given is not None and given != external_id:
            raise _fail(
                "INVALID_FIELD",
                f"{spec.name}: the external ID in the body differs from the one in the URL",
                spec.name,
            )
        key = _parse_value(spec, external_id)
        with state.session() as session:
            matches = session.exec(
                select(sobj.table).where(getattr(sobj.table, spec.name) == key)
            ).all()
            if len(matches) > 1:  # pragma: no cover - the field is unique
                raise _fail("MULTIPLE_CHOICES", f"more than one record has {spec.name}", status=300)
            if matches:
                row: Any = matches[0]
                values = _check_fields(sobj, body, creating=False)
                values.pop(spec.name, None)
                became_won = update_row(session, sobj, row, values)
                rid, created = str(row.Id), False
            else:
                values = _check_fields(sobj, {**body, spec.name: external_id}, creating=True)
                rid, became_won = insert_row(session, sobj, values)
                created = True
        if became_won:
            won(rid)
        return JSONResponse(
            {"id": rid, "success": True, "errors": [], "created": created},
            status_code=201 if created else 200,
        )

    @router.post("/sobjects/{sobject}", status_code=201, summary="Create a record")
    async def create_record(version: str, sobject: str, request: Request) -> JSONResponse:
        _version_ok(version)
        sobj = _sobject_or_404(sobject)
        body = await _json_object(request)
        values = _check_fields(sobj, body, creating=True)
        with state.session() as session:
            for spec in sobj.fields.values():
                key = values.get(spec.name)
                if spec.external_id and key is not None:
                    clash = session.exec(
                        select(sobj.table).where(getattr(sobj.table, spec.name) == key)
                    ).first()
                    if clash is not None:
                        raise _fail(
                            "DUPLICATE_VALUE",
                            f"duplicate value found: {spec.name} duplicates value on record "
                            f"with id: {clash.Id}",  # type: ignore[attr-defined]
                            spec.name,
                        )
            rid, became_won = insert_row(session, sobj, values)
        if became_won:
            won(rid)
        return JSONResponse({"id": rid, "success": True, "errors": []}, status_code=201)

    def page(version: str, locator: str, cursor: _Cursor, offset: int) -> dict[str, Any]:
        ids = cursor.ids[offset : offset + cursor.batch]
        sobj = cursor.soql.sobject
        with state.session() as session:
            records = []
            for rid in ids:
                row = session.get(sobj.table, rid)
                if row is not None:
                    records.append(render(sobj, row, cursor.soql.fields))
        end = offset + len(ids)
        done = end >= len(cursor.ids)
        body: dict[str, Any] = {"totalSize": len(cursor.ids), "done": done, "records": records}
        if not done:
            body["nextRecordsUrl"] = f"/services/data/{version}/query/{locator}-{end}"
        else:
            cursors.pop(locator, None)
        return body

    @router.get("/query", summary="SOQL query (a small subset)")
    async def query(version: str, request: Request, q: str | None = None) -> dict[str, Any]:
        _version_ok(version)
        if not q:
            raise _fail("MALFORMED_QUERY", "query parameter q is required", "q")
        soql = parse_soql(q)
        with state.session() as session:
            ids = _run_query(session, soql)
            locator = _next_id(session, "01g")
            session.commit()
        cursor = _Cursor(soql, ids, _batch_size(request))
        cursors[locator] = cursor
        return page(version, locator, cursor, 0)

    @router.get("/query/{locator_offset}", summary="Next page of a query")
    async def query_more(version: str, locator_offset: str) -> dict[str, Any]:
        _version_ok(version)
        locator, _, offset = locator_offset.rpartition("-")
        cursor = cursors.get(locator)
        if cursor is None or not offset.isdigit():
            raise _fail("INVALID_QUERY_LOCATOR", "invalid query locator")
        return page(version, locator, cursor, int(offset))

    return create_twin_app(
        state=state,
        title="CRM twin (Salesforce REST)",
        description=__doc__ or "",
        router=router,
        error_body=error_body,
    )


# --------------------------------------------------------------------------- seed


def _state_of(app_or_state: FastAPI | TwinState) -> TwinState:
    if isinstance(app_or_state, TwinState):
        return app_or_state
    state: TwinState = app_or_state.state.twin
    return state


_BILLING_TYPE = {
    "time_and_materials": "Time and Materials",
    "fixed_fee": "Fixed Fee",
    "milestone": "Milestone",
}


def load_firm(app_or_state: FastAPI | TwinState, firm: Firm) -> None:
    """Write the firm's customers (Accounts) and open deals (Opportunities + line items).

    Idempotent: records already there (by Id) are left as they are, so restarting the stack
    never reopens a deal that was won or loses a written-back enterprise ID."""
    state = _state_of(app_or_state)
    now = _now()
    with state.session() as session:
        for c in firm.customers:
            if session.get(CrmAccount, c.id) is not None:
                continue
            session.merge(
                CrmAccount(
                    Id=c.id,
                    Name=c.name,
                    CurrencyIsoCode=c.currency,
                    BillingCountry=c.billing_country,
                    Industry=c.industry,
                    Type="Customer - Public Sector" if c.public_sector else "Customer",
                    Credit_Hold__c=c.credit_hold,
                    CreatedDate=now,
                    LastModifiedDate=now,
                    SystemModstamp=now,
                )
            )
        for o in firm.opportunities:
            if session.get(CrmOpportunity, o.id) is not None:
                continue
            opp = CrmOpportunity(
                Id=o.id,
                Name=o.name,
                AccountId=o.account_id,
                Amount=_money(o.amount),
                CloseDate=o.close_date,
                StageName=o.stage,
                CurrencyIsoCode=o.currency,
                HasOpportunityLineItem=bool(o.lines),
                Practice__c=o.practice,
                Cost_Center__c=o.cost_center,
                Rate_Card__c=o.rate_card_id,
                Delivery_Manager__c=o.delivery_manager,
                CreatedDate=now,
                LastModifiedDate=now,
                SystemModstamp=now,
            )
            _apply_stage(opp, o.stage, probability_given=True)
            opp.Probability = str(o.probability)
            session.merge(opp)
            for n, line in enumerate(o.lines, start=1):
                session.merge(
                    CrmOpportunityLineItem(
                        Id=line.id,
                        OpportunityId=o.id,
                        ProductCode=line.product_code,
                        Name=line.description,
                        Description=line.description,
                        Quantity=str(line.quantity),
                        UnitPrice=_money(line.unit_price),
                        TotalPrice=_money(line.total_price),
                        ServiceDate=line.service_date,
                        SortOrder=n,
                        CurrencyIsoCode=o.currency,
                        Billing_Type__c=_BILLING_TYPE[line.line_type],
                        Role__c=line.role,
                        CreatedDate=now,
                        LastModifiedDate=now,
                        SystemModstamp=now,
                    )
                )
        session.commit()


__all__ = [
    "CONTRACTED_STAGE",
    "ORG_ID",
    "SOBJECTS",
    "STAGES",
    "TABLES",
    "WON_EVENT",
    "create_app",
    "error_body",
    "load_firm",
    "parse_soql",
]
