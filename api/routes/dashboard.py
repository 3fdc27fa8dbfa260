"""The supervisor dashboard: one route with every number of the board.

Live updates are conditional polling, not a push stream. The screen asks every 2 s with
``If-None-Match`` and gets ``304`` (no body) unless something it shows changed. Chosen over
server-sent events because:

* the API stays stateless (ARCHITECTURE: any number of replicas, nothing assumes one process): no
  long-lived connection pinned to a replica, nothing to fan out between replicas, and a deploy or a
  proxy's idle timeout drops nothing;
* authentication is the ordinary ``Authorization`` header on every request, so the token never goes
  into a URL (EventSource cannot send headers) and a revoked sign-in stops at the next poll;
* one snapshot serves every supervisor: it is cached in Redis for ``SNAPSHOT_TTL_MS``, so the cost
  is bounded by time, not by how many screens are open;
* it stays a plain request/response that the route-permission and fuzz tests exercise like any other
  (an endless stream would hang them).

The price is up to 2 s of delay, well inside what a floor view needs.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from redis.exceptions import RedisError

from api.auth import PROTECTED_RESPONSES, require
from api.conditional import NOT_MODIFIED, conditional_json
from api.deps import SessionDep, StoresDep
from dialler import dashboard
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission

log = logging.getLogger("dialler.api.dashboard")
router = APIRouter(prefix="/dashboard", tags=["dashboard"], responses=PROTECTED_RESPONSES)
SNAPSHOT_TTL_MS = 1000


def snapshot_key(prefix: str) -> str:
    return f"{prefix}:dashboard:snapshot"


@router.get("", response_model=dashboard.DashboardRead, responses=NOT_MODIFIED)
async def get_dashboard(
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    _: Annotated[Agent, Depends(require(Permission.DASHBOARD_READ))],
) -> Response:
    """The floor now: agents board, queue depths and drain rate, today's outcomes and contact rate,
    abandoned rate over 24 h, callbacks due and missed, CDC lag and dead letters, the last rebuild.
    A part whose store does not answer is null. Send `If-None-Match` with the last `ETag` to get a
    `304` when nothing changed (poll every few seconds)."""
    key = snapshot_key(stores.settings.redis_prefix)
    found: dashboard.DashboardRead | None = None
    try:
        cached = await stores.redis.get(key)
        if cached:
            found = dashboard.DashboardRead.model_validate_json(cached)
    except (RedisError, OSError, ValueError):
        found = None
    if found is None:
        found = await dashboard.snapshot(
            session=session,
            postgres=stores.postgres,
            replica=stores.replica,
            redis=stores.redis,
            settings=stores.settings,
            dlq_depth=dashboard.sqs_dlq_depth(stores.sqs, stores.settings),
        )
        try:
            await stores.redis.set(key, found.model_dump_json(), px=SNAPSHOT_TTL_MS)
        except (RedisError, OSError) as exc:
            log.info("dashboard snapshot not cached: %s", type(exc).__name__)
    return conditional_json(request, found, ignore=("generated_at",))
