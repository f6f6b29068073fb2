"""Embeddings: the embeddings surface of the request pipeline (`pipeline`).

An embeddings request is billed on its input tokens only. Its bound is the
byte length of the body sent upstream (byte-level BPE never produces more
tokens than the bytes it encodes; a token id in an array takes at least one
byte and a separator), reserved at the model's dearest input rate, with no
output. The charge is the provider's reported `prompt_tokens` at the price;
a provider that reports no usage (Together) is charged the tokens counted by
the gateway, flagged as an estimate. No fallback: another model's vectors
are not interchangeable.
"""

from __future__ import annotations

from typing import Any

import orjson

from ai_service.billing import tokens
from ai_service.errors import InvalidRequestError, UpstreamError
from ai_service.providers import REGISTRY
from ai_service.providers.base import Adapter, JsonObject, UpstreamRequest, Usage
from ai_service.schemas import parse_body
from ai_service.services import pipeline, respond
from ai_service.services.answers import Answer, Result
from ai_service.services.call import Arrival, Call, refuse
from ai_service.services.routing import Bound, Plan, Target

MAX_INPUTS = 2048  # inputs of one request (OpenAI's limit)


def validate_embeddings(body: JsonObject, provider: str = "openai") -> str:
    """Check an embeddings body for `provider`; returns the model.

    Raises `InvalidRequestError`, also for token ids where the provider takes text only.
    """
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("'model' is required: the embedding model's id.", param="model")
    inputs = body.get("input")
    if isinstance(inputs, str):
        if not inputs:
            raise InvalidRequestError("'input' must not be empty.", param="input")
        return model
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequestError(
            "'input' must be a string, an array of strings, or an array of token arrays.",
            param="input",
        )
    if len(inputs) > MAX_INPUTS:
        raise InvalidRequestError(
            f"'input' has {len(inputs)} items; at most {MAX_INPUTS} are accepted.", param="input"
        )
    if all(_token(i) for i in inputs):
        return _token_ids(model, provider)
    ids = False
    for item in inputs:
        ids = ids or isinstance(item, list)
        fine = (isinstance(item, str) and item) or (
            isinstance(item, list) and item and all(_token(t) for t in item)
        )
        if not fine:
            raise InvalidRequestError(
                "Each item of 'input' must be a non-empty string or array of token ids.",
                param="input",
            )
    return _token_ids(model, provider) if ids else model


def _token_ids(model: str, provider: str) -> str:
    """`model`, if `provider` takes token ids. Raises `InvalidRequestError`."""
    if REGISTRY[provider].token_ids:
        return model
    raise InvalidRequestError(
        f"'input' as token ids is not accepted by the {provider} provider: send text "
        "(with LangChain's OpenAIEmbeddings, set check_embedding_ctx_length=False).",
        param="input",
        code="unsupported_value",
    )


def _token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def counted_tokens(body: JsonObject, provider: str, model: str) -> int:
    """The input tokens of a (valid) body, counted by the gateway: exact for OpenAI's
    models, a safe bound for the others; token arrays count their ids."""
    inputs: Any = body["input"]
    items = [inputs] if isinstance(inputs, str) else inputs
    if items and all(_token(i) for i in items):
        return len(items)
    return sum(
        tokens.text_tokens(item, provider, model) if isinstance(item, str) else len(item)
        for item in items
    )


async def embeddings(arrival: Arrival) -> Result:
    """Serve one embeddings request. Raises `ServiceError` before any answer."""
    call = arrival.call("embeddings")
    state, provider, raw = arrival.state, arrival.provider, arrival.raw
    try:
        body = parse_body(raw)
        requested = validate_embeddings(body, provider)
    except InvalidRequestError as exc:
        raise await refuse(call, exc) from None
    await pipeline.resolve(call, provider, requested)
    resolved = call.resolved
    assert resolved is not None
    adapter = state.adapters[provider]
    stored = await pipeline.hold(call, arrival.idempotency_key, f"{provider}/embeddings", raw)
    if stored is not None:
        return Answer(stored.response, {"Idempotent-Replayed": "true"})
    try:
        request = adapter.embeddings_request(body, resolved.model)
        if request is None:  # the path's provider has none (the route checks it first)
            raise await refuse(call, InvalidRequestError("This provider serves no embeddings."))
        target = Target(provider, resolved)
        # the whole body sent bounds the input tokens; there is no output
        plan = Plan([target], 0, [Bound(len(request.body), 0, request, 0, 0, adapter)])
        call.prompt_bound = len(request.body)
        await pipeline.reserve(call, plan)
    except BaseException:
        await pipeline.release(call)
        raise

    async def attempt(
        sender: Adapter, target: Target, prepared: UpstreamRequest | None, _limit: int
    ) -> JsonObject:
        sending = prepared or sender.embeddings_request(body, target.resolved.model)
        assert sending is not None  # its provider serves embeddings: checked above
        return await state.upstream.exchange(sender, sending)

    target, data = await pipeline.dispatch(call, plan, attempt)
    return await answer(call, adapter, body, data, {"X-Served-Model": target.resolved.model})


async def answer(
    call: Call, adapter: Adapter, body: JsonObject, data: JsonObject, headers: dict[str, str]
) -> Answer:
    """Charge the embeddings the provider answered, then return them (with their cost)."""
    resolved = call.resolved
    assert resolved is not None
    if not isinstance(data.get("data"), list):
        raise await call.fail(
            UpstreamError(f"The {adapter.name} provider sent an answer without embeddings.")
        )
    latency = call.elapsed_ms()
    reported = adapter.embeddings_usage(data)
    estimated = reported is None
    count = counted_tokens(body, call.provider, resolved.model) if reported is None else reported
    usage = Usage(input_tokens=count)
    usd, header = call.cost_fields(usage)
    data["model"] = resolved.model
    data["usage"] = {"prompt_tokens": count, "total_tokens": count, "cost": usd}
    payload = orjson.dumps(data)
    summary = orjson.dumps({"embeddings": len(data["data"]), "usage": data["usage"]}).decode()
    await respond.settle_answer(
        call, usage, payload, estimated=estimated, latency=latency, logged=summary
    )
    return Answer(payload, {**headers, "X-Request-Cost": header})
