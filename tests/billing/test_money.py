"""Money and pricing as worked examples: exact integers, never floats."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ai_service.billing.money import format_usd, price_to_micro, usd_str, usd_to_nano
from ai_service.billing.pricing import Price, affordable_output, cost, worst_case
from ai_service.providers.base import Usage


def test_usd_parses_exactly_to_nano() -> None:
    assert usd_to_nano("10") == 10_000_000_000
    assert usd_to_nano("0.000000001") == 1
    assert usd_to_nano(Decimal("12.345678901")) == 12_345_678_901
    with pytest.raises(ValueError, match="precision"):
        usd_to_nano("0.0000000001")
    with pytest.raises(TypeError):
        usd_to_nano(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decimal"):
        usd_to_nano("ten")


@pytest.mark.parametrize(
    "text",
    ["1e3", "1E3", "1_000", "+1", " 1", "1 ", "0x10", "Infinity", "NaN", "\u0661", "1e30", ""],
)
def test_money_is_only_a_plain_decimal_string(text: str) -> None:
    # Decimal() reads all of these; an amount typed by an operator must be plain digits
    with pytest.raises(ValueError, match="decimal"):
        usd_to_nano(text)
    with pytest.raises(ValueError, match="decimal"):
        price_to_micro(text)


def test_plain_decimal_strings_are_money() -> None:
    assert usd_to_nano("1000") == 1_000_000_000_000
    assert usd_to_nano("-2.5") == -2_500_000_000
    assert usd_to_nano(".5") == usd_to_nano("0.5") == usd_to_nano("0.50") == 500_000_000
    assert price_to_micro("3.") == 3_000_000


def test_amounts_and_prices_beyond_their_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="large"):
        usd_to_nano("9" * 30)
    assert price_to_micro("1000000") == 1_000_000_000_000  # $1M per 1M tokens: the ceiling
    with pytest.raises(ValueError, match="large"):
        price_to_micro("1000000.000001")
    with pytest.raises(ValueError, match="large"):
        price_to_micro("1" + "0" * 30)


def test_prices_parse_to_micro_usd_per_million() -> None:
    assert price_to_micro("0.15") == 150_000
    assert price_to_micro("0.005") == 5_000
    assert price_to_micro("15") == 15_000_000
    with pytest.raises(ValueError, match="negative"):
        price_to_micro("-1")


def test_display() -> None:
    assert usd_str(1_500_000_000) == "1.5"
    assert usd_str(0) == "0.0"
    assert usd_str(1) == "0.000000001"
    assert format_usd(1_999_999_999, 2) == "$1.99"


def test_cost_worked_example() -> None:
    # gpt-5.4-mini: $0.75 in, $0.075 cached, $4.50 out per 1M tokens
    price = Price(input=750_000, output=4_500_000, cached_input=75_000)
    usage = Usage(input_tokens=1_200, cache_read_tokens=800, output_tokens=300)
    # 1200*0.75 + 800*0.075 + 300*4.5 = 900 + 60 + 1350 = 2310 micro-USD... per 1M -> pico
    # pico = 1200*750000 + 800*75000 + 300*4500000 = 900M + 60M + 1350M = 2_310_000_000 pico
    assert cost(usage, price) == 2_310_000  # nano-USD = $0.00231


def test_cost_rounds_up_once_per_request() -> None:
    price = Price(input=1, output=1)  # 1 pico-USD per token
    assert cost(Usage(input_tokens=1), price) == 1
    assert cost(Usage(input_tokens=1000), price) == 1
    assert cost(Usage(input_tokens=1001), price) == 2
    assert cost(Usage(), price) == 0


def test_cache_writes_use_their_own_price() -> None:
    price = Price(input=3_000_000, output=15_000_000, cached_input=300_000, cache_write=3_750_000)
    usage = Usage(input_tokens=10, cache_read_tokens=100, cache_write_tokens=1000, output_tokens=5)
    pico = 10 * 3_000_000 + 100 * 300_000 + 1000 * 3_750_000 + 5 * 15_000_000
    assert cost(usage, price) == pico // 1000


def test_worst_case_and_affordable_output_agree() -> None:
    price = Price(input=750_000, output=4_500_000, cached_input=75_000)
    reserve = worst_case(100, 1000, price)
    assert reserve == (100 * 750_000 + 1000 * 4_500_000) // 1000
    assert affordable_output(reserve, 100, price) == 1000
    # 5 nano-USD less is 5000 pico-USD: not enough for the 1000th output token (4500 pico)
    assert affordable_output(reserve - 5, 100, price) == 999
    assert worst_case(100, 999, price) <= reserve - 5 < worst_case(100, 1000, price)
    assert affordable_output(10, 100, price) == -1
