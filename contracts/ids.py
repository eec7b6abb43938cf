"""Typed identifiers. Enterprise IDs are ULIDs (26 Crockford base32 characters).

Minting takes its time and randomness as arguments so a workflow can mint deterministically
from `workflow.now()` and `workflow.random()`. No I/O here.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

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
