"""GET /healthz (the process answers), GET /readyz (the database answers), GET /metrics.

`/metrics` is Prometheus' text format for this process (see `metrics.py`);
it carries no user names or keys, but expose it only to your monitoring.
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text
from starlette.responses import Response

from ai_service.api.deps import StateDep
from ai_service.api.responses import json_response
from ai_service.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/healthz", summary="Liveness")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz", summary="Readiness: the database is reachable")
async def readyz(state: StateDep) -> Response:
    try:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:  # any driver failure means "not ready"
        return json_response({"status": "unavailable", "database": "unreachable"}, 503)
    return json_response({"status": "ok", "database": "ok"})


@router.get("/metrics", summary="Prometheus metrics of this process")
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
