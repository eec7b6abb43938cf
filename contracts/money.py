"""Money: a `Decimal` amount with an ISO 4217 currency.

Floats are refused at the door (they cannot represent cents exactly), and arithmetic across
currencies raises `CurrencyMismatchError` instead of silently producing a meaningless number.
No I/O here.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

# Active ISO 4217 codes. Kept as data, not an enum, so adding one is a one-line change.
ISO_4217: frozenset[str] = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS
    KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
    MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD
    TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL""".split()
)

# Currencies whose minor unit is not 2 digits.
_MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
}


class CurrencyMismatchError(ValueError):
    """Two amounts in different currencies were combined."""

    def __init__(self, left: str, right: str, operation: str) -> None:
        super().__init__(f"cannot {operation} {left} and {right}: currencies differ")
        self.left = left
        self.right = right


def minor_units(currency: str) -> int:
    """Digits after the decimal point for `currency` (2 for most)."""
    return _MINOR_UNITS.get(currency, 2)


class Money(BaseModel):
    """An amount of one currency, immutable: `Money(10, "USD")`, `Money(amount=.., currency=..)`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: Decimal
    currency: str

    def __init__(self, amount: Any = None, currency: Any = None, /, **data: Any) -> None:
        if amount is not None:
            data["amount"] = amount
        if currency is not None:
            data["currency"] = currency
        super().__init__(**data)

    @field_validator("amount", mode="before")
    @classmethod
    def _no_floats(cls, value: Any) -> Any:
        if isinstance(value, float):
            raise ValueError("money amounts must not be floats; pass a Decimal, int or string")
        if isinstance(value, bool):
            raise ValueError("money amounts must be numbers")
        if isinstance(value, str):
            try:
                return Decimal(value)
            except InvalidOperation as exc:
                raise ValueError(f"not a decimal amount: {value!r}") from exc
        return value

    @field_validator("amount")
    @classmethod
    def _finite(cls, value: Decimal) -> Decimal:
        if not value.is_finite():
            raise ValueError("money amounts must be finite")
        return value

    @field_validator("currency", mode="before")
    @classmethod
    def _iso_currency(cls, value: Any) -> Any:
        if not isinstance(value, str) or value.upper() not in ISO_4217:
            raise ValueError(f"not an ISO 4217 currency code: {value!r}")
        return value.upper()

    # -- construction helpers -------------------------------------------------------------
    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> Money:
        """From an integer count of minor units (cents), as vendors like Kantata send."""
        return cls(Decimal(minor).scaleb(-minor_units(currency)), currency)

    def to_minor(self) -> int:
        """Integer minor units, rounded half-up at the currency's precision."""
        return int(self.rounded().amount.scaleb(minor_units(self.currency)))

    def rounded(self) -> Money:
        """Rounded half-up to the currency's minor unit (what a ledger stores)."""
        exp = Decimal(1).scaleb(-minor_units(self.currency))
        return Money(self.amount.quantize(exp, rounding=ROUND_HALF_UP), self.currency)

    # -- arithmetic --------------------------------------------------------------------------
    def _same(self, other: object, operation: str) -> Money:
        if not isinstance(other, Money):
            raise TypeError(f"cannot {operation} Money and {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatchError(self.currency, other.currency, operation)
        return other

    def __add__(self, other: object) -> Money:
        o = self._same(other, "add")
        return Money(self.amount + o.amount, self.currency)

    def __radd__(self, other: object) -> Money:
        # lets sum() start from int 0
        if other == 0:
            return self
        return self.__add__(other)

    def __sub__(self, other: object) -> Money:
        o = self._same(other, "subtract")
        return Money(self.amount - o.amount, self.currency)

    def __mul__(self, factor: object) -> Money:
        if isinstance(factor, float | Money | bool) or not isinstance(factor, int | Decimal):
            raise TypeError("Money can be multiplied by an int or Decimal quantity only")
        return Money(self.amount * factor, self.currency)

    __rmul__ = __mul__

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: object) -> bool:
        return self.amount < self._same(other, "compare").amount

    def __le__(self, other: object) -> bool:
        return self.amount <= self._same(other, "compare").amount

    def __gt__(self, other: object) -> bool:
        return self.amount > self._same(other, "compare").amount

    def __ge__(self, other: object) -> bool:
        return self.amount >= self._same(other, "compare").amount

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def total(amounts: list[Money], currency: str) -> Money:
    """Sum of `amounts`, all of which must be in `currency` (an empty list is zero)."""
    result = Money.zero(currency)
    for amount in amounts:
        result = result + amount
    return result
