"""`ai-service db`: the schema, a check of the books, and retention."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ai_service.cli import JsonOpt, db, emit, prepare_database, run, settings


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations."""
    prepare_database(settings())
    typer.echo("database is at the latest revision")


@db.command("reconcile")
def db_reconcile(as_json: JsonOpt = False) -> None:
    """Check the books: every balance against its ledger; exit 1 if one disagrees.

    Run it after restoring a backup (docs/operations.md). Requests still
    pending hold reservations: a running gateway settles its own, and releases
    those of instances that stopped once their lease has passed.
    """
    import dataclasses

    from sqlalchemy import func, select

    from ai_service.billing import ledger

    async def work(session: AsyncSession) -> dict[str, Any]:
        conn = await session.connection()
        found = await ledger.reconcile(conn)
        names = dict((await conn.execute(select(ledger.USERS.c.id, ledger.USERS.c.name))).all())
        pending = await conn.scalar(
            select(func.count())
            .select_from(ledger.REQUESTS)
            .where(ledger.REQUESTS.c.status == "pending")
        )
        return {
            "users": len(names),
            "pending_requests": int(pending or 0),
            "discrepancies": [
                {"user": names.get(d.user_id), **dataclasses.asdict(d)} for d in found
            ],
        }

    report = run(work)
    lines = [
        f"{d['user']}: " + ", ".join(f"{k}={v}" for k, v in d.items() if k != "user")
        for d in report["discrepancies"]
    ]
    verdict = "do NOT balance" if lines else "balance"
    lines.append(
        f"the books of {report['users']} user(s) {verdict}; "
        f"{report['pending_requests']} request(s) pending (reservations held)"
    )
    emit(report, as_json, "\n".join(lines))
    if report["discrepancies"]:
        raise typer.Exit(1)


DaysOpt = Annotated[
    str | None, typer.Option(help="days to keep, or 'all'; default: the configured retention")
]


def _days(text: str | None, configured: int | None, least: int = 1) -> int | None:
    if text is None:
        return configured
    if text.strip().lower() == "all":
        return None
    if not (text.isascii() and text.isdigit()) or int(text) < least:
        typer.echo(f"error: days are a whole number from {least}, or 'all', not {text!r}", err=True)
        raise typer.Exit(2)
    return int(text)


@db.command("prune")
def db_prune(
    payloads: DaysOpt = None,
    requests: DaysOpt = None,
    webhook_events: DaysOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the daily usage totals that are due, then delete what retention no longer keeps.

    Request rows go only once their day's totals are written (the books and the
    usage pages count them from there); payloads, webhook events delivered or
    given up, expired idempotency keys likewise. A gateway does this every
    `AI_SERVICE_RETENTION_INTERVAL_SECONDS` on one instance; running it by hand is
    safe beside it.
    """
    from ai_service import retention
    from ai_service.billing.ledger import utcnow

    cfg = settings()
    policy = retention.Policy(
        _days(payloads, cfg.retention_payload_days),
        _days(requests, cfg.retention_request_days),
        _days(webhook_events, cfg.retention_webhook_days, retention.MIN_WEBHOOK_DAYS),
        cfg.idempotency_ttl_seconds,
    )

    async def work(session: AsyncSession) -> dict[str, Any]:
        engine = session.bind
        assert isinstance(engine, AsyncEngine)
        return (await retention.run(engine, policy, utcnow())).view()

    report = run(work)
    deleted = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in report["deleted"].items())
    days = report["days_totalled"]
    emit(
        report,
        as_json,
        f"totalled {len(days)} day(s){' (' + days[0] + ' to ' + days[-1] + ')' if days else ''}; "
        f"deleted {deleted}; totals written up to {report['totalled_until'] or '-'}, "
        f"request rows kept from {report['requests_kept_from'] or 'the first'}",
    )
