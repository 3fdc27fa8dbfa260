"""A customer's data rights, for admins: the subject-access export and erasure
(dialler.customers.personal_data says what is erased, what is kept and why)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from api.auth import PROTECTED_RESPONSES, audit_context, require
from api.deps import SessionDep, StoresDep, UserIdPath
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission
from dialler.audit.service import record_ctx
from dialler.customers import personal_data

router = APIRouter(prefix="/customers", tags=["personal data"], responses=PROTECTED_RESPONSES)


class SubjectAccessRead(BaseModel):
    model_config = {"extra": "allow"}
    user_id: int


class ErasureRead(BaseModel):
    user_id: int
    erased: dict[str, int]
    kept: list[dict[str, Any]]


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


@router.post("/{user_id}/erasure", response_model=ErasureRead)
async def erasure(
    user_id: UserIdPath,
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    agent: Annotated[Agent, Depends(require(Permission.PERSONAL_DATA_ADMIN))],
) -> dict[str, Any]:
    """Erase what the dialler may erase about the customer; the answer (and the audit row) lists what
    was erased and what was kept, why, and when kept recordings become erasable."""
    report = await personal_data.erase(
        session=session,
        replica=stores.replica,
        redis=stores.redis,
        redis_prefix=stores.settings.redis_prefix,
        user_id=user_id,
        ctx=audit_context(request, agent),
    )
    return report.as_dict()
