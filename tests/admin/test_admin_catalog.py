"""Admin API, the catalog: list models, set a price (it applies at once), aliases."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.admin.conftest import assert_error, chat
from tests.support.gateway import Gateway


def test_list_models_with_prices_as_decimal_strings(admin: httpx.Client) -> None:
    rows = admin.get("/models", params={"provider": "openai"}).json()["data"]
    mini = next(r for r in rows if r["model"] == "gpt-5.4-mini" and not r["alias_of"])
    assert isinstance(mini["input_per_million"], str)
    assert {r["provider"] for r in rows} == {"openai"}
    alias = next(r for r in rows if r["model"] == "gpt-4o" and r["alias_of"])
    assert alias["alias_of"] == "gpt-5.4-mini"
    everything = admin.get("/models").json()["data"]
    assert {"openai", "claude", "mistral", "llama", "deepseek"} <= {
        r["provider"] for r in everything
    }


def test_set_price_applies_to_the_next_request(admin_gateway: Gateway, admin: httpx.Client) -> None:
    key = admin_gateway.create_user("alice", "10")
    r = admin.put(
        "/models",
        json={
            "provider": "openai",
            "model": "gpt-5.4-mini",
            "input": "1000",
            "output": "2000",
            "cached_input": "100",
            "context_window": 400000,
            "max_output_tokens": 1000,
        },
    )
    assert r.status_code == 200, r.text
    assert (r.json()["input_per_million"], r.json()["output_per_million"]) == ("1000", "2000")
    assert r.json()["cached_input_per_million"] == "100"
    assert chat(admin_gateway, key).status_code == 200
    admin_gateway.wait_settled()
    (row,) = admin_gateway.requests()
    # 1000 USD per 1M input tokens = 1_000_000 nano-USD per token, 2000 = 2_000_000
    assert row.cost == row.prompt_tokens * 1_000_000 + row.completion_tokens * 2_000_000


def test_set_price_for_a_new_model_with_a_slash_in_its_id(admin: httpx.Client) -> None:
    body = {"provider": "llama", "model": "acme/Some-Model-7B", "input": "0.1", "output": "0.2"}
    assert admin.put("/models", json=body).status_code == 200
    rows = admin.get("/models", params={"provider": "llama"}).json()["data"]
    assert any(r["model"] == "acme/Some-Model-7B" for r in rows)


@pytest.mark.parametrize("bad", ["1e30", "1e3", "1_000", "1E-1", "2000000", "9" * 30])
def test_set_price_refuses_what_is_not_a_plain_decimal_or_too_large(
    admin: httpx.Client, bad: str
) -> None:
    base = {"provider": "openai", "model": "gpt-5.4-mini", "input": "1", "output": "2"}
    for field in ("input", "output", "cached_input", "cache_write", "cache_write_1h"):
        r = admin.put("/models", json={**base, field: bad})
        assert_error(r, 400, "invalid_request_error", field)
    listed = admin.get("/models", params={"provider": "openai"}).json()["data"]
    mini = next(m for m in listed if m["model"] == "gpt-5.4-mini" and not m["alias_of"])
    assert mini["input_per_million"] == "0.75"


def test_set_price_refuses_bad_input(admin: httpx.Client) -> None:
    base = {"provider": "openai", "model": "gpt-5.4-mini", "input": "1", "output": "2"}
    assert_error(
        admin.put("/models", json={**base, "input": "-1"}), 400, "invalid_request_error", "input"
    )
    assert_error(
        admin.put("/models", json={**base, "output": "0.0000001"}),
        400,
        "invalid_request_error",
        "output",
    )
    assert_error(
        admin.put("/models", json={**base, "provider": "nope"}),
        400,
        "invalid_request_error",
        "provider",
    )
    assert_error(
        admin.put("/models", json={**base, "provider": "v1"}),
        400,
        "invalid_request_error",
        "provider",
    )
    assert_error(admin.put("/models", json={**base, "model": " "}), 400, "invalid_request_error")
    assert_error(admin.put("/models", json={"provider": "openai"}), 400, "invalid_request_error")


def test_aliases_are_set_used_and_removed(admin_gateway: Gateway, admin: httpx.Client) -> None:
    key = admin_gateway.create_user("alice", "10")
    r = admin.put(
        "/aliases", json={"provider": "openai", "alias": "fast", "target": "gpt-5.4-nano"}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"provider": "openai", "model": "fast", "alias_of": "gpt-5.4-nano"}
    answer = chat(admin_gateway, key, model="fast")
    assert answer.status_code == 200 and answer.json()["model"] == "gpt-5.4-nano"
    r = admin.delete("/aliases", params={"provider": "openai", "alias": "fast"})
    assert r.status_code == 200 and r.json()["alias_of"] == "gpt-5.4-nano"
    answer = chat(admin_gateway, key, model="fast")  # now an unknown model: refused
    assert_error(answer, 400, "invalid_request_error", "model")
    assert_error(
        admin.delete("/aliases", params={"provider": "openai", "alias": "fast"}),
        404,
        "not_found_error",
    )
    assert_error(
        admin.put("/aliases", json={"provider": "openai", "alias": "x", "target": "x"}),
        400,
        "invalid_request_error",
        "target",
    )


def price_file(input_price: str, output_price: str) -> str:
    """A genai-prices data file for the five providers, pricing only gpt-5.4-mini."""
    model = {
        "id": "gpt-5.4-mini",
        "match": {"or": [{"equals": "gpt-5.4-mini"}, {"starts_with": "gpt-5.4-mini-"}]},
        "context_window": 400000,
        "prices": {"input_mtok": input_price, "output_mtok": output_price},
    }
    providers = ["openai", "anthropic", "mistral", "together", "deepseek"]
    return json.dumps(
        [
            {"id": p, "name": p, "api_pattern": p, "models": [model] if p == "openai" else []}
            for p in providers
        ]
    )


def test_loaded_price_data_prices_new_requests_and_old_rows_keep_their_price(
    admin_gateway: Gateway, admin: httpx.Client
) -> None:
    key = admin_gateway.create_user("alice", "10")
    assert chat(admin_gateway, key).status_code == 200
    admin_gateway.wait_settled()
    (old,) = admin_gateway.requests()
    old_detail = old.price_detail
    assert old_detail is not None
    assert json.loads(old_detail)["parts"]["input"]["rate"] == 750_000

    r = admin.post("/price-data", params={"source": "test"}, content=price_file("1.5", "9"))
    assert r.status_code == 200, r.text
    assert r.json()["models"]["openai"] == 1

    assert chat(admin_gateway, key).status_code == 200
    admin_gateway.wait_settled()
    first, second = sorted(admin_gateway.requests(), key=lambda row: row.id)
    assert first.price_detail == old_detail and first.cost == old.cost
    new = json.loads(second.price_detail or "{}")
    assert new["parts"]["input"]["rate"] == 1_500_000
    assert new["source"].startswith("price data #")
    expected = second.prompt_tokens * 1_500_000 + second.completion_tokens * 9_000_000
    assert second.cost == -(-expected // 1000)


def test_a_bad_price_data_file_is_refused(admin: httpx.Client) -> None:
    assert_error(admin.post("/price-data", content="not json"), 400, "invalid_request_error")
    partial = json.dumps([{"id": "openai", "name": "o", "api_pattern": "o", "models": []}])
    assert_error(admin.post("/price-data", content=partial), 400, "invalid_request_error")


def test_an_alias_is_retrieved_by_id_naming_its_model(
    admin_gateway: Gateway, admin: httpx.Client
) -> None:
    r = admin.put(
        "/aliases", json={"provider": "openai", "alias": "fast", "target": "gpt-5.4-nano"}
    )
    assert r.status_code == 200
    key = admin_gateway.create_user("alice", "10")
    r = httpx.get(f"{admin_gateway.url}/ai/openai/models/fast", headers={"X-API-Key": key})
    assert r.status_code == 200
    assert (r.json()["id"], r.json()["alias_of"]) == ("fast", "gpt-5.4-nano")
