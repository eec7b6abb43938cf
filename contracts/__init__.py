"""Canonical contracts: versioned models, money, IDs, the error taxonomy, field ownership.

Depends on pydantic only; no I/O. Workflows see only these types.

    >>> from contracts import Money
    >>> Money(10, "USD") + Money("2.50", "USD")
    Money(amount=Decimal('12.50'), currency='USD')
"""

from contracts.errors import (
    AuthError,
    BusinessRuleViolation,
    ConflictError,
    ErrorInfo,
    ErrorKind,
    NotFoundError,
    OwnershipViolation,
    PssyncError,
    RateLimitedError,
    StaleVersionError,
    TransientError,
    UnmappableRecord,
)
from contracts.ids import EnterpriseId, ExternalId, is_ulid, mint_ulid
from contracts.money import CurrencyMismatchError, Money
from contracts.ownership import check_write, may_write, owner_of
from contracts.systems import System

__all__ = [
    "AuthError",
    "BusinessRuleViolation",
    "ConflictError",
    "CurrencyMismatchError",
    "EnterpriseId",
    "ErrorInfo",
    "ErrorKind",
    "ExternalId",
    "Money",
    "NotFoundError",
    "OwnershipViolation",
    "PssyncError",
    "RateLimitedError",
    "StaleVersionError",
    "System",
    "TransientError",
    "UnmappableRecord",
    "check_write",
    "is_ulid",
    "may_write",
    "mint_ulid",
    "owner_of",
]
