"""Vendor-shaped record IDs for the CRM and HCM twins and the seed (pure functions, no I/O).

>>> salesforce_id("006", 1)
'0065g0000000001AAA'
>>> salesforce_id_18("0065g0000000001")
'0065g0000000001AAA'
>>> workday_id("worker", 1)[:8]
'02341de2'
"""

from __future__ import annotations

import hashlib
import re

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
SALESFORCE_ID_RE = re.compile(r"^[a-zA-Z0-9]{15}([A-Z0-5]{3})?$")


def salesforce_id_18(id15: str) -> str:
    """The case-insensitive 18-character form of a 15-character Salesforce ID.

    Salesforce appends one character per 5-character chunk whose bits say which characters of
    the chunk are upper case, so IDs survive case-insensitive tools (Excel, SOQL literals).
    """
    if len(id15) == 18:
        id15 = id15[:15]
    if len(id15) != 15:
        raise ValueError(f"not a Salesforce ID: {id15!r}")
    suffix = ""
    for start in (0, 5, 10):
        flags = sum(1 << i for i, ch in enumerate(id15[start : start + 5]) if "A" <= ch <= "Z")
        suffix += _SUFFIX[flags]
    return id15 + suffix


def is_salesforce_id(value: str) -> bool:
    """Well-formed 15- or 18-character ID (with a correct checksum when 18)."""
    if not SALESFORCE_ID_RE.match(value):
        return False
    return len(value) == 15 or salesforce_id_18(value[:15]) == value


def salesforce_id(prefix: str, number: int, pod: str = "5g") -> str:
    """An 18-character ID: 3-char key prefix (`001` Account, `006` Opportunity, `00k`
    OpportunityLineItem, `00D` organisation), 2-char pod, `0`, 9 base-62 digits, checksum."""
    if len(prefix) != 3 or len(pod) != 2:
        raise ValueError("prefix must be 3 and pod 2 characters")
    if not 0 <= number < 62**9:
        raise ValueError("number out of range")
    digits = ""
    n = number
    for _ in range(9):
        n, r = divmod(n, 62)
        digits = _BASE62[r] + digits
    return salesforce_id_18(f"{prefix}{pod}0{digits}")


def workday_id(kind: str, key: object) -> str:
    """A Workday ID (WID): 32 lower-case hex characters, stable for (kind, key)."""
    return hashlib.md5(f"{kind}:{key}".encode(), usedforsecurity=False).hexdigest()
