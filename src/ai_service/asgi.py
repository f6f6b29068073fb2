"""Entry point for `uvicorn --factory ai_service.asgi:app` (used by `serve --workers N`)."""

from __future__ import annotations

from ai_service import logs
from ai_service.app import GatewayApp, create_app
from ai_service.config import load_settings


def app() -> GatewayApp:
    settings = load_settings()
    logs.configure(settings.log_level, settings.log_json)
    return create_app(settings)
