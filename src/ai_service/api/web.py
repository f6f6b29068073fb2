"""What the dashboard's pages share: templates, formatting filters, the sign-in gate, forms.

Pages are server-rendered Jinja2 (autoescaped) with a little JavaScript from
`static/` (Chart.js, vendored; nothing from a CDN). Every page is sent with a
strict Content-Security-Policy and `Cache-Control: no-store` (a new key is on
one of them). Form posts are accepted only from a signed-in session, whose
cookie is `SameSite=Strict`, and only with an `Origin` header naming the
dashboard's own origin (scheme, host and port).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ai_service import __version__
from ai_service.api.admin_auth import COOKIE, configured_key, session_of
from ai_service.api.deps import get_state
from ai_service.billing.money import nano_to_usd, usd_to_nano
from ai_service.errors import PermissionDeniedError, ServiceError
from ai_service.services import sessions

BASE = "/ai/admin"
MAX_FORM_BYTES = 64 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def money(amount: int | str | None) -> str:
    """nano-USD (or a USD decimal string) for people: `$1,234.50`, `$9.999988`, `$0.000012`.

    Amounts are never rounded up; below a cent, six decimals are shown.
    """
    if amount is None or amount == "":
        return ""
    nano = usd_to_nano(amount) if isinstance(amount, str) else amount
    value = nano_to_usd(abs(nano))
    cents = value.quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    shown = cents if cents == value else value.quantize(Decimal("0.000001"), rounding=ROUND_DOWN)
    whole, _, frac = f"{shown:f}".partition(".")
    text = f"${int(whole):,}.{frac.rstrip('0').ljust(2, '0')}"
    return f"-{text}" if nano < 0 else text


def price(text: str | None) -> str:
    """A catalog price string (USD per 1M tokens) as `$0.80`, `$0.028`, `$3.00`."""
    if text is None:
        return ""
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.rstrip('0').ljust(2, '0')}"


def when(value: str | dt.datetime | None) -> str:
    """An ISO time as `2025-01-31 14:05:09` (UTC)."""
    if value is None:
        return ""
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def urlpart(value: str) -> str:
    """A value for one URL path segment or query value (escapes `/` too)."""
    return quote(str(value), safe="")


def number(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


def pretty(text: str | None) -> str:
    """A stored payload, indented when it is JSON (it may be cut short, and then is not)."""
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def make_templates() -> Environment:
    """The dashboard's Jinja2 environment (one per app)."""
    env = Environment(
        loader=PackageLoader("ai_service", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(money=money, price=price, when=when, number=number, percent=percent)
    env.filters["urlpart"] = urlpart
    env.filters["pretty"] = pretty
    env.globals.update(base=BASE, version=__version__)
    return env


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    env: Environment = request.app.state.templates
    html = env.get_template(template).render(request=request, path=request.url.path, **context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def error_page(request: Request, exc: ServiceError) -> HTMLResponse:
    return render(request, "error.html", exc.status, message=exc.message, status=exc.status)


async def gate(request: Request) -> Response | None:
    """None for a signed-in operator; otherwise the response to send instead.

    With no admin key configured the dashboard is closed (404); without a
    valid cookie of a session still open the operator is sent to the sign-in page.
    """
    key = configured_key(request)
    if key is None:
        return render(
            request,
            "error.html",
            404,
            status=404,
            message="The dashboard is disabled: AI_SERVICE_ADMIN_KEY is not set.",
            public=True,
        )
    session_id = session_of(key, request.cookies.get(COOKIE))
    if session_id is not None and await sessions.is_open(get_state(request).engine, session_id):
        return None
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{BASE}/login?{urlencode({'next': target})}", 303)


def same_origin(request: Request) -> bool:
    """Whether a form post comes from the dashboard's own origin: scheme, host and port.

    A post without an `Origin` header (or with `null`) is refused: every
    browser the dashboard supports sends one on a form post. Behind a proxy
    that ends TLS, the scheme is the one the proxy forwards (`X-Forwarded-Proto`
    from an address in uvicorn's `FORWARDED_ALLOW_IPS`).
    """
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    if not origin or not host:
        return False
    given = urlsplit(origin.lower())
    return (given.scheme, given.netloc) == (request.url.scheme, host.lower()) and not (
        given.path or given.query or given.username
    )


async def read_form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body as a dict (last value wins).

    Raises `PermissionDeniedError` for a cross-site post or an oversized body.
    """
    if not same_origin(request):
        raise PermissionDeniedError("Cross-site form posts are refused.")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise PermissionDeniedError("The form is too large.")
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[-1].strip() for name, values in parsed.items()}


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path only (no open redirect)."""
    if target and target.startswith(BASE + "/") and "//" not in target and "\\" not in target:
        return target
    return BASE + "/"


def chart_json(data: Any) -> str:
    """JSON for a `<script type="application/json">` block (safe inside HTML)."""
    return (
        json.dumps(data, separators=(",", ":"))
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )
