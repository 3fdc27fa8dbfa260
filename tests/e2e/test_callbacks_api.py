"""Callbacks over REST on the live API and the real worker: book, move and cancel with the workflow's
validation, answered with the next allowed slot when refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from temporalio.worker import Worker

from devstack.seed import seed_replica
from dialler.callbacks.models import Callback
from dialler.runtime import Stores
from tests.support.live_api import eventually, login

pytestmark = pytest.mark.e2e


async def mirror(stores: Stores, user_id: int) -> Callback | None:
    async with stores.sessions() as session:
        return await session.scalar(select(Callback).where(Callback.user_id == user_id).order_by(Callback.id.desc()))


async def test_a_supervisor_books_moves_and_cancels_a_callback(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_url: str
) -> None:
    await seed_replica(replica_url, users=10, seed=5)
    headers = await login(http, "sam@rmc.example")
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)  # the suite's clock: a weekday, 13:00

    booked = await http.post("/api/v1/callbacks", json={"user_id": 3, "due_at": due.isoformat()}, headers=headers)
    assert booked.status_code == 202, booked.text
    await eventually(lambda: _has(stores, 3, "scheduled", due))

    later = due + timedelta(hours=1)
    moved = await http.post("/api/v1/callbacks/3/reschedule", json={"due_at": later.isoformat()}, headers=headers)
    assert moved.status_code == 200, moved.text
    await eventually(lambda: _has(stores, 3, "scheduled", later))

    night = due + timedelta(hours=10)  # 23:00 in the suite's clock
    refused = await http.post("/api/v1/callbacks/3/reschedule", json={"due_at": night.isoformat()}, headers=headers)
    assert refused.status_code == 422 and "next allowed slot" in refused.json()["error"]["message"]
    nobody = await http.post("/api/v1/callbacks/4/reschedule", json={"due_at": later.isoformat()}, headers=headers)
    assert nobody.status_code == 404

    cancelled = await http.post("/api/v1/callbacks/3/cancel", json={"reason": "customer asked"}, headers=headers)
    assert cancelled.status_code == 202, cancelled.text
    await eventually(lambda: _has(stores, 3, "cancelled", later))


async def _has(stores: Stores, user_id: int, status: str, due_at: datetime) -> bool:
    row = await mirror(stores, user_id)
    return row is not None and row.status == status and row.due_at == due_at
