"""The compliance officer's desk: the review queue (read by supervisors, worked by compliance) and the
customer's vulnerable flag; the do-not-call list (supervisors and compliance)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from api.auth import PROTECTED_RESPONSES, audit_context, require
from api.deps import MAX_ID, SessionDep, StoresDep, UserIdPath
from dialler import clock
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission
from dialler.audit.service import record_ctx
from dialler.compliance import dnc, flags, reviews
from dialler.compliance.reviews import ReviewKind, ReviewStatus, ReviewView
from dialler.compliance.schemas import (
    DoNotCallAdd,
    DoNotCallChange,
    DoNotCallPage,
    DoNotCallRead,
    DoNotCallRemove,
    InvalidLine,
    ReviewAssign,
    ReviewItemPage,
    ReviewItemRead,
    ReviewResolve,
    TpsLoadRead,
    VulnerableFlagRead,
    VulnerableFlagWrite,
)
from dialler.queues.rebuild import recompute
from dialler.queues.runtime import queue_engine

router = APIRouter(prefix="/compliance", tags=["compliance"], responses=PROTECTED_RESPONSES)

ReviewReader = Annotated[Agent, Depends(require(Permission.REVIEWS_READ))]
ReviewManager = Annotated[Agent, Depends(require(Permission.REVIEWS_MANAGE))]
ReviewId = Annotated[int, Path(ge=1, le=MAX_ID)]
# The desk is warned this long before a complaint's final response falls due.
DEADLINE_WARNING = timedelta(days=7)


def _read(view: ReviewView) -> ReviewItemRead:
    item = view.item
    now = clock.instant()
    return ReviewItemRead(
        id=item.id,
        kind=item.kind,
        user_id=item.user_id,
        call_session_id=item.call_session_id,
        agent_id=item.agent_id,
        disposition=view.disposition,
        notes=view.notes,
        status=item.status,
        assignee_agent_id=item.assignee_agent_id,
        created_at=item.created_at,
        acknowledge_due_at=item.acknowledge_due_at,
        final_response_due_at=item.final_response_due_at,
        acknowledged_at=item.acknowledged_at,
        resolution=item.resolution,
        resolved_at=item.resolved_at,
        resolved_by_agent_id=item.resolved_by_agent_id,
        final_response_overdue=(
            item.status != ReviewStatus.CLOSED
            and item.final_response_due_at is not None
            and item.final_response_due_at < now
        ),
    )


@router.get("/reviews", response_model=ReviewItemPage)
async def list_reviews(
    _: ReviewReader,
    session: SessionDep,
    status: ReviewStatus | None = None,
    kind: ReviewKind | None = None,
    assignee_agent_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    user_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    due_soon: Annotated[
        bool, Query(description="Only complaints whose final response falls due within 7 days or is late.")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> ReviewItemPage:
    """Review items newest first (complaints, vulnerable customers, deceased), with the agent's notes.
    Filter by status, kind, assignee or customer; page with `before_id`."""
    views = await reviews.list_items(
        session,
        status=status,
        kind=kind,
        assignee_agent_id=assignee_agent_id,
        user_id=user_id,
        overdue_at=clock.instant() + DEADLINE_WARNING if due_soon else None,
        limit=limit,
        before_id=before_id,
    )
    return ReviewItemPage(
        items=[_read(v) for v in views], next_before_id=views[-1].item.id if len(views) == limit else None
    )


@router.get("/reviews/{review_id}", response_model=ReviewItemRead)
async def get_review(review_id: ReviewId, _: ReviewReader, session: SessionDep) -> ReviewItemRead:
    """One review item, with the agent's notes."""
    return _read(await reviews.get_item(session, review_id))


@router.post("/reviews/{review_id}/acknowledge", response_model=ReviewItemRead)
async def acknowledge_review(
    review_id: ReviewId, request: Request, agent: ReviewManager, session: SessionDep
) -> ReviewItemRead:
    """Take the item in hand (for a complaint, the DISP acknowledgement). Audited."""
    await reviews.acknowledge(session, audit_context(request, agent), review_id, at=clock.instant())
    return _read(await reviews.get_item(session, review_id))


