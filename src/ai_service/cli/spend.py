"""`ai-service budgets`, a user's low-balance alert, and `ai-service webhooks`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from ai_service.cli import JsonOpt, _usd, budgets, emit, run, settings, users, webhooks


def _budget_line(view: dict[str, Any]) -> str:
    scope = f"key {view['key_prefix']}" if view["scope"] == "key" else "user"
    period = ("rolling " if view["rolling"] else "") + view["period"]
    resets = f", resets {view['resets_at']}" if view["resets_at"] else ""
    return (
        f"#{view['id']:<5} {scope:<20} {period:<14} ${view['used_usd']} of "
        f"${view['limit_usd']} used{resets}"
    )


@budgets.command("list")
def budgets_list(user: str, as_json: JsonOpt = False) -> None:
    """A user's budgets and its keys', each with what it used this period."""
    from ai_service.services import budget_admin

    rows = run(lambda s: budget_admin.budget_views_by_name(s, user))
    emit(rows, as_json, "\n".join(_budget_line(r) for r in rows) or "no budgets")


@budgets.command("set")
def budgets_set(
    period: Annotated[str, typer.Option(help="day, week, month or total")],
    limit: Annotated[str, typer.Option(help="USD per period")],
    user: Annotated[str | None, typer.Option(help="a user's budget")] = None,
    key: Annotated[str | None, typer.Option(help="a key's budget, by its prefix")] = None,
    rolling: Annotated[bool, typer.Option(help="the last 24 h / 7 d / 30 d")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Set a budget of a user or of a key (setting it again changes its limit)."""
    from ai_service.billing.money import usd_to_nano
    from ai_service.services import budget_admin

    nano = _usd(limit, usd_to_nano)

    async def work(session: AsyncSession) -> dict[str, Any]:
        budget = await budget_admin.set_budget(
            session, user_name=user, key_prefix=key, period=period, rolling=rolling, limit=nano
        )
        views = await budget_admin.budget_views(session, budget.user_id)
        return next(v for v in views if v["id"] == budget.id)

    view = run(work)
    emit(view, as_json, _budget_line(view))


@budgets.command("remove")
def budgets_remove(budget_id: int) -> None:
    from ai_service.services import budget_admin

    run(lambda s: budget_admin.remove_budget(s, budget_id))
    typer.echo(f"removed budget #{budget_id}")


@users.command("alert")
def users_alert(
    name: str,
    below: Annotated[
        str | None, typer.Option(help="USD: balance.low fires below it; default, or 0 for none")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show or set a user's own balance.low threshold (`default`: the configured one)."""
    from ai_service.billing.money import usd_to_nano
    from ai_service.services import accounts, webhook_admin

    default = settings().low_balance_alert_nano

    async def work(session: AsyncSession) -> dict[str, Any]:
        if below is None:
            return webhook_admin.alert_view(await accounts.get_user(session, name), default)
        threshold = None if below.lower() == "default" else _usd(below, usd_to_nano)
        return await webhook_admin.set_low_balance(session, name, threshold, default)

    view = run(work)
    applies = f"below ${view['applies_usd']}" if view["applies_usd"] else "never"
    own = "its own" if view["low_balance_usd"] is not None else "the default"
    emit(view, as_json, f"{name}: balance.low fires {applies} ({own})")


def _event_line(view: dict[str, Any]) -> str:
    last = (
        f"  [{view['last_error']}]" if view["last_error"] and view["status"] != "delivered" else ""
    )
    return (
        f"{view['id']}  {view['created_at'][:19]}  {view['status']:<9} "
        f"{view['attempts']:>2}x  {view['type']:<16} {view['user'] or '-':<16} "
        f"{view['summary']}{last}"
    )


@webhooks.command("list")
def webhooks_list(
    status: Annotated[str | None, typer.Option(help="pending, delivered or failed")] = None,
    type: Annotated[str | None, typer.Option(help="balance.low or budget.threshold")] = None,
    user: Annotated[str | None, typer.Option(help="a user's events")] = None,
    limit: Annotated[int, typer.Option(help="events to show")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The webhook events, newest first, with their delivery status."""
    from ai_service.services import webhook_admin

    page = run(
        lambda s: webhook_admin.events_page(
            s, status=status, event_type=type, user_name=user, limit=limit
        )
    )
    rows = page["data"]
    emit(rows, as_json, "\n".join(_event_line(r) for r in rows) or "no events")


@webhooks.command("show")
def webhooks_show(event_id: str) -> None:
    """One event with the body it is sent with (JSON)."""
    from ai_service.services import webhook_admin

    emit(run(lambda s: webhook_admin.event_detail(s, event_id)), True, "")


@webhooks.command("retry")
def webhooks_retry(event_id: str) -> None:
    """Deliver an event again (a failed one, or one the receiver lost), at once."""
    from ai_service.services import webhook_admin

    view = run(lambda s: webhook_admin.retry_event(s, event_id))
    typer.echo(f"{view['id']} is due now: a running gateway delivers it")


@webhooks.command("secret")
def webhooks_secret() -> None:
    """Print a new random secret for AI_SERVICE_WEBHOOK_SECRET."""
    from ai_service.webhooks.signing import new_secret

    typer.echo(new_secret())
