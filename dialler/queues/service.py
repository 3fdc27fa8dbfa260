"""Queue read services for the API: explain a customer, list the not-callable ones."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from dialler.compliance import gate, gates
from dialler.queues import facts as facts_
from dialler.queues.eligibility import INVALID_PHONE_PREFIX, classify
from dialler.queues.explain import Explanation, explain
from dialler.queues.phones import normalise_phone
from dialler.queues.placement import contact_facts
from dialler.queues.scoring import queue_score


async def explain_customer(
    *,
    replica: AsyncEngine,
    postgres: AsyncEngine,
    user_id: int,
    now: datetime,
    rules: gates.CallingRules,
    offset: timedelta = timedelta(0),
) -> Explanation | None:
    """Why ``user_id`` is (not) queued at the real instant ``now``. Every gate is judged on the
    business clock (``dialler.clock``: ``now + offset``, the stored attempts moved by the same
    offset), so calling hours and the gap since the last call are read in one frame; the texts name
    times on that clock, and ``until`` comes back as a real instant."""
    async with replica.connect() as conn:
        found = await facts_.replica_facts_for_ids(conn, [user_id])
    if not found:
        return None
    customer = found[0]
    phone = normalise_phone(customer.phone_raw).e164
    async with postgres.connect() as conn:
        known = await facts_.dialler_facts(
            conn, now=now, phones=[phone] if phone else [], user_ids=[user_id], abandoned_window=rules.abandoned_cooloff
        )
    callback = known.callbacks.get(user_id)
    placement = classify(replace(customer, has_live_callback_due=callback is not None))
    if placement.queue is None or phone is None:
        return explain(customer, placement, [], None)
    business_now = now + offset
    answer = gate.check(
        _on_business_clock(contact_facts(customer, known, phone), offset),
        channel=gate.Channel.VOICE,
        at=business_now,
        rules=rules,
    )
    score = queue_score(
        placement.queue,
        attempts_total=known.attempts_total.get(user_id, 0),
        oldest_active_claim_at=customer.oldest_active_claim_at,
        pending_requirements=customer.pending_requirements,
        user_id=user_id,
        due_at=callback.due_at if callback else None,
    )
    found_out = explain(customer, placement, answer.checks, score, next_allowed_at=answer.next_allowed_at)
    return found_out if found_out.until is None else replace(found_out, until=found_out.until - offset)


def _on_business_clock(facts: gate.ContactFacts, offset: timedelta) -> gate.ContactFacts:
    """The stored instants moved onto the business clock, so the gap since a call is read in one frame."""
    if not offset:
        return facts
    return replace(
        facts,
        attempts=tuple(at + offset for at in facts.attempts),
        number_attempts=tuple(at + offset for at in facts.number_attempts),
        last_abandoned_at=None if facts.last_abandoned_at is None else facts.last_abandoned_at + offset,
    )


_PAGE = text(
    "SELECT id, phone_number FROM users WHERE id > :after AND deleted_at IS NULL AND is_enabled = 1"
    " AND status IN ('active', 'vulnerable') ORDER BY id LIMIT :n"
)


async def not_callable(
    *, replica: AsyncEngine, after: int, limit: int, scan_limit: int = 20_000
) -> tuple[list[dict], int]:
    """Callable-status customers whose phone number cannot be called, with the reason; paged by id.
    Returns the rows and the id to continue after (scans at most ``scan_limit`` users per call)."""
    rows: list[dict] = []
    last = after
    async with replica.connect() as conn:
        page = (await conn.execute(_PAGE, {"after": after, "n": scan_limit})).all()
    for user_id, raw in page:
        last = user_id
        check = normalise_phone(raw)
        if not check.ok:
            rows.append(
                {"user_id": user_id, "reason": f"{INVALID_PHONE_PREFIX}{check.reason}", "detail": check.reason_text}
            )
            if len(rows) >= limit:
                break
    return rows, last
