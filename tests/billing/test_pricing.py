"""The price engine: genai-prices data as exact integer schedules, and the cost rules."""

from __future__ import annotations

import datetime as dt

import pytest

from ai_service.billing import pricedata
from ai_service.billing.catalog import SPECS, Catalog
from ai_service.billing.pricing import Price, affordable_output, charge, cost, worst_case
from ai_service.providers.base import Usage
from ai_service.providers.openai_compat import parse_usage
from ai_service.storage.models import ApiModel

NOON = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)  # DeepSeek off-peak
PEAK = dt.datetime(2026, 11, 30, 7, 30, tzinfo=dt.UTC)  # DeepSeek peak (06:00-10:00 UTC)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog()


def price(catalog: Catalog, provider: str, model: str) -> Price:
    resolved = catalog.resolve(provider, model)
    assert not resolved.default_price, model
    return resolved.price


def nano(pico: int) -> int:
    return -(-pico // 1000)


def test_every_price_of_our_providers_is_exact_in_micro_usd() -> None:
    for spec in SPECS.values():
        provider = next(p for p in pricedata.bundled() if p.id == spec.genai)
        assert pricedata.inexact_prices(provider) == []


def test_an_inexact_price_is_rounded_up_never_down() -> None:
    from decimal import Decimal

    assert pricedata.to_micro(Decimal("0.0000001")) == 1
    assert pricedata.to_micro(Decimal("2.5000001")) == 2_500_001
    assert pricedata.to_micro(Decimal("2.5")) == 2_500_000


def test_a_gpt_5_4_prompt_over_272k_pays_the_long_context_rate_on_all_tokens(
    catalog: Catalog,
) -> None:
    gpt = price(catalog, "openai", "gpt-5.4")
    short = charge(Usage(input_tokens=272_000, output_tokens=1_000), gpt, NOON)
    assert short.cost == nano(272_000 * 2_500_000 + 1_000 * 15_000_000)
    assert short.tier is None
    # the tier is decided by the whole prompt, cache reads included
    long = charge(
        Usage(input_tokens=200_001, cache_read_tokens=72_000, output_tokens=1_000), gpt, NOON
    )
    assert long.cost == nano(200_001 * 5_000_000 + 72_000 * 500_000 + 1_000 * 22_500_000)
    assert long.tier == 272_000
    assert long.parts["input"] == (200_001, 5_000_000, 200_001 * 5_000_000)


def test_a_one_hour_cache_write_on_claude_is_billed_at_its_own_rate(catalog: Catalog) -> None:
    opus = price(catalog, "claude", "claude-opus-4-1-20250805")
    usage = Usage(
        input_tokens=100, cache_write_tokens=1_000, cache_write_1h_tokens=600, output_tokens=10
    )
    billed = charge(usage, opus, NOON)
    # $15 input, $18.75 5-minute write, $30 1-hour write, $75 output per 1M
    expected = 100 * 15_000_000 + 400 * 18_750_000 + 600 * 30_000_000 + 10 * 75_000_000
    assert billed.pico == expected
    assert billed.parts["cache_write_1h"] == (600, 30_000_000, 600 * 30_000_000)


def test_the_service_tier_that_served_the_request_sets_the_openai_price(
    catalog: Catalog,
) -> None:
    gpt = price(catalog, "openai", "gpt-5.4")
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    standard = cost(Usage(input_tokens=1_000, output_tokens=1_000, service_tier="default"), gpt)
    assert standard == nano(1_000 * 2_500_000 + 1_000 * 15_000_000)
    usage.service_tier = "priority"
    priority = charge(usage, gpt, NOON)
    assert priority.cost == nano(1_000 * 5_000_000 + 1_000 * 30_000_000)
    assert priority.applied.service_tier == "priority"
    usage.service_tier = "flex"
    assert cost(usage, gpt) == nano(1_000 * 1_250_000 + 1_000 * 7_500_000)


def test_deepseek_off_peak_hours_are_billed_at_the_off_peak_rate(catalog: Catalog) -> None:
    pro = price(catalog, "deepseek", "deepseek-v4-pro")
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    off_peak = charge(usage, pro, NOON)
    peak = charge(usage, pro, PEAK)
    assert off_peak.cost == 660_000_000 + 1_980_000_000
    assert peak.cost == 1_320_000_000 + 3_960_000_000
    assert peak.applied.window == "06:00-10:00 UTC"
    assert off_peak.applied.window is None
    # a reservation covers the dearest hour, whatever the hour now
    assert worst_case(1_000_000, 1_000_000, pro) == peak.cost


def test_the_worst_case_covers_the_long_context_tier_and_the_service_tier_asked_for(
    catalog: Catalog,
) -> None:
    gpt = price(catalog, "openai", "gpt-5.4")
    # no tier asked: the standard rates; priority asked: the priority rates
    assert worst_case(1_000, 1_000, gpt) == nano(1_000 * 2_500_000 + 1_000 * 15_000_000)
    assert worst_case(1_000, 1_000, gpt, "priority") == nano(1_000 * 5_000_000 + 1_000 * 30_000_000)
    for tier in (None, "default", "priority", "flex"):
        usage = Usage(input_tokens=300_000, output_tokens=2_000, service_tier=tier)
        assert cost(usage, gpt) <= worst_case(300_000, 2_000, gpt, tier)
    astra = price(catalog, "openai", "gpt-6-astra")
    usage = Usage(input_tokens=1, cache_write_tokens=299_999, output_tokens=10)
    usage.service_tier = "priority"
    assert cost(usage, astra) <= worst_case(300_000, 10, astra, "priority")


def test_an_undated_alias_is_priced_as_its_dated_model(catalog: Catalog) -> None:
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    dated = price(catalog, "claude", "claude-opus-4-1-20250805")
    undated = price(catalog, "claude", "claude-opus-4-1")
    assert (
        cost(usage, undated) == cost(usage, dated) == nano(1_000 * 15_000_000 + 1_000 * 75_000_000)
    )
    assert undated.priced_as == dated.priced_as == "claude-opus-4-1"
    # what the packaged catalog says of the dated id applies to its undated alias
    assert undated.max_output == dated.max_output == 32_000


def test_openai_cache_writes_are_read_and_billed_at_the_cache_write_rate(
    catalog: Catalog,
) -> None:
    usage = parse_usage(
        {
            "prompt_tokens": 10_000,
            "completion_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 2_000, "cache_write_tokens": 5_000},
        },
        "default",
    )
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        3_000,
        2_000,
        5_000,
    )
    assert usage.service_tier == "default"
    astra = price(catalog, "openai", "gpt-6-astra")
    billed = charge(usage, astra, NOON)
    assert (
        billed.pico == 3_000 * 10_000_000 + 2_000 * 1_000_000 + 5_000 * 12_500_000 + 10 * 50_000_000
    )


