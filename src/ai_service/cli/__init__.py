"""The `ai-service` command: serve, and the operator's commands on users, keys, models, usage."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from sqlalchemy.ext.asyncio import AsyncSession

from ai_service.cli.pools import pools
from ai_service.config import Settings, load_settings
from ai_service.errors import ServiceError

T = TypeVar("T")

app = typer.Typer(help="ai-service: an OpenAI-compatible LLM gateway with prepaid balances.")
users = typer.Typer(help="Users and their balances.")
keys = typer.Typer(help="API keys.")
models = typer.Typer(help="The model catalog and its prices.")
db = typer.Typer(help="The database: its schema, a check of the books, retention.")
budgets = typer.Typer(help="Spend limits per period on users and keys.")
webhooks = typer.Typer(help="Alerts: the signed webhook events and their delivery.")
app.add_typer(users, name="users")
app.add_typer(budgets, name="budgets")
app.add_typer(keys, name="keys")
app.add_typer(models, name="models")
app.add_typer(db, name="db")
app.add_typer(webhooks, name="webhooks")
app.add_typer(pools, name="pools")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def settings() -> Settings:
    return load_settings()


def prepare_database(cfg: Settings) -> None:
    """Migrate the schema to head (prices come from the price data: nothing to seed)."""
    from ai_service.storage.db import upgrade

    upgrade(cfg.database_url)


def run(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run one operator command in a session on the configured database."""
    from ai_service.storage.db import make_engine, session_factory

    cfg = settings()

    async def _main() -> T:
        engine = make_engine(cfg.database_url)
        try:
            async with session_factory(engine)() as session:
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(_main())
    except ServiceError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


def emit(data: Any, as_json: bool, text: str) -> None:
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if as_json else text)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes")] = None,
) -> None:
    """Migrate the database if needed and serve the gateway."""
    import uvicorn

    from ai_service import logs
    from ai_service.fdlimit import listen_backlog

    cfg = settings()
    logs.configure(cfg.log_level, cfg.log_json)
    if cfg.auto_migrate:
        prepare_database(cfg)
    count = workers or cfg.workers
    options: dict[str, Any] = {
        "host": host or cfg.host,
        "port": port or cfg.port,
        "log_level": cfg.log_level,
        "access_log": False,
        "loop": "uvloop",
        "http": "httptools",
        "timeout_graceful_shutdown": 30,
        # new connections wait here until the process accepts them: a burst of streams
        # arriving faster than a busy core accepts them must not overflow it
        "backlog": listen_backlog(cfg.listen_backlog),
    }
    # a graceful stop on SIGTERM exits 0 (uvicorn raises the signal again once it is done)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    if count > 1:
        uvicorn.run("ai_service.asgi:app", workers=count, factory=True, **options)
    else:
        from ai_service.app import create_app

        uvicorn.run(create_app(cfg), **options)


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


@users.command("create")
def users_create(
    name: str, balance: Annotated[str, typer.Option(help="opening balance in USD")] = "0"
) -> None:
    """Create a user with a first key; the key is printed on the last line."""
    from ai_service.billing.money import usd_to_nano
    from ai_service.services import accounts

    amount = _usd(balance, usd_to_nano)
    key = run(lambda s: accounts.create_user(s, name, amount))
    typer.echo(f"created user {name} with ${balance}; key prefix {key.prefix}")
    typer.echo(key.secret)


def _usd(text: str, parse: Callable[[str], int]) -> int:
    try:
        return parse(text)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@users.command("list")
def users_list(as_json: JsonOpt = False) -> None:
    from ai_service.services import accounts

    rows = [accounts.user_view(u) for u in run(accounts.list_users)]
    text = "\n".join(
        f"{r['name']:<24} ${r['usd_available']:>16}{'  (disabled)' if r['disabled'] else ''}"
        for r in rows
    )
    emit(rows, as_json, text or "no users")


@users.command("show")
def users_show(name: str, as_json: JsonOpt = False) -> None:
    from ai_service.services import accounts, usage

    async def work(session: AsyncSession) -> dict[str, Any]:
        user = await accounts.get_user(session, name)
        view = accounts.user_view(user)
        view["account"] = await usage.account(session, user.id)
        view["keys"] = await accounts.list_keys(session, name)
        return view

    view = run(work)
    text = (
        f"{view['name']}: ${view['usd_available']} available, ${view['usd_reserved']} reserved, "
        f"{len(view['keys'])} key(s){', disabled' if view['disabled'] else ''}"
    )
    emit(view, as_json, text)


@users.command("topup")
def users_topup(
    name: str, amount: Annotated[str, typer.Option(help="USD to add")], note: str | None = None
) -> None:
    from ai_service.billing.money import usd_to_nano
    from ai_service.services import accounts

    nano = _usd(amount, usd_to_nano)
    user = run(lambda s: accounts.topup(s, name, nano, note))
    typer.echo(f"{name}: ${accounts.user_view(user)['usd_available']} available")


