"""Money in integer minor units of an ISO 4217 currency."""

from __future__ import annotations

from decimal import Decimal

# ISO 4217 minor-unit digits of the currencies a fee schedule may use.
MINOR_UNIT_DIGITS = {
    "USD": 2,
    "CAD": 2,
    "EUR": 2,
    "GBP": 2,
    "CHF": 2,
    "AUD": 2,
    "NZD": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "INR": 2,
    "MXN": 2,
    "BRL": 2,
    "ZAR": 2,
    "JPY": 0,
    "KRW": 0,
    "KWD": 3,
    "BHD": 3,
}


def to_decimal(amount_minor: int, currency: str) -> Decimal:
    """The amount in major units (12345 USD cents -> Decimal("123.45"))."""
    return Decimal(amount_minor).scaleb(-MINOR_UNIT_DIGITS[currency])
