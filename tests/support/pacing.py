"""Calls on record for the abandoned-rate tests: sessions with their attempts and outcomes, written
as the product writes them (answered_at from the carrier, the attempt's result, the agent's outcome);
and a queue's pacer started the way a supervisor starts it."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert

from dialler.calls.models import CallOutcome, CallSession, ContactAttempt
from dialler.runtime import Stores
from tests.support.live_api import login

_users = itertools.count(700_000)


async def seed_call(
    stores: Stores,
    *,
    queue: str,
    at: datetime,
    answered: bool = True,
    result: str | None = None,
    abandoned: bool = False,
    disposition: str | None = None,
    end_reason: str | None = None,
) -> None:
    """One call session started at ``at`` (a real instant) in ``queue``; with an ``end_reason`` (the
    carrier's), one the pacer's estimates learn from."""
    user_id = next(_users)
    session_id = uuid.uuid4()
    async with stores.postgres.begin() as conn:
        await conn.execute(
            insert(CallSession).values(
                id=session_id,
                workflow_id=f"call-{user_id}",
                user_id=user_id,
                queue=queue,
                phone_e164="+447700900555",
                status="closed",
                progressive=True,
                started_at=at,
                answered_at=at + timedelta(seconds=5) if answered else None,
                ended_at=at + timedelta(minutes=2),
                closed_at=at + timedelta(minutes=3),
                end_reason=end_reason,
            )
        )
        if result is not None:
            await conn.execute(
                insert(ContactAttempt).values(
                    user_id=user_id,
                    phone_e164="+447700900555",
                    call_session_id=session_id,
                    result=result,
                    abandoned=abandoned,
                    attempted_at=at + timedelta(seconds=6),
                )
            )
        if disposition is not None:
            await conn.execute(
                insert(CallOutcome).values(
                    call_session_id=session_id,
                    user_id=user_id,
                    disposition=disposition,
                    recorded_at=at + timedelta(minutes=3),
                )
            )


async def seed_calls(stores: Stores, *, queue: str, at: datetime, live: int = 0, abandoned: int = 0) -> None:
    """``live`` calls put through to an agent and ``abandoned`` calls nobody took within 2 s."""
    for _ in range(live):
        await seed_call(stores, queue=queue, at=at, result="docs_promised", disposition="docs_promised")
    for _ in range(abandoned):
        await seed_call(stores, queue=queue, at=at, result="abandoned", abandoned=True, disposition="no_outcome")


async def run_pacer(
    base_url: str, queue: str, *, mode: str = "progressive", supervisor: str = "sam@rmc.example", **settings: Any
) -> dict[str, str]:
    """As a supervisor through the API: set ``queue``'s pacing mode (and any other setting: max_ratio,
    ceiling) and start its pacer. The supervisor's headers, for more."""
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as http:
        headers = await login(http, supervisor)
        saved = await http.put(
            f"/api/v1/pacing/queues/{queue}/settings", json={"mode": mode, **settings}, headers=headers
        )
        assert saved.status_code == 200, saved.text
        started = await http.post(f"/api/v1/pacing/queues/{queue}/start", headers=headers)
        assert started.status_code == 202, started.text
    return headers