@users.command("disable")
def users_disable(name: str) -> None:
    from ai_service.services import accounts

    run(lambda s: accounts.set_disabled(s, name, True))
    typer.echo(f"{name} disabled")


@users.command("enable")
def users_enable(name: str) -> None:
    from ai_service.services import accounts

    run(lambda s: accounts.set_disabled(s, name, False))
    typer.echo(f"{name} enabled")


def _limit(text: str | None) -> Any:
    """A CLI limit value: omitted keeps it, `none` clears it, else a whole number."""
    from ai_service.services.limits import KEEP

    if text is None:
        return KEEP
    if text.lower() in ("none", "default"):
        return None
    if not text.isdigit():
        typer.echo(f"error: a limit is a whole number or 'none', not {text!r}", err=True)
        raise typer.Exit(2)
    return int(text)


def _limits(
    user: str | None, prefix: str | None, rpm: str | None, tpm: str | None, as_json: bool
) -> None:
    from ai_service.services.limits import get_limits, set_limits

    if rpm is None and tpm is None:
        setting = run(lambda s: get_limits(s, user=user, key_prefix=prefix))
    else:
        r, t = _limit(rpm), _limit(tpm)
        setting = run(lambda s: set_limits(s, user=user, key_prefix=prefix, rpm=r, tpm=t))
    view = setting.view()
    emit(view, as_json, f"{view['scope']} {view['name']}: rpm {view['rpm']}, tpm {view['tpm']}")


RpmOpt = Annotated[str | None, typer.Option("--rpm", help="requests per minute; none clears")]
TpmOpt = Annotated[str | None, typer.Option("--tpm", help="tokens per minute; none clears")]


@users.command("limits")
def users_limits(
    name: str, rpm: RpmOpt = None, tpm: TpmOpt = None, as_json: JsonOpt = False
) -> None:
    """Show or set a user's rate limits (0 = unlimited, none = the default)."""
    _limits(name, None, rpm, tpm, as_json)


@keys.command("limits")
def keys_limits(
    prefix: str, rpm: RpmOpt = None, tpm: TpmOpt = None, as_json: JsonOpt = False
) -> None:
    """Show or set a key's rate limits (0 = unlimited, none = only the user's)."""
    _limits(None, prefix, rpm, tpm, as_json)


AllowOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allow",
        help="a PROVIDER:MODEL glob the key may use (openai:*, claude:claude-sonnet-*); "
        "repeat for more; without any, every model",
    ),
]
ExpiresOpt = Annotated[
    str | None,
    typer.Option(
        "--expires",
        help="when the key stops working: ISO 8601 (2027-01-01 is its midnight UTC) or "
        "Unix seconds",
    ),
]


def key_line(view: dict[str, Any]) -> str:
    """A key on one line: prefix, user, status, expiry, allowed models."""
    status = "revoked" if view["revoked"] else "expired" if view["expired"] else "active"
    expires = f"  expires {view['expires_at']}" if view["expires_at"] else ""
    allowed = view["allowed_models"]
    models = f"  allows {','.join(allowed)}" if allowed is not None else ""
    return f"{view['prefix']}  {view['user']:<20} {status}{expires}{models}"


@keys.command("create")
def keys_create(
    user: str, name: str | None = None, allow: AllowOpt = None, expires: ExpiresOpt = None
) -> None:
    """Create another key for a user; the key is printed on the last line."""
    from ai_service.services import accounts

    policy = accounts.Policy(allowed=allow or None, expires=expires)
    key = run(lambda s: accounts.create_key(s, user, name, policy))
    typer.echo(f"created key {key.prefix} for {user}")
    typer.echo(key.secret)


@keys.command("show")
def keys_show(prefix: str, as_json: JsonOpt = False) -> None:
    """Show a key: its user, status, expiry, allowed models and rate limits."""
    from ai_service.services import accounts

    async def work(session: AsyncSession) -> dict[str, Any]:
        key = await accounts.get_key(session, prefix)
        return accounts.key_view(key, await accounts.owner_name(session, key))

    view = run(work)
    emit(view, as_json, key_line(view))