def test_an_unknown_model_is_refused_or_charged_the_providers_dearest_rates() -> None:
    refusing = Catalog()
    resolved = refusing.resolve("openai", "gpt-9-ultra")
    assert resolved.refused and resolved.default_price
    error = refusing.refusal("openai", resolved)
    assert (error.status, error.error_code, error.param) == (400, "model_not_found", "model")
    assert "gpt-5.4" in error.message

    charging = Catalog(policy="dearest")
    resolved = charging.resolve("openai", "gpt-9-ultra")
    assert not resolved.refused and resolved.default_price and resolved.price.flagged
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    unknown = cost(usage, resolved.price)
    known = charging.all_prices("openai")
    assert len(known) > 100
    for each in known:
        for tier in (None, "priority", "flex"):
            usage.service_tier = tier
            assert cost(usage, each) <= unknown, each.priced_as


def test_an_override_wins_over_the_price_data() -> None:
    row = ApiModel(
        provider="openai",
        model_id="gpt-5.4-mini",
        input_price=1_000_000,
        output_price=2_000_000,
        context_window=0,
        max_output_tokens=1_000,
        reasoning=True,
    )
    catalog = Catalog(overrides=[row])
    resolved = catalog.resolve("openai", "gpt-5.4-mini")
    assert resolved.price.source == "override"
    assert cost(Usage(input_tokens=1_000, output_tokens=1_000), resolved.price) == 3_000_000


