"""Settings: environment variables prefixed `AI_SERVICE_`, an optional YAML file, defaults.

Precedence: constructor arguments, then the environment, then the YAML file
named by `AI_SERVICE_CONFIG`, then the defaults below. Provider credentials are
read from the ecosystem's own variables (`OPENAI_API_KEY`, `ANTHROPIC_BASE_URL`,
...), named by the provider registry (`ai_service.providers.REGISTRY`). There is
no module-level instance: the CLI builds one and passes it on.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from ai_service.billing.money import usd_to_nano
from ai_service.pools.credentials import CredentialSpec, check_secret
from ai_service.providers import REGISTRY
from ai_service.webhooks.signing import secret_key

PLACEHOLDER_SECRETS = frozenset({"changeme", "change-me", "secret", "admin", "password"})


def _provider_fields() -> dict[str, Any]:
    """Two settings per registered provider: its key and its base URL.

    Each is read from the provider's own variable (`OPENAI_API_KEY`) or the
    prefixed one (`AI_SERVICE_OPENAI_API_KEY`), and is named by the variable in
    lower case (`openai_api_key`) in a YAML file or as a keyword argument.
    """
    fields: dict[str, Any] = {}
    for spec in REGISTRY.values():
        key, url = spec.key_variable, spec.url_variable
        key_alias = AliasChoices(key, f"AI_SERVICE_{key}")
        url_alias = AliasChoices(url, f"AI_SERVICE_{url}")
        fields[spec.key_setting] = (SecretStr | None, Field(None, validation_alias=key_alias))
        fields[spec.url_setting] = (str, Field(spec.default_url, validation_alias=url_alias))
    return fields


if TYPE_CHECKING:  # the type checker sees the fixed settings; the providers' are generated
    ProviderSettings = BaseSettings
else:
    ProviderSettings = create_model(
        "ProviderSettings", __base__=BaseSettings, __module__=__name__, **_provider_fields()
    )


class Settings(ProviderSettings):
    """Every setting of the gateway; see docs/operations.md for each one."""

    model_config = SettingsConfigDict(
        env_prefix="AI_SERVICE_",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,
    )

    database_url: str = "sqlite:///ai-service.db"
    database_pool_size: int = 20
    # PostgreSQL: every ledger write is acknowledged only once durable on the primary
    # (synchronous_commit on; SQLite always runs WAL, synchronous NORMAL). Off is an opt-out:
    # a crash of the database server may then lose its last moments of commits (whole
    # transactions, so the ledger stays consistent), i.e. charges of answered requests
    billing_synchronous_commit: bool = True
    # PostgreSQL: concurrent reservations and settlements share one statement (group
    # commit); each is still acknowledged only once the statement carrying it committed
    billing_group_commit: bool = True
    # the longest a reservation waits for the ledger's next statement (group commit),
    # then 503 `database_busy` (nothing reserved); a settlement always waits its turn
    database_queue_timeout: float = Field(10.0, gt=0)
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    admin_key: SecretStr | None = None
    instance_id: str | None = None

    # request limits
    max_body_bytes: int = 8 * 1024 * 1024
    max_messages: int = 4096
    # billing
    min_output_tokens: int = 16
    message_token_allowance: int = 8
    image_token_allowance: int = 16384
    # Anthropic's web search server tool: USD per 1,000 searches (a plain decimal string),
    # charged per search on top of the tokens; genai-prices has no price for it
    anthropic_web_search_usd_per_1k: str = "10"
    # the `max_uses` given to an Anthropic server tool (web search, web fetch) sent without
    # one: the reservation covers that many uses
    anthropic_server_tool_max_uses: int = Field(5, ge=1)
    # a model id the catalog does not price: "refuse" (400 model_not_found, nothing
    # reserved or sent) or "dearest" (charged at the provider's dearest rates, flagged)
    unknown_model_policy: Literal["refuse", "dearest"] = "refuse"
    # storage of request/response payloads, per payload
    payload_max_bytes: int = 64 * 1024
    # caches
    key_cache_seconds: float = 5.0
    catalog_refresh_seconds: float = 10.0
    # the listening socket's queue of connections not yet accepted (None: the kernel's most,
    # net.core.somaxconn)
    listen_backlog: int | None = Field(None, ge=1)
    # upstream
    connect_timeout: float = 10.0
    first_byte_timeout: float = 600.0
    stream_idle_timeout: float = 120.0
    # per upstream host, the most connections in use at once (None: no limit; the
    # open-file limit, raised to its hard limit at start, is the ceiling); a request past
    # it waits for one at most `upstream_queue_timeout` seconds (0: not at all), then is
    # refused with 503 `upstream_busy`, its reservation released
    upstream_max_connections: int | None = Field(None, ge=1)
    upstream_queue_timeout: float = Field(5.0, ge=0)
    # retries: extra attempts on connect errors, 429 and 5xx, before any byte reached the client
    retry_attempts: int = 2
    retry_base_delay: float = 0.25
    retry_max_delay: float = 4.0
    retry_budget_seconds: float = 30.0
    # fallback chains: "provider:model" -> ["provider:model", ...]; a bare model id means
    # the same provider
    fallbacks: dict[str, list[str]] = Field(
        default_factory=lambda: {"openai:gpt-5.4-nano": ["openai:gpt-5.4-mini"]}
    )
    # upstream pools (ai_service.pools): per provider, several credentials chosen per attempt
    # by weight and headroom; a provider listed here ignores its single-key variables
    pools: dict[str, list[CredentialSpec]] = Field(default_factory=dict)
    # a credential's breaker opens after this many failures in a row (5xx, timeouts) and lets
    # a trial request through after the cooldown
    pool_breaker_failures: int = Field(5, ge=1)
    pool_breaker_cooldown_seconds: float = Field(30.0, gt=0)
    # with Redis, each instance reads the pools' shared state when its copy is this old
    pool_state_refresh_seconds: float = Field(1.0, gt=0)
    pool_state_prefix: str = "ai-service:pool:"
    # the Fernet key that encrypts the pools' stored keys (`ai-service pools new-secret`);
    # give it in the environment, not in the YAML file that holds encrypted keys
    credentials_key: SecretStr | None = None
    # idempotency keys are kept this long
    idempotency_ttl_seconds: int = 24 * 3600
    idempotency_max_bytes: int = 4 * 1024 * 1024
    # instance liveness: heartbeat period and the lease after which another instance
    # releases the reservations of a silent one
    heartbeat_seconds: float = 5.0
    instance_lease_seconds: float = 30.0
    # how long a finished request may wait for its settlement while the database is down
    settle_retry_seconds: float = 30.0
    # operations
    log_level: str = "info"
    log_json: bool = True
    # OpenTelemetry tracing (ai_service.tracing; the `tracing` extra): a span per request and
    # one per upstream attempt, exported over OTLP/HTTP to the OTEL_EXPORTER_OTLP_* endpoint
    tracing: bool = False
    auto_migrate: bool = True
    # rate limits (ai_service.ratelimit): per-user defaults for users whose own limit is NULL
    # (None = unlimited); Redis shares the counters across instances when its URL is set
    default_rpm: int | None = Field(None, ge=0)
    default_tpm: int | None = Field(None, ge=0)
    redis_url: SecretStr | None = None
    rate_limit_prefix: str = "ai-service:rl:"
    rate_limit_redis_timeout: float = Field(0.25, gt=0)
    rate_limit_redis_retry_seconds: float = Field(5.0, ge=0)
    # alerts (ai_service.webhooks): signed webhooks to one URL, from a durable outbox
    webhook_url: str | None = None
    # Standard Webhooks' symmetric secret: `whsec_` and the base64 of 24 to 64 random bytes
    webhook_secret: SecretStr | None = None
    webhook_timeout: float = Field(15.0, gt=0)
    webhook_max_attempts: int = Field(16, ge=1)
    webhook_retry_base_delay: float = Field(5.0, gt=0)
    webhook_retry_max_delay: float = Field(6 * 3600.0, gt=0)
    webhook_poll_seconds: float = Field(2.0, gt=0)
    webhook_scan_seconds: float = Field(30.0, gt=0)
    # `balance.low` fires below this many USD, for users without a threshold of their own
    low_balance_alert_usd: str | None = None
    # retention (ai_service.retention): days each kind of row is kept (None: for good);
    # request rows only go once their day's totals are written, which are kept for good
    retention_payload_days: int | None = Field(30, ge=1)
    retention_request_days: int | None = Field(None, ge=1)
    retention_webhook_days: int | None = Field(90, ge=32)
    # how often one instance (under a lease) writes the daily totals and prunes
    retention_interval_seconds: float = Field(3600.0, gt=0)

    @field_validator("anthropic_web_search_usd_per_1k", mode="before")
    @classmethod
    def _plain_price(cls, value: object) -> object:
        """A plain decimal amount, never a float (a YAML integer is taken as its digits)."""
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and usd_to_nano(value) < 0:
            raise ValueError("a price cannot be negative")
        return value

    @field_validator("admin_key")
    @classmethod
    def _reject_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secret = value.get_secret_value()
            if secret.lower() in PLACEHOLDER_SECRETS or len(secret) < 16:
                raise ValueError("AI_SERVICE_ADMIN_KEY must be a random secret of 16+ characters")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secret_key(value.get_secret_value())  # raises ValueError for a malformed secret
        return value

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("AI_SERVICE_WEBHOOK_URL must be an http:// or https:// URL")
        return value or None

    @field_validator("low_balance_alert_usd")
    @classmethod
    def _check_low_balance(cls, value: str | None) -> str | None:
        if value is not None and usd_to_nano(value) < 0:
            raise ValueError("AI_SERVICE_LOW_BALANCE_ALERT_USD cannot be negative")
        return value

    @field_validator("pools")
    @classmethod
    def _check_pools(
        cls, value: dict[str, list[CredentialSpec]]
    ) -> dict[str, list[CredentialSpec]]:
        for provider, specs in value.items():
            if provider not in REGISTRY:
                raise ValueError(f"pools: unknown provider {provider!r}")
            labels = [spec.label for spec in specs]
            if len(set(labels)) != len(labels):
                raise ValueError(f"pools: {provider} has two credentials of the same label")
        return value

    @field_validator("credentials_key")
    @classmethod
    def _check_credentials_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                check_secret(value.get_secret_value())
            except ValueError:
                raise ValueError(
                    "AI_SERVICE_CREDENTIALS_KEY must be a Fernet key (ai-service pools new-secret)"
                ) from None
        return value

    @property
    def credentials_secret(self) -> str | None:
        key = self.credentials_key
        return key.get_secret_value() if key is not None else None

    @model_validator(mode="after")
    def _webhooks_are_signed(self) -> Settings:
        if self.webhook_url is not None and self.webhook_secret is None:
            raise ValueError("AI_SERVICE_WEBHOOK_URL needs AI_SERVICE_WEBHOOK_SECRET")
        return self

    @property
    def low_balance_alert_nano(self) -> int | None:
        """The default `balance.low` threshold in nano-USD (None: no default)."""
        return (
            None if self.low_balance_alert_usd is None else usd_to_nano(self.low_balance_alert_usd)
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get("AI_SERVICE_CONFIG")
        if path:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    def provider_credentials(self, provider: str) -> tuple[str, str | None]:
        """Base URL and API key (or None) of a registered provider, by its path segment."""
        spec = REGISTRY[provider]
        base_url: str = getattr(self, spec.url_setting)
        key: SecretStr | None = getattr(self, spec.key_setting)
        return base_url, key.get_secret_value() if key is not None else None


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (and YAML file), with overrides."""
    return Settings(**overrides)
