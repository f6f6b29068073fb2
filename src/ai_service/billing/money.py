"""Exact money: integer nano-USD balances, integer micro-USD-per-1M prices.

1 USD = 1_000_000_000 nano-USD. A price of "0.15" USD per 1M tokens is stored
as 150_000 micro-USD per 1M tokens, which is also 150_000 pico-USD per token.
Floats are refused everywhere; `Decimal` appears only at the edges (parsing
what an operator typed, formatting for display).
"""

from __future__ import annotations

import re
from decimal import ROUND_DOWN, Decimal, InvalidOperation

NANO_PER_USD = 1_000_000_000
MICRO_PER_USD = 1_000_000
PICO_PER_NANO = 1_000

# what an operator may type: digits with an optional sign and decimal point, nothing
# else (no exponent, no `_` separators, no spaces, no other scripts' digits)
PLAIN_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
MAX_NANO = 2**63 - 1  # balances and costs are 64-bit columns
MAX_PRICE_USD = 1_000_000  # per 1M tokens: $1 a token, far above any model's price
MAX_PRICE_MICRO = MAX_PRICE_USD * MICRO_PER_USD


def _decimal(value: str | int | Decimal) -> Decimal:
    """An exact amount from a plain decimal string (or an int or Decimal). Raises `ValueError`."""
    if isinstance(value, float):  # guard for untyped callers
        raise TypeError("money is never a float; pass a decimal string")
    if isinstance(value, str):
        if len(value) > 64 or PLAIN_DECIMAL.fullmatch(value) is None:
            raise ValueError(f"not a plain decimal amount: {value[:64]!r}")
        return Decimal(value)
    try:
        result = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal amount: {value!r}") from exc
    if not result.is_finite():
        raise ValueError(f"not a finite decimal amount: {value!r}")
    return result


def usd_to_nano(value: str | int | Decimal) -> int:
    """Parse a USD amount exactly into nano-USD.

    Raises `ValueError` for anything but a plain decimal string (`"12.50"`; no
    exponent, no `_`), for more than 9 decimals, and beyond a 64-bit amount.
    """
    amount = _decimal(value) * NANO_PER_USD
    if amount != amount.to_integral_value():
        raise ValueError(f"{value!r} has more precision than 1e-9 USD")
    if abs(amount) > MAX_NANO:
        raise ValueError(f"{value!r} is too large an amount")
    return int(amount)


def price_to_micro(value: str | int | Decimal) -> int:
    """Parse a price in USD per 1M tokens into integer micro-USD per 1M tokens.

    Raises `ValueError` for anything but a plain decimal string, more than 6
    decimals, a negative price, or one above `MAX_PRICE_USD`.
    """
    amount = _decimal(value) * MICRO_PER_USD
    if amount != amount.to_integral_value():
        raise ValueError(f"price {value!r} has more precision than 1e-6 USD per 1M tokens")
    if amount < 0:
        raise ValueError("a price cannot be negative")
    if amount > MAX_PRICE_MICRO:
        raise ValueError(f"price {value!r} is too large (at most {MAX_PRICE_USD} USD per 1M)")
    return int(amount)


def nano_to_usd(nano: int) -> Decimal:
    """nano-USD as an exact Decimal of USD."""
    return Decimal(nano) / NANO_PER_USD


def micro_to_usd(micro: int) -> Decimal:
    return Decimal(micro) / MICRO_PER_USD


def format_usd(nano: int, places: int = 6) -> str:
    """A display string such as "$12.345678" (rounded down, never up)."""
    quant = Decimal(1).scaleb(-places)
    return f"${nano_to_usd(nano).quantize(quant, rounding=ROUND_DOWN)}"


def usd_str(nano: int) -> str:
    """The exact USD amount as a plain decimal string, for JSON ("0.00012", "3.0")."""
    sign = "-" if nano < 0 else ""
    whole, frac = divmod(abs(nano), NANO_PER_USD)
    return f"{sign}{whole}.{f'{frac:09d}'.rstrip('0') or '0'}"


def usd_float(nano: int) -> float:
    """The USD amount as the nearest float, for display fields such as `usage.cost`."""
    return nano / NANO_PER_USD


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)