def test_a_price_with_an_effective_date_applies_from_that_date_only(catalog: Catalog) -> None:
    pro = price(catalog, "deepseek", "deepseek-v4-pro")
    usage = Usage(input_tokens=1_000_000)
    before = charge(usage, pro, dt.datetime(2026, 8, 16, 12, tzinfo=dt.UTC))
    after = charge(usage, pro, dt.datetime(2026, 8, 17, 12, tzinfo=dt.UTC))
    assert (before.cost, after.cost) == (435_000_000, 660_000_000)
    assert (before.applied.price_date, after.applied.price_date) == (None, "2026-08-17")


def test_the_cost_is_rounded_up_once_per_request() -> None:
    flat = Price(input=1, output=1)
    assert cost(Usage(input_tokens=1, output_tokens=1), flat) == 1
    assert cost(Usage(input_tokens=1_000, output_tokens=1), flat) == 2


# -- server tool uses ------------------------------------------------------------------------

SEARCH = {"web_search": 10_000_000_000}  # $10 per 1,000 searches, in pico-USD a search


def test_server_tool_uses_are_billed_their_per_use_price_with_the_tokens() -> None:
    flat = Price(input=3_000_000, output=15_000_000)
    usage = Usage(
        input_tokens=6_039, output_tokens=931, tool_uses=(("web_fetch", 2), ("web_search", 3))
    )
    billed = charge(usage, flat, NOON, SEARCH)
    tokens = 6_039 * 3_000_000 + 931 * 15_000_000
    assert billed.pico == tokens + 3 * 10_000_000_000  # a fetch has no price: free
    assert billed.cost == nano(billed.pico)
    assert billed.uses == {
        "web_fetch": (2, 0, 0),
        "web_search": (3, 10_000_000_000, 30_000_000_000),
    }
    detail = billed.detail(flat)
    assert detail["uses"]["web_search"] == {
        "uses": 3,
        "price": 10_000_000_000,
        "cost_pico": 30_000_000_000,
    }
    assert detail["cost_nano"] == billed.cost


def test_without_server_tool_uses_the_charge_and_its_detail_are_unchanged() -> None:
    flat = Price(input=3_000_000, output=15_000_000)
    billed = charge(Usage(input_tokens=10, output_tokens=5), flat, NOON, SEARCH)
    assert billed.uses is None
    assert "uses" not in billed.detail(flat)
    # uses without a price list (another provider) cost nothing per use
    searched = charge(Usage(input_tokens=10, tool_uses=(("web_search", 2),)), flat, NOON)
    assert searched.pico == 10 * 3_000_000


def test_the_worst_case_and_the_affordable_output_count_the_fees(catalog: Catalog) -> None:
    sonnet = price(catalog, "claude", "claude-sonnet-4-5-20250929")
    fees = 8 * 10_000_000_000  # eight searches
    assert worst_case(1_000, 100, sonnet, None, fees) == worst_case(1_000, 100, sonnet) + 80_000_000
    # the dearest input rate (a 1-hour cache write, $6 / 1M) and $15 / 1M output
    prompt_and_fees = nano(1_000 * 6_000_000 + fees)
    assert affordable_output(prompt_and_fees + 1_500_000, 1_000, sonnet, None, fees) == 100
    assert affordable_output(prompt_and_fees - 1, 1_000, sonnet, None, fees) == -1


def test_a_server_tool_loop_is_tiered_as_one_sampling_not_as_its_sum(catalog: Catalog) -> None:
    # Sonnet 4.5: 200k context window; $6 / $22.5 per 1M past 200k (with the 1M beta only)
    sonnet = price(catalog, "claude", "claude-sonnet-4-5-20250929")
    # nine samplings of 60k tokens each: 540k of input, no sampling past 200k
    loop = Usage(input_tokens=540_000, output_tokens=900, tool_uses=(("web_search", 8),))
    billed = charge(loop, sonnet, NOON, SEARCH)
    assert billed.tier is None
    assert billed.pico == 540_000 * 3_000_000 + 900 * 15_000_000 + 8 * 10_000_000_000
    # one prompt of 540k is billed the long-context rates
    assert charge(Usage(input_tokens=540_000), sonnet, NOON).tier == 200_000
