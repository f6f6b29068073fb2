"""`ai-service pools ...`: the upstream pools as configured and as shared, and their keys.

`list` shows each credential of the settings (never its key) and, with Redis,
the state every instance shares; `add` / `remove` store credentials in the
database, which every instance takes up within seconds; `enable` puts a
disabled credential back in service on every instance (through Redis);
`encrypt-key` makes a `key_encrypted` value and `new-secret` an
`AI_SERVICE_CREDENTIALS_KEY`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Annotated, Any

import orjson
import typer
from cryptography.fernet import Fernet

from ai_service.config import Settings, load_settings
from ai_service.pools.credentials import CREDENTIALS_KEY_VARIABLE, encrypt_key
from ai_service.providers import REGISTRY

pools = typer.Typer(help="Upstream pools: several credentials per provider.")
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _source(entry: Any) -> str:
    if entry.key_env is not None:
        return f"${entry.key_env}"
    return "encrypted" if entry.key_encrypted is not None else "given"


async def _shared(cfg: Settings, provider: str) -> dict[str, dict[str, Any]]:
    if cfg.redis_url is None:
        return {}
    from ai_service.ratelimit.redis import connect

    client = connect(cfg.redis_url.get_secret_value(), cfg.rate_limit_redis_timeout)
    try:
        fields = await client.hgetall(cfg.pool_state_prefix + provider)
    finally:
        await client.aclose()
    return {(k.decode() if isinstance(k, bytes) else k): orjson.loads(v) for k, v in fields.items()}


def _status(cfg: Settings, shared: dict[str, Any] | None) -> str:
    if cfg.redis_url is None:
        return "(state per instance: see its dashboard)"
    if shared is None:
        return "in service"
    if shared.get("disabled"):
        return f"disabled ({shared['disabled']})"
    if shared.get("breaker") != "closed":
        return f"breaker {shared.get('breaker')}"
    if float(shared.get("blocked_until") or 0) > time.time():
        return "rate limited"
    return "in service"


@pools.command("list")
def pools_list(as_json: JsonOpt = False) -> None:
    """Each pool credential, of the settings and stored: label, base URL, weight, limits,
    where its key comes from, and (with Redis) the state the instances share."""
    from ai_service.cli import run
    from ai_service.services import credential_admin

    cfg = load_settings()
    stored, _ = run(credential_admin.stored)
    rows: list[dict[str, Any]] = []
    for provider in REGISTRY:
        entries = [(e, "settings") for e in cfg.pools.get(provider, [])]
        entries += [(e, "stored") for e in stored.get(provider, [])]
        if not entries:
            continue
        shared = asyncio.run(_shared(cfg, provider))
        for entry, source in entries:
            rows.append(
                {
                    "provider": provider,
                    "label": entry.label,
                    "source": source,
                    "base_url": entry.base_url or cfg.provider_credentials(provider)[0],
                    "weight": entry.weight,
                    "rpm": entry.rpm,
                    "tpm": entry.tpm,
                    "key": _source(entry),
                    "status": _status(cfg, shared.get(entry.label)),
                }
            )
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    if not rows:
        typer.echo("no pool is configured (AI_SERVICE_POOLS)")
    for r in rows:
        limits = f"rpm={r['rpm'] or '-'} tpm={r['tpm'] or '-'}"
        typer.echo(
            f"{r['provider']}/{r['label']} ({r['source']})  {r['base_url']}  "
            f"weight={r['weight']}  {limits}  key={r['key']}  {r['status']}"
        )


@pools.command("enable")
def pools_enable(provider: str, label: str) -> None:
    """Put a disabled credential back in service on every instance (needs Redis; without
    it, use the admin API or the dashboard of each instance)."""
    from ai_service.cli import run
    from ai_service.services import credential_admin

    cfg = load_settings()
    stored, _ = run(credential_admin.stored)
    labels = {e.label for e in [*cfg.pools.get(provider, []), *stored.get(provider, [])]}
    if label not in labels | {"default"}:
        typer.echo(f"error: no credential {label!r} in the {provider} pool", err=True)
        raise typer.Exit(1)
    if cfg.redis_url is None:
        typer.echo(
            "error: without AI_SERVICE_REDIS_URL each instance keeps its own state: "
            "enable it with the admin API or the dashboard of each instance",
            err=True,
        )
        raise typer.Exit(1)
    from ai_service.pools.shared import state_bytes
    from ai_service.ratelimit.redis import connect

    url = cfg.redis_url.get_secret_value()

    async def write() -> None:
        client = connect(url, cfg.rate_limit_redis_timeout)
        try:
            await client.hset(cfg.pool_state_prefix + provider, label, state_bytes(time.time()))
        finally:
            await client.aclose()

    asyncio.run(write())
    typer.echo(f"enabled {provider}/{label}")


@pools.command("add")
def pools_add(
    provider: str,
    label: str,
    key_env: Annotated[
        str | None, typer.Option(help="the variable holding the key (else read on stdin)")
    ] = None,
    base_url: Annotated[str | None, typer.Option(help="the provider's, if unset")] = None,
    weight: Annotated[int, typer.Option(min=1, max=1000)] = 1,
    rpm: Annotated[int | None, typer.Option(min=1)] = None,
    tpm: Annotated[int | None, typer.Option(min=1)] = None,
) -> None:
    """Store a credential in the database (its key read on stdin, stored encrypted with
    AI_SERVICE_CREDENTIALS_KEY); every instance serves with it within seconds."""
    from ai_service.cli import run
    from ai_service.services import credential_admin

    cfg = load_settings()
    key = None
    if key_env is None:
        key = sys.stdin.readline().strip()
        if not key:
            typer.echo("error: no key on stdin (or give --key-env)", err=True)
            raise typer.Exit(1)
    view = run(
        lambda s: credential_admin.add(
            s,
            cfg,
            provider,
            label,
            key=key,
            key_env=key_env,
            base_url=base_url,
            weight=weight,
            rpm=rpm,
            tpm=tpm,
        )
    )
    typer.echo(f"added {provider}/{label} ({view['key']})")


@pools.command("remove")
def pools_remove(provider: str, label: str) -> None:
    """Delete a stored credential (one of the settings is changed in the settings)."""
    from ai_service.cli import run
    from ai_service.services import credential_admin

    run(lambda s: credential_admin.remove(s, provider, label))
    typer.echo(f"removed {provider}/{label}")


@pools.command("encrypt-key")
def pools_encrypt_key() -> None:
    """Read an upstream key on stdin and print it encrypted for `key_encrypted`, with the
    secret in AI_SERVICE_CREDENTIALS_KEY."""
    secret = load_settings().credentials_secret
    if not secret:
        typer.echo(f"error: set {CREDENTIALS_KEY_VARIABLE} (ai-service pools new-secret)", err=True)
        raise typer.Exit(1)
    key = sys.stdin.readline().strip()
    if not key:
        typer.echo("error: no key on stdin", err=True)
        raise typer.Exit(1)
    typer.echo(encrypt_key(key, secret))


@pools.command("new-secret")
def pools_new_secret() -> None:
    """Print a new random secret for AI_SERVICE_CREDENTIALS_KEY."""
    typer.echo(Fernet.generate_key().decode())
