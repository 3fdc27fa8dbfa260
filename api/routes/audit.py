"""The audit log, for supervisors and admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.auth import PROTECTED_RESPONSES, require
from api.deps import SessionDep
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission
from dialler.agents.schemas import CleanStr
from dialler.audit import service
from dialler.audit.schemas import AuditEntryPage, AuditEntryRead

router = APIRouter(prefix="/audit", tags=["audit"], responses=PROTECTED_RESPONSES)

_BIGINT = 2**63 - 1


@router.get("", response_model=AuditEntryPage)
async def list_audit_entries(
    _: Annotated[Agent, Depends(require(Permission.AUDIT_READ))],
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before_id: Annotated[int | None, Query(ge=1, le=_BIGINT)] = None,
    actor_agent_id: Annotated[int | None, Query(ge=1, le=_BIGINT)] = None,
    action: Annotated[CleanStr | None, Query(max_length=48)] = None,
    subject_type: Annotated[CleanStr | None, Query(max_length=32)] = None,
    subject_id: Annotated[CleanStr | None, Query(max_length=64)] = None,
) -> AuditEntryPage:
    """Newest first. Filter by actor, action (e.g. `auth.login_failed`) or subject; page with
    `before_id` = the previous page's `next_before_id`."""
    entries = await service.list_entries(
        session=session,
        limit=limit,
        before_id=before_id,
        actor_agent_id=actor_agent_id,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
    )
    return AuditEntryPage(
        items=[AuditEntryRead.model_validate(e) for e in entries],
        next_before_id=entries[-1].id if len(entries) == limit else None,
    )
