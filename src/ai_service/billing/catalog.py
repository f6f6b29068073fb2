"""The model catalog: prices from the price data, operators' overrides, aliases, limits.

Where a requested model's price comes from, first found wins:

1. an alias (`api_model_aliases`, then the packaged `catalog/models.yaml`) maps
   the requested id to the id sent upstream;
2. an operator's override in `api_models` for that id (a flat price);
3. the price data (genai-prices: the latest file loaded into `api_price_data`
   by `ai-service models sync`, else the snapshot bundled with the package),
   whose match rules resolve dated and undated ids to their priced model;
4. else the id is unknown, and the unknown-model policy decides: `refuse` (400
   before anything is reserved or sent) or `dearest` (priced at the dearest of
   each of the provider's rates, flagged as `default_price`).

`catalog/models.yaml` says what the price data does not: each model's maximum
output tokens (the default output limit), whether it takes
`max_completion_tokens`, and the gateway's default aliases.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from importlib import metadata, resources
from typing import Any

import yaml
from genai_prices.types import ModelInfo, Provider
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ai_service.allowlist import AllowList
from ai_service.billing import pricedata
from ai_service.billing.pricing import ANY_TIER, Price, Rate, utcnow
from ai_service.errors import InvalidRequestError
from ai_service.storage.models import ApiModel, ApiModelAlias, ApiPriceData

log = logging.getLogger("ai_service.catalog")

POLICIES = ("refuse", "dearest")
DEFAULT_MAX_OUTPUT = 4096


@dataclass(frozen=True, slots=True)
class Resolved:
    """A requested model resolved to the upstream id and the price that applies.

    `default_price` flags a price the catalog did not have for this model (the
    provider's dearest); `refused` marks an unknown model that the `refuse`
    policy turns away before anything is reserved.
    """

    requested: str
    model: str
    price: Price
    default_price: bool
    refused: bool = False


@dataclass(frozen=True, slots=True)
class Listed:
    """What the packaged catalog says about one model."""

    max_output: int
    reasoning: bool = False
    context_window: int = 0


@dataclass(slots=True)
class Spec:
    """The packaged catalog's entry for one provider."""

    genai: str
    aliases: dict[str, str] = field(default_factory=dict)
    max_output: int = DEFAULT_MAX_OUTPUT
    reasoning: tuple[str, ...] = ()
    models: dict[str, Listed] = field(default_factory=dict)

    def listed(self, *ids: str) -> Listed | None:
        for model_id in ids:
            found = self.models.get(model_id)
            if found is not None:
                return found
        return None


def packaged() -> dict[str, Spec]:
    """The packaged `catalog/models.yaml`."""
    text = resources.files("ai_service.catalog").joinpath("models.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    specs: dict[str, Spec] = {}
    for name, entry in data["providers"].items():
        spec = Spec(
            genai=str(entry["genai_prices"]),
            aliases={str(k): str(v) for k, v in (entry.get("aliases") or {}).items()},
            max_output=int(entry.get("max_output", DEFAULT_MAX_OUTPUT)),
            reasoning=tuple(str(p) for p in entry.get("reasoning") or ()),
        )
        for model in entry.get("models") or ():
            spec.models[str(model["id"])] = Listed(
                max_output=int(model.get("max_output", spec.max_output)),
                reasoning=bool(model.get("reasoning", False)),
                context_window=int(model.get("context_window", 0)),
            )
        specs[name] = spec
    return specs


SPECS = packaged()


def genai_version() -> str:
    try:
        return f"genai-prices {metadata.version('genai-prices')}"
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "genai-prices"


class Catalog:
    """An in-memory snapshot: price data, overrides, aliases and the unknown-model policy."""

    def __init__(
        self,
        providers: list[Provider] | None = None,
        overrides: list[ApiModel] | None = None,
        aliases: list[ApiModelAlias] | None = None,
        *,
        policy: str = "refuse",
        source: str | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown-model policy must be one of {POLICIES}, not {policy!r}")
        self.policy = policy
        self.source = source or genai_version()
        data = pricedata.bundled() if providers is None else providers
        self.data: dict[str, Provider] = {}
        for name, spec in SPECS.items():
            found = next((p for p in data if p.id == spec.genai), None)
            if found is not None:
                self.data[name] = found
        self.aliases: dict[str, dict[str, str]] = {n: dict(s.aliases) for n, s in SPECS.items()}
        for alias in aliases or ():
            self.aliases.setdefault(alias.provider, {})[alias.alias] = alias.target
        self.overrides: dict[str, dict[str, Price]] = {}
        for row in overrides or ():
            self.overrides.setdefault(row.provider, {})[row.model_id] = price_of(row)
        self._priced: dict[tuple[str, str], Price] = {}
        self._resolved: dict[tuple[str, str], Resolved] = {}
        self._dearest: dict[str, Price] = {}
        self._listed: dict[str, dict[str, Listed]] = {}

    # resolution

    def resolve(self, provider: str, requested: str) -> Resolved:
        key = (provider, requested)
        found = self._resolved.get(key)
        if found is None:
            found = self._resolve(provider, requested)
            if len(self._resolved) < 10_000:
                self._resolved[key] = found
        return found

    def _resolve(self, provider: str, requested: str) -> Resolved:
        model = self.aliases.get(provider, {}).get(requested, requested)
        price = self.price(provider, model)
        if price is not None:
            return Resolved(requested, model, price, False)
        dearest = self.dearest(provider)
        return Resolved(requested, model, dearest, True, refused=self.policy == "refuse")

    def price(self, provider: str, model: str) -> Price | None:
        """The price of an upstream model id, or None when neither overrides nor data know it."""
        override = self.overrides.get(provider, {}).get(model)
        if override is not None:
            return override
        info = self.info(provider, model)
        if info is None:
            return None
        key = (provider, info.id)
        price = self._priced.get(key)
        if price is None:
            price = self._from_data(provider, model, info)
            self._priced[key] = price
        return price

    def info(self, provider: str, model: str) -> ModelInfo | None:
        data = self.data.get(provider)
        return None if data is None else data.find_model(model)

    def _from_data(self, provider: str, model: str, info: ModelInfo) -> Price:
        spec = SPECS.get(provider) or Spec(genai=provider)
        schedule = pricedata.GenaiSchedule(info)
        base = schedule.applied(utcnow(), None).rates
        listed = spec.listed(model, info.id) or self._listed_as(spec, provider, info)
        return Price(
            input=base.input.base,
            output=base.output.base,
            cached_input=None if base.cache_read is None else base.cache_read.base,
            cache_write=None if base.cache_write is None else base.cache_write.base,
            cache_write_1h=None if base.cache_write_1h is None else base.cache_write_1h.base,
            context_window=info.context_window or (listed.context_window if listed else 0),
            max_output=listed.max_output if listed else spec.max_output,
            reasoning=(listed.reasoning if listed else False) or model.startswith(spec.reasoning),
            schedule=schedule,
            source=self.source,
            priced_as=info.id,
            deprecated=bool(info.deprecated),
        )

    def _listed_as(self, spec: Spec, provider: str, info: ModelInfo) -> Listed | None:
        """The packaged entry of a listed id that the data prices as the same model."""
        by_data = self._listed.get(provider)
        if by_data is None:
            by_data = {}
            for model_id, listed in spec.models.items():
                other = self.info(provider, model_id)
                if other is not None:
                    by_data.setdefault(other.id, listed)
            self._listed[provider] = by_data
        return by_data.get(info.id)

    def dearest(self, provider: str) -> Price:
        """The provider's dearest rate of each kind, flagged: what an unknown model is charged."""
        price = self._dearest.get(provider)
        if price is None:
            price = self._dearest_of(provider)
            self._dearest[provider] = price
        return price

    def _dearest_of(self, provider: str) -> Price:
        spec = SPECS.get(provider) or Spec(genai=provider)
        names = ("input", "output", "cache_read", "cache_write", "cache_write_1h")
        top = dict.fromkeys(names, 0)
        prices = self.all_prices(provider)
        now = utcnow()
        for price in prices:
            for rates in price.plan().possible(now, ANY_TIER):
                for name in names:
                    rate: Rate | None = getattr(rates, name)
                    if rate is not None:
                        top[name] = max(top[name], rate.dearest)
        top["cache_read"] = max(top["cache_read"], top["input"])
        top["cache_write"] = max(top["cache_write"], top["input"])
        top["cache_write_1h"] = max(top["cache_write_1h"], top["cache_write"])
        window = max([p.context_window for p in prices] or [0])
        return Price(
            input=top["input"],
            output=top["output"],
            cached_input=top["cache_read"],
            cache_write=top["cache_write"],
            cache_write_1h=top["cache_write_1h"],
            context_window=window,
            max_output=spec.max_output,
            source=f"{self.source}, dearest of {provider}",
            flagged=True,
        )

    def all_prices(self, provider: str) -> list[Price]:
        """The price of every model of the provider in the data, and every override."""
        prices: list[Price] = []
        for info in self.data[provider].models if provider in self.data else ():
            key = (provider, info.id)
            price = self._priced.get(key)
            if price is None:
                price = self._from_data(provider, info.id, info)
                self._priced[key] = price
            prices.append(price)
        return prices + list(self.overrides.get(provider, {}).values())

    # listing

    def models(self, provider: str) -> dict[str, Price]:
        """The gateway's models of a provider (packaged list and overrides), by id, priced."""
        out: dict[str, Price] = {}
        spec = SPECS.get(provider)
        ids = list(spec.models) if spec else []
        ids += [m for m in self.overrides.get(provider, {}) if m not in ids]
        for model_id in ids:
            price = self.price(provider, model_id)
            if price is not None:
                out[model_id] = price
        return out

    def retired(self, provider: str) -> list[str]:
        """Packaged ids that the price data no longer prices (and no override does)."""
        spec = SPECS.get(provider)
        return [m for m in (spec.models if spec else ()) if self.price(provider, m) is None]

    def refusal(
        self, provider: str, resolved: Resolved, allowed: AllowList | None = None
    ) -> InvalidRequestError:
        """The 400 an unknown model gets under the `refuse` policy, naming the priced models
        (those of them `allowed`, when the key has an allow-list)."""
        models = self.models(provider)
        if allowed is not None:
            models = {m: p for m, p in models.items() if allowed.allows(provider, m)}
        priced = ", ".join(models) or "none"
        return InvalidRequestError(
            f"The model '{resolved.requested}' is not priced for the {provider} provider, "
            f"so the gateway cannot bill it. Priced models: {priced}. "
            f"GET /ai/{provider}/models lists them.",
            param="model",
            code="model_not_found",
        )


def price_of(row: ApiModel) -> Price:
    """An operator's override: a flat price."""
    return Price(
        input=row.input_price,
        output=row.output_price,
        cached_input=row.cached_input_price,
        cache_write=row.cache_write_price,
        cache_write_1h=row.cache_write_1h_price,
        context_window=row.context_window,
        max_output=row.max_output_tokens or DEFAULT_MAX_OUTPUT,
        reasoning=row.reasoning,
        source="override",
        priced_as=row.model_id,
    )


# the last price data file parsed, by (id, source, loaded_at, length): parsed once per process
_parsed: tuple[tuple[Any, ...], list[Provider], str] | None = None


async def price_data(session: AsyncSession) -> tuple[list[Provider] | None, str | None]:
    """The latest loaded price data file's providers and source label (None: the bundled)."""
    global _parsed
    latest = (
        await session.execute(
            select(
                ApiPriceData.id,
                ApiPriceData.source,
                ApiPriceData.loaded_at,
                func.length(ApiPriceData.content),
            )
            .order_by(ApiPriceData.id.desc())
            .limit(1)
        )
    ).first()
    if latest is None:
        return None, None
    key = tuple(latest)
    if _parsed is not None and _parsed[0] == key:
        return _parsed[1], _parsed[2]
    row_id, source, loaded_at, _ = key
    content = await session.scalar(select(ApiPriceData.content).where(ApiPriceData.id == row_id))
    try:
        providers = pricedata.parse(content or "")
    except ValueError:
        log.exception("price data file %s is unusable; the bundled data applies", row_id)
        return None, None
    when = loaded_at.date().isoformat() if isinstance(loaded_at, dt.datetime) else ""
    label = f"price data #{row_id} ({source}, loaded {when})"
    _parsed = (key, providers, label)
    return providers, label


async def load(session: AsyncSession, policy: str = "refuse") -> Catalog:
    rows = (await session.scalars(select(ApiModel))).all()
    aliases = (await session.scalars(select(ApiModelAlias))).all()
    providers, source = await price_data(session)
    return Catalog(providers, list(rows), list(aliases), policy=policy, source=source)


async def sync(session: AsyncSession, content: str, source: str) -> dict[str, Any]:
    """Store a newer price data file; every instance prices new requests with it.

    Raises `ValueError` when the file is not a genai-prices provider array or
    lacks one of the gateway's providers.
    """
    providers = pricedata.parse(content)
    ids = {p.id for p in providers}
    missing = sorted(s.genai for s in SPECS.values() if s.genai not in ids)
    if missing:
        raise ValueError(f"the price data file lacks the providers: {', '.join(missing)}")
    inexact = {
        p.id: pricedata.inexact_prices(p)
        for p in providers
        if p.id in {s.genai for s in SPECS.values()}
    }
    row = ApiPriceData(source=source[:500], content=content)
    session.add(row)
    await session.commit()
    counts = {p.id: len(p.models) for p in providers if p.id in {s.genai for s in SPECS.values()}}
    return {
        "id": row.id,
        "source": row.source,
        "models": counts,
        "rounded_up": {k: v for k, v in inexact.items() if v},
    }
