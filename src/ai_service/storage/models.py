"""The database tables (SQLAlchemy 2 typed ORM); names follow the service's platform.

Money columns are integer nano-USD (1e-9 USD). Prices are integer micro-USD per
1M tokens (equal to pico-USD per token), so every published price is exact.

Balance bookkeeping on `api_users`:
- `usd_available` is what new requests may reserve; it never goes below zero.
- `usd_reserved` is held by requests in flight (rows of `api_requests` with
  status `pending` and a non-zero `reserved`).
- At every moment: usd_available + usd_reserved
  = sum(top-ups) - sum(charges) over `api_transactions`.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

BigInt = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class ApiUser(Base):
    __tablename__ = "api_users"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    usd_available: Mapped[int] = mapped_column(BigInteger, default=0)
    usd_reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # rate limits per minute (ai_service.ratelimit): NULL = the Settings default, 0 = unlimited
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    tpm_limit: Mapped[int | None] = mapped_column(Integer)
    # the `balance.low` webhook's threshold (nano-USD): NULL = the setting's default, 0 = none
    low_balance_nano: Mapped[int | None] = mapped_column(BigInteger)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("api_users.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # rate limits per minute (ai_service.ratelimit): NULL or 0 = none beyond the user's
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    tpm_limit: Mapped[int | None] = mapped_column(Integer)
    # the PROVIDER:MODEL patterns the key may use (ai_service.allowlist); NULL = every model
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    # when the key stops working (401 "expired"); NULL = never
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ApiModel(Base):
    """One priced model of a provider; model_id `*` is the provider's default price."""

    __tablename__ = "api_models"
    __table_args__ = (UniqueConstraint("provider", "model_id"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    model_id: Mapped[str] = mapped_column(String(200))
    input_price: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_input_price: Mapped[int | None] = mapped_column(BigInteger)
    cache_write_price: Mapped[int | None] = mapped_column(BigInteger)
    cache_write_1h_price: Mapped[int | None] = mapped_column(BigInteger)
    output_price: Mapped[int] = mapped_column(BigInteger, default=0)
    context_window: Mapped[int] = mapped_column(Integer, default=0)
    max_output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning: Mapped[bool] = mapped_column(Boolean, default=False)
    price_checked_on: Mapped[dt.date | None] = mapped_column(Date)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ApiModelAlias(Base):
    """A requested model id mapped to the id sent upstream (and priced)."""

    __tablename__ = "api_model_aliases"
    __table_args__ = (UniqueConstraint("provider", "alias"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    alias: Mapped[str] = mapped_column(String(200))
    target: Mapped[str] = mapped_column(String(200))


class ApiRequest(Base):
    """One row a request, written `pending` before the upstream call and settled after."""

    __tablename__ = "api_requests"
    __table_args__ = (
        Index("ix_api_requests_user_created", "user_id", "id"),
        Index("ix_api_requests_status_instance", "status", "instance_id"),
        # time ranges on PostgreSQL (rows arrive in time order: a BRIN index costs next
        # to nothing to keep, and finds a day among millions of rows)
        Index(
            "ix_api_requests_created_brin",
            "created_at",
            postgresql_using="brin",
        ).ddl_if(dialect="postgresql"),
        # the reservations in flight of a user or key, which its budgets count
        Index(
            "ix_api_requests_pending",
            "user_id",
            "key_id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    # the client's own `X-Request-ID`, when it sent a valid one
    client_request_id: Mapped[str | None] = mapped_column(String(64))
    # the API surface the request came through: chat, embeddings, ...
    surface: Mapped[str] = mapped_column(String(32), server_default="chat")
    user_id: Mapped[int | None] = mapped_column(ForeignKey("api_users.id"))
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    provider: Mapped[str] = mapped_column(String(32))
    requested_model: Mapped[str | None] = mapped_column(String(200))
    model: Mapped[str | None] = mapped_column(String(200))
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[int] = mapped_column(BigInteger, default=0)
    # the part of `cost` the balance could not pay (charged to the `uncollected` account)
    uncollected: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    # JSON: the rates applied (tier, service tier) and the cost of each kind of token
    price_detail: Mapped[str | None] = mapped_column(Text)
    usage_estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    default_price: Mapped[bool] = mapped_column(Boolean, default=False)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    upstream_latency_ms: Mapped[int | None] = mapped_column(Integer)
    ttft_ms: Mapped[int | None] = mapped_column(Integer)
    # how long the request waited in the gateway's queues (`ai_service.waits`)
    queue_ms: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # one line per upstream attempt: "provider:model -> outcome"
    attempt_log: Mapped[str | None] = mapped_column(Text)
    # the label of the pool credential that served it (never the key); NULL: no pool
    credential: Mapped[str | None] = mapped_column(String(64))
    instance_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ApiRequestData(Base):
    """Request and response payloads of a request, for audit; size-capped, never a key."""

    __tablename__ = "api_request_data"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_body: Mapped[str | None] = mapped_column(Text)
    response_body: Mapped[str | None] = mapped_column(Text)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiTransaction(Base):
    """The ledger: one balanced transfer a row, from `debit_account` to `credit_account`.

    Accounts are `user:<id>`, `funding` (where top-ups come from) and
    `revenue` (where charges go). A transfer moves a positive `amount`, so every
    row sums to zero across its two legs; `UNIQUE(request_id, kind)` makes a
    request's charge idempotent.
    """

    __tablename__ = "api_transactions"
    __table_args__ = (UniqueConstraint("request_id", "kind"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("api_users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    debit_account: Mapped[str] = mapped_column(String(64))
    credit_account: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class ApiPriceData(Base):
    """A price data file loaded by `ai-service models sync` (genai-prices' provider array)."""

    __tablename__ = "api_price_data"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(500))
    content: Mapped[str] = mapped_column(Text)
    loaded_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class ApiIdempotency(Base):
    """A client's `Idempotency-Key`: the first request's body hash and its stored answer."""

    __tablename__ = "api_idempotency"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("api_users.id"))
    key: Mapped[str] = mapped_column(String(255))
    body_hash: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    response: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ApiInstance(Base):
    """A running gateway process and its heartbeat; stale ones get their requests recovered."""

    __tablename__ = "api_instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ApiAdminSession(Base):
    """A signed-in dashboard session: the SHA-256 of its random id, until it ends.

    Signing out deletes the row, so the cookie stops working on every instance.
    """

    __tablename__ = "api_admin_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger)  # Unix seconds


class ApiResponseOwner(Base):
    """A Responses API response created through the gateway, and the user who created it.

    The upstream keeps every user's responses under the gateway's one account:
    a response is read, or continued, only by the user it was made for.
    """

    __tablename__ = "api_response_owners"

    response_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("api_users.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ApiBudget(Base):
    """A spend limit per period on a user (`key_id` NULL) or on one of its keys.

    `period` is `day`, `week`, `month` (calendar periods in UTC, or the last
    24 hours, 7 days, 30 days when `rolling`) or `total` (a lifetime limit).
    What was spent is read from `api_spend_hourly` and the pending requests,
    never reset by a job (`billing.budgets`).
    """

    __tablename__ = "api_budgets"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("api_users.id"), index=True)
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), index=True)
    period: Mapped[str] = mapped_column(String(16))
    rolling: Mapped[bool] = mapped_column(Boolean, default=False)
    limit_nano: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class ApiSpendHourly(Base):
    """What each key's settled requests cost, per hour (UTC) of their start: the ledger's
    spend, summed by the settlement that charges it, for budgets' periods."""

    __tablename__ = "api_spend_hourly"
    __table_args__ = (Index("ix_api_spend_hourly_user_hour", "user_id", "hour"),)

    key_id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    hour: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInt)
    spent: Mapped[int] = mapped_column(BigInteger, default=0)


class ApiWebhookEvent(Base):
    """The webhooks' outbox: one event a row, written once and delivered at least once.

    `dedup_key` names what the event is about (a budget's threshold in a period,
    a user's balance falling low for the n-th time), so that a scan that runs
    twice, or on two instances, never writes it twice. `payload` is the exact
    body sent on every attempt. A delivery claims a row by moving its
    `next_attempt_at` past the attempt's timeout: a claim that an instance did
    not complete (it was killed mid-delivery) makes the row due again.
    """

    __tablename__ = "api_webhook_events"
    __table_args__ = (Index("ix_api_webhook_events_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("api_users.id"))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status: Mapped[int | None] = mapped_column(Integer)  # the receiver's HTTP status
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ApiBalanceAlert(Base):
    """Where a user's `balance.low` alert stands: `episode` counts the times its balance
    went back above the threshold; `fired` says whether this episode's event is out."""

    __tablename__ = "api_balance_alerts"

    user_id: Mapped[int] = mapped_column(ForeignKey("api_users.id"), primary_key=True)
    episode: Mapped[int] = mapped_column(Integer, default=0)
    fired: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiLease(Base):
    """A job that one instance at a time runs (the webhooks' scan): who holds it, until when."""

    __tablename__ = "api_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ApiUsageDaily(Base):
    """What the settled requests of one UTC day came to, by user, key, provider, model and
    status: written once per day by the retention job (`ai_service.retention`), kept when
    the day's request rows are pruned, and read for whole days by the usage queries."""

    __tablename__ = "api_usage_daily"
    __table_args__ = (Index("ix_api_usage_daily_day", "day"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    day: Mapped[dt.date] = mapped_column(Date)
    user_id: Mapped[int | None] = mapped_column(BigInt)
    key_id: Mapped[int | None] = mapped_column(BigInt)
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[int] = mapped_column(BigInteger, default=0)
    uncollected: Mapped[int] = mapped_column(BigInteger, default=0)


class ApiRetention(Base):
    """Where the retention job stands (one row): the days before `rolled_until` have their
    totals in `api_usage_daily`; the request rows before `pruned_until` are gone."""

    __tablename__ = "api_retention"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rolled_until: Mapped[dt.date | None] = mapped_column(Date)
    pruned_until: Mapped[dt.date | None] = mapped_column(Date)
    # the payloads of the requests with a smaller id have been looked at by the pruning
    payloads_checked_id: Mapped[int] = mapped_column(BigInteger, default=0)


class ApiUpstreamCredential(Base):
    """A pool credential an operator added (admin API, CLI, dashboard), beside the settings'.

    The key is stored only as a Fernet token (`key_encrypted`, with
    `AI_SERVICE_CREDENTIALS_KEY`) or as the name of an environment variable
    (`key_env`), never in clear; no API returns either.
    """

    __tablename__ = "api_upstream_credentials"
    __table_args__ = (UniqueConstraint("provider", "label"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(64))
    key_encrypted: Mapped[str | None] = mapped_column(Text)
    key_env: Mapped[str | None] = mapped_column(String(128))
    base_url: Mapped[str | None] = mapped_column(Text)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
