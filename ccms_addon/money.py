"""Money is Decimal with its ISO 4217 currency. The currency's minor unit (from CLDR, via Babel)
decides how an amount is shown: 15000 KRW is "15000", 404.95 USD is "404.95", 1.250 BHD is "1.250"."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from babel.numbers import get_currency_precision


def minor_units(currency: str) -> int:
    return get_currency_precision(currency.upper())


def quantize(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_EVEN)


def format_amount(amount: Decimal, currency: str) -> str:
    """The amount as a plain decimal string with exactly the currency's minor digits."""
    return format(quantize(amount, currency), "f")