@router.post("/reviews/{review_id}/assign", response_model=ReviewItemRead)
async def assign_review(
    review_id: ReviewId, body: ReviewAssign, request: Request, agent: ReviewManager, session: SessionDep
) -> ReviewItemRead:
    """Assign the item to a compliance user. Audited."""
    await reviews.assign(session, audit_context(request, agent), review_id, assignee_agent_id=body.assignee_agent_id)
    return _read(await reviews.get_item(session, review_id))


@router.post("/reviews/{review_id}/resolve", response_model=ReviewItemRead)
async def resolve_review(
    review_id: ReviewId, body: ReviewResolve, request: Request, agent: ReviewManager, session: SessionDep
) -> ReviewItemRead:
    """Close the item with what was done (a complaint's final response). Audited."""
    await reviews.resolve(
        session, audit_context(request, agent), review_id, resolution=body.resolution, at=clock.instant()
    )
    return _read(await reviews.get_item(session, review_id))


class ReviewCloseCustomer(BaseModel):
    reason: str = Field(min_length=1, max_length=dnc.REASON_MAX, description="Why the customer is closed (audited).")


@router.post("/reviews/{review_id}/close-customer", response_model=DoNotCallChange)
async def close_customer_from_review(
    review_id: ReviewId,
    body: ReviewCloseCustomer,
    request: Request,
    agent: ReviewManager,
    session: SessionDep,
    stores: StoresDep,
) -> DoNotCallChange:
    """Close the item's customer from the dialler: their number goes on the do-not-call list (source
    `complaint` for a complaint, else `review`) with the reason, audited against the item, and every
    customer with that number leaves the queues in this request."""
    item = (await reviews.get_item(session, review_id)).item
    user_id, kind = item.user_id, item.kind
    phone = await dnc.customer_number(stores.replica, user_id)
    source = "complaint" if kind == reviews.ReviewKind.COMPLAINT.value else "review"
    ctx = audit_context(request, agent)
    entry, changed = await dnc.add(session, ctx, phone=phone, reason=body.reason, source=source)
    await record_ctx(
        ctx,
        session=session,
        action="review.customer_closed",
        subject_type="review",
        subject_id=review_id,
        details={"user_id": user_id, "kind": kind, "source": entry.source, "newly_listed": changed},
    )
    await session.commit()
    replaced = await dnc.replace_holders(stores, phone)
    return DoNotCallChange(entry=DoNotCallRead.model_validate(entry), changed=changed, customers_replaced=replaced)


async def _flag_read(session: SessionDep, user_id: int) -> VulnerableFlagRead:
    flag = await flags.current(session, user_id)
    if flag is None:
        return VulnerableFlagRead(
            user_id=user_id,
            vulnerable=False,
            source=None,
            set_at=None,
            set_by_agent_id=None,
            cleared_at=None,
            cleared_by_agent_id=None,
        )
    return VulnerableFlagRead(
        user_id=user_id,
        vulnerable=flag.cleared_at is None,
        source=flag.source,
        set_at=flag.set_at,
        set_by_agent_id=flag.set_by_agent_id,
        cleared_at=flag.cleared_at,
        cleared_by_agent_id=flag.cleared_by_agent_id,
    )


@router.get("/customers/{user_id}/vulnerable", response_model=VulnerableFlagRead)
async def get_vulnerable_flag(user_id: UserIdPath, _: ReviewReader, session: SessionDep) -> VulnerableFlagRead:
    """The dialler's own vulnerable flag on the customer (who set it, when; cleared or standing)."""
    return await _flag_read(session, user_id)


@router.put("/customers/{user_id}/vulnerable", response_model=VulnerableFlagRead)
async def set_vulnerable_flag(
    user_id: UserIdPath,
    body: VulnerableFlagWrite,
    request: Request,
    agent: Annotated[Agent, Depends(require(Permission.CUSTOMER_FLAGS_MANAGE))],
    session: SessionDep,
    stores: StoresDep,
) -> VulnerableFlagRead:
    """Mark the customer vulnerable (only agents trained for vulnerable customers get them from now on,
    whatever the replica says) or clear the flag, with a reason. Audited; the queues follow at once."""
    changed = await flags.set_vulnerable(
        session,
        audit_context(request, agent),
        user_id,
        vulnerable=body.vulnerable,
        reason=body.reason,
        at=clock.instant(),
    )
    if changed:
        await recompute(stores, queue_engine(stores), [user_id])
    return await _flag_read(session, user_id)


