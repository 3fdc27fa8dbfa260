"""CallbackWorkflow on the real worker: fires on time for the booking agent, falls to the pool,
goes missed, moves and cancels, respects opt-outs, and survives a worker restart."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.callbacks import calling_hours
from activities.queues import queue_engine
from dialler import search_attributes
from dialler.agents.demo import ensure_demo_accounts
from dialler.callbacks.messages import (
    BookCallbackInput,
    CallbackTimings,
    CancelInput,
    RescheduleInput,
    callback_workflow_id,
)
from dialler.compliance.models import OptOut
from dialler.queues.rebuild import recompute
from dialler.replica.seed import seed_replica
from dialler.runtime import Stores
from tests.e2e.conftest import eventually
from workers import services
from workers.worker import build_worker
from workflows.callback import CallbackWorkflow


async def callable_customers(stores: Stores, replica_url: str, n: int = 1) -> list[int]:
    await seed_replica(replica_url, users=80, seed=5)
    engine = queue_engine(stores)
    await recompute(stores, engine, list(range(1, 81)))
    unsigned = sorted(await engine.snapshot("unsigned"))
    async with stores.sessions() as session:
        await ensure_demo_accounts(session)  # agent 1 (Priya) books
    return unsigned[:n]


async def book(client: Client, stores: Stores, user_id: int, in_s: float, **timings: int) -> WorkflowHandle:
    due = datetime.now(UTC) + timedelta(seconds=in_s)
    return await client.start_workflow(
        CallbackWorkflow.run,
        BookCallbackInput(
            user_id=user_id,
            due_at=due,
            booked_by_agent_id=1,
            hours=calling_hours(stores.settings),
            timings=CallbackTimings(**({"grace_s": 600, "expiry_s": 7200, "rebook_missed": False} | timings)),
        ),
        id=callback_workflow_id(user_id),
        task_queue=stores.settings.temporal_task_queue,
    )


async def status(handle: WorkflowHandle) -> str:
    return (await handle.query(CallbackWorkflow.view)).status


async def test_fires_on_time_for_the_booking_agent_then_the_pool_then_missed(
    temporal_client: Client, worker: Worker, stores: Stores, replica_url: str
) -> None:
    [user_id] = await callable_customers(stores, replica_url)
    engine = queue_engine(stores)
    handle = await book(temporal_client, stores, user_id, in_s=2, grace_s=2, expiry_s=4)
    due = (await handle.query(CallbackWorkflow.view)).due_at

    async def held_out() -> bool:  # booked: no other queue calls the customer before the time
        return await engine.position(user_id) is None

    await eventually(held_out, within=2, every=0.05)

    async def in_callbacks() -> float | None:
        position = await engine.position(user_id)
        return time.time() if position and position[0] == "callbacks" else None

    fired_at = await eventually(in_callbacks, within=10, every=0.05)
    assert fired_at - due.timestamp() < 1.0  # within a second of the booked time
    reservation = await stores.redis.hget(engine.keys.reservations, str(user_id))
    assert reservation is not None and reservation.startswith("1|")  # reserved for the booking agent
    assert await engine.next_call(agent_id=2, queues=["callbacks"], trained_vulnerable=True, now=time.time()) is None

    await eventually(lambda: _status_is(handle, "open"), within=10)

    async def open_to_all() -> bool:  # any callback agent now
        return await stores.redis.hget(engine.keys.reservations, str(user_id)) is None

    await eventually(open_to_all, within=5, every=0.05)

    assert await handle.result() == "missed"
    assert (await engine.position(user_id) or ("",))[0] == "unsigned"  # back to the customer's own queue


async def _status_is(handle: WorkflowHandle, wanted: str) -> bool:
    return await status(handle) == wanted


async def test_reschedule_is_validated_and_cancel_takes_the_customer_out(
    temporal_client: Client, worker: Worker, stores: Stores, replica_url: str
) -> None:
    [user_id] = await callable_customers(stores, replica_url)
    handle = await book(temporal_client, stores, user_id, in_s=3600)
    offset = timedelta(seconds=stores.settings.clock_offset_s)
    # 23:00 UK time on the compliance clock's day: outside calling hours.
    late = (datetime.now(UTC) + offset).astimezone(calling_tz()).replace(hour=23, minute=0) - offset

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(CallbackWorkflow.reschedule, RescheduleInput(late))
    assert "next allowed slot" in refused.value.cause.message  # type: ignore[union-attr]

    moved = datetime.now(UTC) + timedelta(hours=2)
    view = await handle.execute_update(CallbackWorkflow.reschedule, RescheduleInput(moved))
    assert view.due_at == moved and view.status == "scheduled"

    await handle.signal(CallbackWorkflow.cancel, CancelInput("customer will call us"))
    assert await handle.result() == "cancelled"
    async with stores.postgres.connect() as conn:
        from sqlalchemy import text

        row = (
            await conn.execute(text("SELECT status, reason FROM callbacks WHERE user_id = :u"), {"u": user_id})
        ).one()
    assert tuple(row) == ("cancelled", "customer will call us")


def calling_tz():  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    return ZoneInfo("Europe/London")


async def test_a_callback_due_for_a_customer_who_opted_out_is_cancelled(
    temporal_client: Client, worker: Worker, stores: Stores, replica_url: str
) -> None:
    [user_id] = await callable_customers(stores, replica_url)
    handle = await book(temporal_client, stores, user_id, in_s=1.5)
    from sqlalchemy import text

    from dialler.customers.context import load_context  # the customer's number, as the gate sees it
    from dialler.queues.phones import normalise_phone

    async with stores.replica.connect() as conn:
        raw = await conn.scalar(text("SELECT phone_number FROM users WHERE id = :u"), {"u": user_id})
    async with stores.sessions() as session:
        session.add(OptOut(phone_e164=normalise_phone(raw).e164, user_id=user_id, keyword="STOP"))
        await session.commit()
    del load_context

    assert await handle.result() == "cancelled"
    assert (
        (await handle.query(CallbackWorkflow.view)).history[-1].endswith("cancelled: the customer opted out (SMS STOP)")
    )
    assert await queue_engine(stores).position(user_id) is None


async def test_worker_restart_while_timers_are_pending_fires_each_callback_exactly_once(
    temporal_client: Client, stores: Stores, replica_url: str, telephony
) -> None:  # type: ignore[no-untyped-def]
    users = await callable_customers(stores, replica_url, n=3)
    task_queue = stores.settings.temporal_task_queue
    async with build_worker(temporal_client, stores, telephony, task_queue=task_queue):
        handles = [await book(temporal_client, stores, u, in_s=2) for u in users]
    await asyncio.sleep(3)  # every callback falls due while no worker runs

    async with build_worker(temporal_client, stores, telephony, task_queue=task_queue):
        for handle in handles:
            await eventually(lambda h=handle: _status_is(h, "due"), within=15)
        engine = queue_engine(stores)

        async def all_queued() -> bool:
            return sorted(await engine.snapshot("callbacks")) == sorted(users)

        await eventually(all_queued, within=10)
        for handle in handles:
            checks = [
                e
                async for e in handle.fetch_history_events()
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                and e.activity_task_scheduled_event_attributes.activity_type.name == "check_due"
            ]
            assert len(checks) == 1


async def test_a_callback_days_ahead_fires_with_time_skipping(stores: Stores, replica_url: str, telephony) -> None:  # type: ignore[no-untyped-def]
    [user_id] = await callable_customers(stores, replica_url)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(services.VENV_BIN / "temporal-test-server")
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace="default",
            search_attributes={key.name: key.indexed_value_type for key in search_attributes.ALL},  # type: ignore[misc]
        )
    )
    try:
        async with build_worker(
            env.client, stores, telephony, task_queue="skip-" + stores.settings.temporal_task_queue
        ):
            handle = await env.client.start_workflow(
                CallbackWorkflow.run,
                BookCallbackInput(
                    user_id=user_id,
                    due_at=datetime.now(UTC) + timedelta(days=3),
                    booked_by_agent_id=1,
                    hours=calling_hours(stores.settings),
                    timings=CallbackTimings(grace_s=600, expiry_s=7200, rebook_missed=False),
                ),
                id=callback_workflow_id(user_id),
                task_queue="skip-" + stores.settings.temporal_task_queue,
            )
            # Three days and two hours pass in seconds.
            assert await asyncio.wait_for(handle.result(), 60) == "missed"
            statuses = [
                e.activity_task_scheduled_event_attributes.activity_type.name
                async for e in handle.fetch_history_events()
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            ]
            assert statuses.count("check_due") == 1 and statuses.count("requeue") == 4  # booked, due, open, missed
    finally:
        await env.shutdown()


async def test_booking_again_moves_the_live_callback_without_waiting_for_a_worker(
    temporal_client: Client, worker: Worker, stores: Stores, replica_url: str
) -> None:
    from activities.callbacks import book_callback

    [user_id] = await callable_customers(stores, replica_url)
    first = datetime.now(UTC) + timedelta(hours=1)
    second = datetime.now(UTC) + timedelta(hours=2)

    handle = await book_callback(temporal_client, stores.settings, BookCallbackInput(user_id, first, 1))
    await eventually(lambda: _due_is(handle, first))
    again = await book_callback(temporal_client, stores.settings, BookCallbackInput(user_id, second, 1))

    assert again.id == handle.id == callback_workflow_id(user_id)  # one live callback per customer
    await eventually(lambda: _due_is(handle, second))
    assert (await handle.query(CallbackWorkflow.view)).status == "scheduled"


async def _due_is(handle: WorkflowHandle, due: datetime) -> bool:
    return (await handle.query(CallbackWorkflow.view)).due_at == due