@keys.command("update")
def keys_update(
    prefix: str,
    allow: AllowOpt = None,
    allow_all: Annotated[
        bool, typer.Option("--allow-all", help="clear the allow-list: every model")
    ] = False,
    expires: ExpiresOpt = None,
    no_expiry: Annotated[bool, typer.Option("--no-expiry", help="the key never expires")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Change a key's allowed models or expiry (what is not named stays as it is).

    Gateways apply it within AI_SERVICE_KEY_CACHE_SECONDS."""
    from ai_service.services import accounts
    from ai_service.services.limits import KEEP

    if (allow and allow_all) or (expires is not None and no_expiry):
        typer.echo("error: --allow and --allow-all, or --expires and --no-expiry, clash", err=True)
        raise typer.Exit(2)
    policy = accounts.Policy(
        allowed=None if allow_all else allow or KEEP,
        expires=None if no_expiry else KEEP if expires is None else expires,
    )

    async def work(session: AsyncSession) -> dict[str, Any]:
        key = await accounts.update_key(session, prefix, policy)
        return accounts.key_view(key, await accounts.owner_name(session, key))

    view = run(work)
    emit(view, as_json, key_line(view))


@keys.command("revoke")
def keys_revoke(prefix: str) -> None:
    from ai_service.services import accounts

    run(lambda s: accounts.revoke_key(s, prefix))
    typer.echo(f"revoked {prefix}")


@keys.command("list")
def keys_list(user: str | None = None, as_json: JsonOpt = False) -> None:
    from ai_service.services import accounts

    rows = run(lambda s: accounts.list_keys(s, user))
    emit(rows, as_json, "\n".join(key_line(r) for r in rows) or "no keys")


@models.command("list")
def models_list(provider: str | None = None, as_json: JsonOpt = False) -> None:
    """The priced models (price data and overrides), retired ids, then aliases."""
    from ai_service.services import catalog_admin

    policy = settings().unknown_model_policy
    rows = run(lambda s: catalog_admin.list_models(s, provider, policy))

    def line(r: dict[str, Any]) -> str:
        if r["alias_of"]:
            return f"{r['provider']:<9} {r['model']:<44} -> {r['alias_of']}"
        if r["retired"]:
            return f"{r['provider']:<9} {r['model']:<44} retired (not priced)"
        flag = " deprecated" if r["deprecated"] else ""
        return (
            f"{r['provider']:<9} {r['model']:<44} in ${r['input_per_million']:>8} "
            f"out ${r['output_per_million']:>8} /1M  [{r['source']}]{flag}"
        )

    emit(rows, as_json, "\n".join(line(r) for r in rows))


@models.command("sync")
def models_sync(
    file: Annotated[Path, typer.Option("--file", help="a genai-prices data.json")],
    source: Annotated[str | None, typer.Option(help="where the file came from")] = None,
) -> None:
    """Load a newer price data file: new requests are priced with it, on every instance."""
    from ai_service.billing import catalog

    try:
        content = file.read_text("utf-8")
    except OSError as exc:
        typer.echo(f"error: cannot read {file}: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        loaded = run(lambda s: catalog.sync(s, content, source or file.name))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    counts = ", ".join(f"{p} {n}" for p, n in loaded["models"].items())
    typer.echo(f"price data #{loaded['id']} loaded from {loaded['source']}: {counts} models")
    for provider, ids in loaded["rounded_up"].items():
        typer.echo(f"note: {provider} prices rounded up to 1e-6 USD/1M: {', '.join(ids)}")


@models.command("set-price")
def models_set_price(
    provider: str,
    model: str,
    input: Annotated[str, typer.Option("--input", help="USD per 1M input tokens")],
    output: Annotated[str, typer.Option("--output", help="USD per 1M output tokens")],
    cached_input: Annotated[str | None, typer.Option(help="USD per 1M cached input")] = None,
    cache_write: Annotated[str | None, typer.Option(help="USD per 1M cache-write")] = None,
    cache_write_1h: Annotated[
        str | None, typer.Option(help="USD per 1M 1-hour cache-write")
    ] = None,
    context_window: Annotated[int | None, typer.Option()] = None,
    max_output: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Set an operator's override of a model's prices (it wins over the price data)."""
    from ai_service.services import catalog_admin

    try:
        row = run(
            lambda s: catalog_admin.set_price(
                s,
                provider,
                model,
                input=input,
                output=output,
                cached_input=cached_input,
                cache_write=cache_write,
                cache_write_1h=cache_write_1h,
                context_window=context_window,
                max_output=max_output,
            )
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"{provider}/{model}: in ${row['input_per_million']} out ${row['output_per_million']} /1M"
    )


@models.command("alias")
def models_alias(provider: str, alias: str, target: str) -> None:
    """Map a requested model id to the id sent upstream."""
    from ai_service.services import catalog_admin

    run(lambda s: catalog_admin.set_alias(s, provider, alias, target))
    typer.echo(f"{provider}: {alias} -> {target}")


@app.command()
def usage(
    name: str,
    limit: Annotated[int, typer.Option(help="rows to show")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """A user's request log, newest first."""
    from ai_service.services import accounts, usage as usage_mod

    async def work(session: AsyncSession) -> dict[str, Any]:
        user = await accounts.get_user(session, name)
        return await usage_mod.requests_page(session, user_id=user.id, limit=limit)

    page = run(work)
    text = "\n".join(
        f"{r['created_at']} {r['provider']}/{r['model']} {r['status']} "
        f"{r['prompt_tokens']}+{r['completion_tokens']} tok ${r['cost_usd']}"
        for r in page["data"]
    )
    emit(page["data"], as_json, text or "no requests")


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


# the command groups kept in modules of their own register themselves on import
from ai_service.cli import database, spend  # noqa: E402

__all__ = ["app", "database", "main", "spend"]