DncManager = Annotated[Agent, Depends(require(Permission.DNC_MANAGE))]


@router.get("/do-not-call", response_model=DoNotCallPage)
async def list_do_not_call(
    _: DncManager,
    session: SessionDep,
    number: Annotated[str | None, Query(max_length=40, description="Digits the number contains.")] = None,
    source: Annotated[str | None, Query(pattern="^(tps|customer|agent|complaint|review)$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[str | None, Query(max_length=16)] = None,
) -> DoNotCallPage:
    """The do-not-call list in number order; search by digits, filter by source; page with `after`."""
    entries = await dnc.search(session, number=number, source=source, limit=limit, after=after)
    return DoNotCallPage(
        items=[DoNotCallRead.model_validate(e) for e in entries],
        next_after=entries[-1].phone_e164 if len(entries) == limit else None,
    )


@router.post("/do-not-call", response_model=DoNotCallChange)
async def add_do_not_call(
    body: DoNotCallAdd, request: Request, agent: DncManager, session: SessionDep, stores: StoresDep
) -> DoNotCallChange:
    """List a number, with a reason (audited). Every customer with that number leaves the queues in
    this request, and the compliance gate refuses any call or text to it from now on."""
    phone = dnc.valid_number(body.phone)
    entry, changed = await dnc.add(
        session, audit_context(request, agent), phone=phone, reason=body.reason, source=body.source
    )
    replaced = await dnc.replace_holders(stores, phone) if changed else 0
    return DoNotCallChange(entry=DoNotCallRead.model_validate(entry), changed=changed, customers_replaced=replaced)


@router.post("/do-not-call/remove", response_model=DoNotCallChange)
async def remove_do_not_call(
    body: DoNotCallRemove, request: Request, agent: DncManager, session: SessionDep, stores: StoresDep
) -> DoNotCallChange:
    """Take a number off the list, with a reason (a number the customer asked us not to call needs a
    full one). Audited; the customers with it are placed afresh in this request."""
    phone = dnc.valid_number(body.phone)
    entry = await dnc.remove(session, audit_context(request, agent), phone=phone, reason=body.reason)
    replaced = await dnc.replace_holders(stores, phone)
    return DoNotCallChange(entry=DoNotCallRead.model_validate(entry), changed=True, customers_replaced=replaced)


@router.post(
    "/do-not-call/tps",
    response_model=TpsLoadRead,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}, "text/plain": {"schema": {"type": "string"}}},
            "description": "The TPS/CTPS file: one number per line, or CSV with the number first.",
        }
    },
)
async def load_tps_file(request: Request, agent: DncManager, session: SessionDep, stores: StoresDep) -> TpsLoadRead:
    """Load a TPS/CTPS file, streamed: valid numbers are listed (source `tps`; loading it again adds
    nothing), invalid lines are reported by line number and the rest is loaded. Our calls are service
    calls, which the TPS does not bind; the product screens against it anyway, from the moment of
    loading. Customers with a newly listed number leave the queues in this request."""
    result = await dnc.load_tps_and_replace(stores, request.stream(), at=clock.instant())
    await record_ctx(
        audit_context(request, agent),
        session=session,
        action="dnc.tps_loaded",
        subject_type="do_not_call",
        details={"lines": result.lines, "loaded": result.loaded, "invalid": result.invalid_count},
    )
    await session.commit()
    return TpsLoadRead(
        lines=result.lines,
        loaded=result.loaded,
        already_listed=result.already_listed,
        invalid_count=result.invalid_count,
        invalid=[InvalidLine(line=n, reason=why) for n, why in result.invalid],
        customers_replaced=len(result.customers),
    )
