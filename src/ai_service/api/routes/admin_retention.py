"""Admin API, retention: `/ai/admin/api/retention`.

Where the retention job stands (the days whose totals are written, the first
day whose request rows are kept) and the configured days per table; `POST`
runs it now with those days, as `ai-service db prune` does.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from ai_service import retention
from ai_service.api.admin_auth import AdminDep
from ai_service.api.deps import StateDep
from ai_service.api.responses import json_response
from ai_service.api.routes.admin import PREFIX
from ai_service.billing.ledger import utcnow

router = APIRouter(prefix=PREFIX, tags=["admin: retention"], dependencies=[AdminDep])


def _policy_view(policy: retention.Policy) -> dict[str, Any]:
    return {
        "payload_days": policy.payload_days,
        "request_days": policy.request_days,
        "webhook_days": policy.webhook_days,
    }


@router.get("/retention", summary="Where retention stands, and the days kept per table")
async def show(state: StateDep) -> Response:
    async with state.engine.connect() as conn:
        mark = await retention.horizon(conn)
    return json_response(
        {
            "totalled_until": None if mark.rolled_until is None else str(mark.rolled_until),
            "requests_kept_from": None if mark.pruned_until is None else str(mark.pruned_until),
            "policy": _policy_view(retention.Policy.of(state.settings)),
            "interval_seconds": state.settings.retention_interval_seconds,
        }
    )


@router.post("/retention/run", summary="Write the daily totals due and prune, now")
async def run(state: StateDep) -> Response:
    policy = retention.Policy.of(state.settings)
    report = await retention.run(state.engine, policy, utcnow())
    return json_response({**report.view(), "policy": _policy_view(policy)})
