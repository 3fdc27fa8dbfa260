"""A customer's data rights, for admins: the subject-access export and erasure
(dialler.customers.personal_data says what is erased, what is kept and why)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from api.auth import PROTECTED_RESPONSES, audit_context, require
from api.deps import SessionDep, SettingsDep, TemporalDep, UserIdPath
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission
from dialler.audit.service import record_ctx
from dialler.customers import personal_data
from dialler.customers.personal_data import ErasureInput
from workflows.erasure_client import start_erasure

router = APIRouter(prefix="/customers", tags=["personal data"], responses=PROTECTED_RESPONSES)


class SubjectAccessRead(BaseModel):
    model_config = {"extra": "allow"}
    user_id: int


# The erasure usually finishes within this; if Twilio is slow the request answers 202 and the workflow
# carries on (its result and the audit row say what was done).
ERASURE_WAIT_S = 5.0


class ErasureRead(BaseModel):
    user_id: int
    workflow_id: str
    done: bool
    erased: dict[str, int] | None = None
    kept: list[dict[str, Any]] | None = None


@router.get("/{user_id}/subject-access", response_model=SubjectAccessRead)
async def subject_access(
    user_id: UserIdPath,
    request: Request,
    session: SessionDep,
    agent: Annotated[Agent, Depends(require(Permission.PERSONAL_DATA_ADMIN))],
) -> dict[str, Any]:
    """Everything the dialler holds about the customer, as JSON (the export is audited)."""
    export = await personal_data.subject_access(session, user_id)
    await record_ctx(
        audit_context(request, agent),
        session=session,
        action="customer.subject_access",
        subject_type="customer",
        subject_id=user_id,
    )
    await session.commit()
    return export


@router.post(
    "/{user_id}/erasure",
    response_model=ErasureRead,
    responses={202: {"model": ErasureRead, "description": "Still running: the workflow carries on"}},
)
async def erasure(
    user_id: UserIdPath,
    request: Request,
    response: Response,
    temporal: TemporalDep,
    settings: SettingsDep,
    agent: Annotated[Agent, Depends(require(Permission.PERSONAL_DATA_ADMIN))],
) -> dict[str, Any]:
    """Erase what the dialler may erase about the customer, here and at Twilio (an ErasureWorkflow).
    200 with what was erased and what was kept, why, and when kept recordings become erasable; 202 with
    the workflow's id if it has not finished within a few seconds (it carries on; the audit row says)."""
    ctx = audit_context(request, agent)
    handle = await start_erasure(
        temporal,
        task_queue=settings.temporal_task_queue,
        input=ErasureInput(user_id, ctx.actor_agent_id, ctx.client_ip, ctx.request_id),
    )
    try:
        report = await asyncio.wait_for(handle.result(), timeout=ERASURE_WAIT_S)
    except TimeoutError:
        response.status_code = 202
        return {"user_id": user_id, "workflow_id": handle.id, "done": False}
    return {**report.as_dict(), "workflow_id": handle.id, "done": True}
