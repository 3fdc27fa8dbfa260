"""Queues: depths, pages with score and reason, explain a customer, the not-callable report, rebuilds."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import BaseModel, Field

from api.auth import PROTECTED_RESPONSES, audit_context, require
from api.deps import MAX_ID, StoresDep, TemporalDep, UserIdPath
from api.errors import NotFound
from dialler import clock
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission
from dialler.audit.service import record_ctx
from dialler.compliance import gates
from dialler.compliance.records import recent_decisions
from dialler.queues.eligibility import QueueName, reason_text
from dialler.queues.runtime import last_rebuild_key, queue_engine
from dialler.queues.service import explain_customer, not_callable
from workflows.queue_rebuild_client import start_rebuild

router = APIRouter(prefix="/queues", tags=["queues"], responses=PROTECTED_RESPONSES)
_QUEUE_REASON = {
    QueueName.CALLBACKS: reason_text("callback_due"),
    QueueName.UNSIGNED: reason_text("unsigned"),
    QueueName.OUTSTANDING: reason_text("outstanding_requirements"),
}


class QueueDepth(BaseModel):
    queue: str
    depth: int


class QueueEntryRead(BaseModel):
    user_id: int
    score: float
    not_before: datetime | None
    reason: str


class QueuePage(BaseModel):
    queue: str
    offset: int
    limit: int
    total: int
    items: list[QueueEntryRead]


class DecisionRead(BaseModel):
    """One recorded decision of the compliance gate (a dial, allowed or refused)."""

    decided_at: datetime
    path: str
    channel: str
    allowed: bool
    blocking_rule: str | None
    reasons: list[str]
    rules_checked: list[str]
    next_allowed_at: datetime | None
    facts_versions: dict[str, Any]
    call_session_id: str | None
    agent_id: int | None
    basis: str | None = Field(default=None, description="Why the customer may be called at all (PECR reg. 21A)")


class ExplanationRead(BaseModel):
    user_id: int
    queue: str | None
    score: float | None
    callable_now: bool
    blocking_rule: str | None
    until: datetime | None
    vulnerable: bool
    reasons: list[str]
    live_queue: str | None
    leased_to_agent_id: int | None
    why_not_now: list[str]
    """The compliance gate's reasons, now (empty when callable now): what the agent's screen shows."""
    next_allowed_at: datetime | None
    decisions: list[DecisionRead]
    """The last recorded decisions (every dial, and every dial refused at the last moment), newest first."""


class NotCallableRead(BaseModel):
    user_id: int
    reason: str
    detail: str | None


class NotCallablePage(BaseModel):
    items: list[NotCallableRead]
    next_after: int


class RebuildAccepted(BaseModel):
    workflow_id: str
    temporal_url: str


@router.get("", response_model=list[QueueDepth])
async def depths(
    stores: StoresDep, agent: Annotated[Agent, Depends(require(Permission.QUEUES_READ))]
) -> list[QueueDepth]:
    """How many customers wait in each queue."""
    found = await queue_engine(stores).depths()
    return [QueueDepth(queue=q.value, depth=found.get(q.value, 0)) for q in QueueName]


@router.get("/{queue}", response_model=QueuePage)
async def page(
    queue: QueueName,
    stores: StoresDep,
    agent: Annotated[Agent, Depends(require(Permission.CUSTOMERS_READ_ANY))],
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> QueuePage:
    """A page of one queue in call order (lower score first), with the reason for each score."""
    engine = queue_engine(stores)
    members = await engine.page(queue.value, offset=offset, limit=limit)
    total = (await engine.depths()).get(queue.value, 0)
    not_before = await stores.redis.hmget(engine.keys.not_before, [str(u) for u, _ in members]) if members else []
    items = []
    for (user_id, score), nb in zip(members, not_before, strict=True):
        items.append(
            QueueEntryRead(
                user_id=user_id,
                score=score,
                not_before=datetime.fromtimestamp(float(nb), UTC) if nb else None,  # a real instant
                reason=_QUEUE_REASON[queue],
            )
        )
    return QueuePage(queue=queue.value, offset=offset, limit=limit, total=total, items=items)


@router.get("/customers/{user_id}/explain", response_model=ExplanationRead)
async def explain(
    user_id: UserIdPath,
    request: Request,
    stores: StoresDep,
    agent: Annotated[Agent, Depends(require(Permission.CUSTOMERS_READ_ANY))],
) -> ExplanationRead:
    """Why a customer is (or is not) queued: which queue and at what score, or which rule and until when."""
    found = await explain_customer(
        replica=stores.replica,
        postgres=stores.postgres,
        user_id=user_id,
        now=clock.instant(),
        rules=gates.CallingRules.from_settings(stores.settings),
        offset=clock.offset(stores.settings),
    )
    if found is None:
        raise NotFound(f"No customer {user_id}.")
    engine = queue_engine(stores)
    live = await engine.position(user_id)
    lease = await engine.lease_of(user_id)
    async with stores.postgres.connect() as conn:
        decisions = await recent_decisions(conn, user_id=user_id, limit=10)
    async with stores.sessions() as session:
        await record_ctx(
            session=session,
            ctx=audit_context(request, agent),
            action="customer.explain",
            subject_type="customer",
            subject_id=str(user_id),
        )
        await session.commit()
    return ExplanationRead(
        user_id=found.user_id,
        queue=found.queue.value if found.queue else None,
        score=found.score,
        callable_now=found.callable_now,
        blocking_rule=found.blocking_rule,
        until=found.until,
        vulnerable=found.vulnerable,
        reasons=list(found.reasons),
        live_queue=live[0] if live else None,
        leased_to_agent_id=lease.agent_id if lease else None,
        why_not_now=list(found.gate_reasons),
        next_allowed_at=found.until,
        decisions=[DecisionRead(**d.__dict__) for d in decisions],
    )


@router.get("/reports/not-callable", response_model=NotCallablePage)
async def not_callable_report(
    stores: StoresDep,
    agent: Annotated[Agent, Depends(require(Permission.CUSTOMERS_READ_ANY))],
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> NotCallablePage:
    """Customers who would be called but have no callable number, with the reason (to fix upstream)."""
    rows, last = await not_callable(replica=stores.replica, after=after, limit=limit)
    return NotCallablePage(items=[NotCallableRead(**r) for r in rows], next_after=last)


@router.post("/rebuild", response_model=RebuildAccepted, status_code=status.HTTP_202_ACCEPTED)
async def trigger_rebuild(
    request: Request,
    stores: StoresDep,
    temporal: TemporalDep,
    agent: Annotated[Agent, Depends(require(Permission.REBUILD_TRIGGER))],
) -> RebuildAccepted:
    """Start a full rebuild now. Accepted work: follow it in the Temporal UI or read the last report."""
    handle = await start_rebuild(temporal, stores.settings, trigger="supervisor", requested_by_agent_id=agent.id)
    workflow_id = handle.id
    async with stores.sessions() as session:
        await record_ctx(
            session=session,
            ctx=audit_context(request, agent),
            action="queues.rebuild",
            subject_type="workflow",
            subject_id=workflow_id,
        )
        await session.commit()
    return RebuildAccepted(workflow_id=workflow_id, temporal_url=temporal_workflow_url(stores.settings, workflow_id))


@router.get("/rebuild/last", response_model=dict[str, Any])
async def last_rebuild(
    stores: StoresDep, agent: Annotated[Agent, Depends(require(Permission.DASHBOARD_READ))]
) -> dict[str, Any]:
    """The last rebuild's counts per queue and drift against the live queues."""
    raw = await stores.redis.get(last_rebuild_key(stores))
    if raw is None:
        raise NotFound("No rebuild has run yet.")
    return dict(json.loads(raw))


def temporal_workflow_url(settings: Any, workflow_id: str) -> str:
    return f"{settings.temporal_ui_url.rstrip('/')}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"
