"""Typed identifiers. Enterprise IDs are ULIDs (26 Crockford base32 characters); business
keys (tenants, record ids of the systems of record) have one canonical form each.

Minting takes its time and randomness as arguments so a workflow can mint deterministically
from `workflow.now()` and `workflow.random()`. No I/O here.

    >>> canonical_tenant("DEFAULT")
    'default'
    >>> canonical_salesforce_id("0065g0000000001")
    '0065g0000000001AAA'
    >>> canonical_salesforce_id("0065G0000000001AAA")  # 18-char ids are case-insensitive
    '0065g0000000001AAA'
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from pydantic import AfterValidator, StringConstraints, WithJsonSchema

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ULID_PATTERN = r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$"
_ULID_RE = re.compile(ULID_PATTERN)

EnterpriseId = Annotated[str, StringConstraints(pattern=ULID_PATTERN)]
"""A pssync enterprise ID: one per business entity across every system."""

ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=255)]
"""An ID in one system of record (Salesforce Id, Kantata id, NetSuite internal id, ...)."""


def mint_ulid(timestamp_ms: int, randomness: int) -> str:
    """Encode a ULID from a millisecond timestamp (48 bits) and 80 random bits."""
    if not 0 <= timestamp_ms < 1 << 48:
        raise ValueError("ULID timestamp out of range")
    if not 0 <= randomness < 1 << 80:
        raise ValueError("ULID randomness must be 80 bits")
    value = (timestamp_ms << 80) | randomness
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def is_ulid(value: str) -> bool:
    return bool(_ULID_RE.match(value))


def ulid_timestamp_ms(value: str) -> int:
    """The millisecond timestamp a ULID was minted at."""
    if not is_ulid(value):
        raise ValueError(f"not a ULID: {value!r}")
    number = 0
    for char in value[:10]:
        number = number * 32 + _CROCKFORD.index(char)
    return number


# --------------------------------------------------------------------------- business keys
#
# A business key (tenant, record id) is validated and normalised ONCE, where it enters pssync
# (the gateway, a poller), by the functions below; workflow ids (`contracts.naming`) are built
# only from their results. Each function is idempotent (`f(f(x)) == f(x)`) and raises
# `InvalidId` (a ValueError, so pydantic reports it as a field error) for anything else:
# control characters (NUL included), `/` (the workflow-id separator), other characters outside
# the system's set, or a length out of bounds.

TENANT_MAX_LENGTH = 63
RECORD_ID_MAX_LENGTH = 64

_TENANT_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62})")
_SALESFORCE_RE = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-5]{3})?")
_SALESFORCE_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_RECORD_ID_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,63})")
_WORKDAY_WID_RE = re.compile(r"[0-9A-Fa-f]{32}")
_CHARSET_HINT = "only letters, digits, '.', '_' and '-' (starting alphanumeric)"


class InvalidId(ValueError):
    """A tenant or record id that is not a well-formed key of its system."""

    def __init__(self, kind: str, value: object, reason: str) -> None:
        shown = value if not isinstance(value, str) or len(value) <= 80 else value[:77] + "..."
        super().__init__(f"invalid {kind} {shown!r}: {reason}")
        self.kind = kind
        self.reason = reason


def _checked(kind: str, value: object, max_length: int) -> str:
    if not isinstance(value, str):
        raise InvalidId(kind, value, "must be a string")
    if not value:
        raise InvalidId(kind, value, "must not be empty")
    if len(value) > max_length:
        raise InvalidId(kind, value, f"is longer than {max_length} characters")
    if any(not ch.isprintable() or ch.isspace() for ch in value):
        raise InvalidId(kind, value, "contains control or whitespace characters")
    return value


def canonical_tenant(value: str) -> str:
    """A tenant (org, account, instance) name, case-folded: `DEFAULT` and `default` are one
    tenant. ASCII letters, digits, `.`, `_`, `-`; starts with a letter or digit; <= 63."""
    folded = _checked("tenant", value, TENANT_MAX_LENGTH).casefold()
    if not _TENANT_RE.fullmatch(folded):
        raise InvalidId("tenant", value, _CHARSET_HINT)
    return folded


def salesforce_id_18(id15: str) -> str:
    """The 18-character form of a 15-character Salesforce id: one suffix character per
    5-character chunk whose bits say which characters of the chunk are upper case."""
    suffix = ""
    for start in (0, 5, 10):
        chunk = id15[start : start + 5]
        flags = sum(1 << i for i, ch in enumerate(chunk) if "A" <= ch <= "Z")
        suffix += _SALESFORCE_SUFFIX[flags]
    return id15 + suffix


def canonical_salesforce_id(value: str) -> str:
    """A Salesforce record id in its 18-character form.

    A 15-character id (case-sensitive) gets its checksum suffix; an 18-character id is
    case-insensitive, so the case of its first 15 characters is restored from the suffix
    (which is what lets `0065G...` typed in any case name one record) — a suffix that flags a
    digit as upper case is not a Salesforce id. 15 and 18 character forms of one record, in
    any letter case for the 18, give the same result.
    """
    text = _checked("Salesforce id", value, 18)
    if not _SALESFORCE_RE.fullmatch(text):
        raise InvalidId("Salesforce id", value, "must be 15 or 18 letters and digits")
    if len(text) == 15:
        return salesforce_id_18(text)
    restored = []
    for chunk_no, flag_char in enumerate(text[15:].upper()):
        flags = _SALESFORCE_SUFFIX.index(flag_char)
        chunk = text[chunk_no * 5 : chunk_no * 5 + 5]
        for i, ch in enumerate(chunk):
            upper = bool(flags & (1 << i))
            if upper and not ch.isalpha():
                raise InvalidId("Salesforce id", value, "the checksum suffix does not match")
            restored.append(ch.upper() if upper else ch.lower())
    return salesforce_id_18("".join(restored))


def canonical_record_id(value: str, *, kind: str = "record id") -> str:
    """A record id of a system whose ids are opaque tokens (Kantata's numeric ids, NetSuite
    internal ids, Workday reference ids like `W-00042`): letters, digits, `.`, `_`, `-`,
    starting alphanumeric, <= 64 characters. Kept as given (no case change)."""
    text = _checked(kind, value, RECORD_ID_MAX_LENGTH)
    if not _RECORD_ID_RE.fullmatch(text):
        raise InvalidId(
            kind, value, "only letters, digits, '.', '_' and '-' (starting alphanumeric)"
        )
    return text


def canonical_psa_id(value: str) -> str:
    """A PSA (Kantata) id: a workspace, time entry, expense, assignment, change order..."""
    return canonical_record_id(value, kind="PSA id")


def canonical_hcm_id(value: str) -> str:
    """An HCM (Workday) worker id: a WID (32 hex characters, case-insensitive, kept lower
    case) or a reference id such as `W-00042` (kept as given)."""
    text = canonical_record_id(value, kind="HCM id")
    return text.lower() if _WORKDAY_WID_RE.fullmatch(text) else text


def canonical_date_key(value: str) -> str:
    """An effective date as it appears in a key: ISO `YYYY-MM-DD`, a real calendar date."""
    text = _checked("date", value, 10)
    try:
        parsed = date.fromisoformat(text)
    except ValueError:
        raise InvalidId("date", value, "must be an ISO date YYYY-MM-DD") from None
    if parsed.isoformat() != text:
        raise InvalidId("date", value, "must be an ISO date YYYY-MM-DD")
    return text


_RECORD_ID_SCHEMA = WithJsonSchema(
    {
        "type": "string",
        "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        "minLength": 1,
        "maxLength": RECORD_ID_MAX_LENGTH,
    }
)

Tenant = Annotated[
    str,
    AfterValidator(canonical_tenant),
    WithJsonSchema({"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"}),
]
"""A tenant name, validated and case-folded (`canonical_tenant`)."""
SalesforceId = Annotated[
    str,
    AfterValidator(canonical_salesforce_id),
    WithJsonSchema({"type": "string", "pattern": r"^[A-Za-z0-9]{15}([A-Za-z0-5]{3})?$"}),
]
"""A Salesforce record id, validated, in its 18-character form."""
PsaId = Annotated[str, AfterValidator(canonical_psa_id), _RECORD_ID_SCHEMA]
"""A PSA record id, validated (`canonical_psa_id`)."""
HcmId = Annotated[str, AfterValidator(canonical_hcm_id), _RECORD_ID_SCHEMA]
"""An HCM worker id, validated (`canonical_hcm_id`)."""
