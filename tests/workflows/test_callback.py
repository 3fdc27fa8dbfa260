"""CallbackWorkflow on the real worker: prepared ahead of its time, callable by the booking agent from
the due second (the queue, not a timer, sees to it), falls to the pool after the grace, goes missed,
moves and cancels (also inside the prepare window), respects opt-outs, and survives a worker restart."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from devstack import services
from devstack.demo import ensure_demo_accounts
from devstack.seed import seed_replica
from dialler import search_attributes
from dialler.callbacks.messages import (
    BookCallbackInput,
    CallbackTimings,
    CancelInput,
    RescheduleInput,
    callback_workflow_id,
)
from dialler.callbacks.rules import calling_hours
from dialler.compliance.models import OptOut
from dialler.config import Settings
from dialler.queues.rebuild import recompute
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from dialler.security.codec import data_converter
from tests.support.live_api import eventually
from workers.worker import build_worker
from workflows.callback import CallbackWorkflow

GRACE_S = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A short grace: the queue reserves a due callback for its owner for the settings' grace (the
    workflow's timings carry the same value when booked through book_callback)."""
    return settings.model_copy(update={"callback_grace_s": GRACE_S})


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


async def activities_run(handle: WorkflowHandle) -> list[str]:
    """The activities in a workflow's history, local ones (recorded as markers) included, in order."""
    names = []
    async for e in handle.fetch_history_events():
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            names.append(e.activity_task_scheduled_event_attributes.activity_type.name)
        elif (
            e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
            and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
        ):
            marker = json.loads(e.marker_recorded_event_attributes.details["data"].payloads[0].data)
            names.append(marker["activity_type"])
    return names


async def status(handle: WorkflowHandle) -> str:
    return (await handle.query(CallbackWorkflow.view)).status


async def test_callable_by_the_booking_agent_from_the_due_second_then_by_anyone_after_the_grace(
    temporal_client: Client, worker: Worker, stores: Stores, replica_url: str
) -> None:
    users = await callable_customers(stores, replica_url, n=2)
    engine = queue_engine(stores)
    due_in, grace = 4.0, GRACE_S
    handles = [await book(temporal_client, stores, u, in_s=due_in, grace_s=grace, expiry_s=6) for u in users]
    due_at = {u: (await h.query(CallbackWorkflow.view)).due_at.timestamp() for u, h in zip(users, handles, strict=True)}
    due = min(due_at.values())

    async def prepared() -> bool:  # in the callbacks queue ahead of the time, not callable yet
        return sorted(await engine.snapshot("callbacks")) == sorted(users)

    await eventually(prepared, within=due_in - 1, every=0.05)
    prepared_at = time.time()
    assert prepared_at < due - 0.5
    reservations = await stores.redis.hmget(engine.keys.reservations, [str(u) for u in users])
    assert all(r is not None and r.startswith("1|") for r in reservations)  # reserved for the booking agent

    async def offer(agent: int) -> tuple[float, int] | None:
        now = time.time()
        lease = await engine.next_call(agent_id=agent, queues=["callbacks"], trained_vulnerable=True, now=now)
        return (now, lease.user_id) if lease is not None else None

    # The booking agent asks from before the due time: nothing until the due second, then at once.
    refused_before_due = 0

    async def owner_offered() -> tuple[float, int] | None:
        nonlocal refused_before_due
        got = await offer(1)
        refused_before_due += got is None and time.time() < due
        return got

    taken_at, first = await eventually(owner_offered, within=due_in + 5, every=0.02)
    assert refused_before_due > 0
    assert due_at[first] <= taken_at < due_at[first] + 1.0  # within a second of the booked time, never before

    # Another agent is not given the other customer during the grace period, and is after it.
    [second] = [u for u in users if u != first]
    other_at, other = await eventually(lambda: offer(2), within=grace + 6, every=0.05)
    assert other == second
    assert due_at[second] + grace <= other_at < due_at[second] + grace + 1.0

    for user_id in users:  # both calls end without an outcome: the customers leave the queues
        lease = await engine.lease_of(user_id)
        assert lease is not None
        await engine.release(user_id=user_id, token=lease.token, requeue=None, now=time.time())
    for handle in handles:
        assert await handle.result() == "missed"
    for user_id in users:
        assert (await engine.position(user_id) or ("",))[0] == "unsigned"  # back to the customer's own queue


async def test_due_then_open_then_missed_and_back_to_the_customer_own_queue(
    temporal_client: Client, worker: Worker, stores: Stores, replica_url: str
) -> None:
    [user_id] = await callable_customers(stores, replica_url)
    engine = queue_engine(stores)
    handle = await book(temporal_client, stores, user_id, in_s=3, grace_s=GRACE_S, expiry_s=6)

    async def in_callbacks() -> bool:
        return (await engine.position(user_id) or ("",))[0] == "callbacks"

    await eventually(in_callbacks, within=3, every=0.05)  # prepared ahead of the time
    await eventually(lambda: _status_is(handle, "due"), within=10)

    async def mirrored_due() -> bool:  # the bookkeeping that follows the due time
        from sqlalchemy import text

        async with stores.postgres.connect() as conn:
            status = await conn.scalar(text("SELECT status FROM callbacks WHERE user_id = :u"), {"u": user_id})
        return status == "due"

    await eventually(mirrored_due, within=GRACE_S, every=0.05)
    await eventually(lambda: _status_is(handle, "open"), within=10)
    assert await in_callbacks()  # still there, now for any callback agent

    assert await handle.result() == "missed"
    assert (await engine.position(user_id) or ("",))[0] == "unsigned"  # back to the customer's own queue


async def test_cancel_or_reschedule_inside_the_prepare_window_takes_the_customer_out_of_the_queue(
    temporal_client: Client, worker: Worker, stores: Stores, replica_url: str
) -> None:
    first, second = await callable_customers(stores, replica_url, n=2)
    engine = queue_engine(stores)
    cancelled = await book(temporal_client, stores, first, in_s=90)  # inside the 300 s window
    moved = await book(temporal_client, stores, second, in_s=90)

    async def both_prepared() -> bool:
        return sorted(await engine.snapshot("callbacks")) == sorted([first, second])

    await eventually(both_prepared, within=10, every=0.05)

    await cancelled.signal(CallbackWorkflow.cancel, CancelInput("customer will call us"))
    assert await cancelled.result() == "cancelled"
    assert (await engine.position(first) or ("",))[0] == "unsigned"  # back to the customer's own queue

    later = datetime.now(UTC) + timedelta(hours=2)  # out of the window: held out of every queue again
    view = await moved.execute_update(CallbackWorkflow.reschedule, RescheduleInput(later))
    assert view.status == "scheduled"

    async def held_out() -> bool:
        return await engine.position(second) is None

    await eventually(held_out, within=5, every=0.05)
    await moved.signal(CallbackWorkflow.cancel, CancelInput("test over"))
    assert await moved.result() == "cancelled"


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


async def test_a_customer_who_opted_out_after_booking_is_cancelled_when_the_callback_is_prepared(
    temporal_client: Client, worker: Worker, stores: Stores, replica_url: str
) -> None:
    [user_id] = await callable_customers(stores, replica_url)
    # Due in 20 s, prepared 16 to 8 s before it: the compliance check runs 4 to 12 s after booking.
    handle = await book(temporal_client, stores, user_id, in_s=20, prepare_s=16)
    booked_at = time.monotonic()
    from sqlalchemy import text

    from dialler.queues.phones import normalise_phone

    async with stores.replica.connect() as conn:
        raw = await conn.scalar(text("SELECT phone_number FROM users WHERE id = :u"), {"u": user_id})
    async with stores.sessions() as session:
        session.add(OptOut(phone_e164=normalise_phone(raw).e164, user_id=user_id, keyword="STOP"))
        await session.commit()

    assert await handle.result() == "cancelled"
    assert time.monotonic() - booked_at < 18  # at preparation, before the due time
    assert (
        (await handle.query(CallbackWorkflow.view)).history[-1].endswith("cancelled: the customer opted out (SMS STOP)")
    )
    assert await queue_engine(stores).position(user_id) is None
    async with stores.postgres.connect() as conn:
        reason = await conn.scalar(text("SELECT reason FROM callbacks WHERE user_id = :u"), {"u": user_id})
    assert reason == "the customer opted out (SMS STOP)"


async def test_worker_restart_while_timers_are_pending_fires_each_callback_exactly_once(
    temporal_client: Client, stores: Stores, replica_url: str, telephony
) -> None:  # type: ignore[no-untyped-def]
    users = await callable_customers(stores, replica_url, n=3)
    engine = queue_engine(stores)
    task_queue = stores.settings.temporal_task_queue

    async def all_queued() -> bool:
        return sorted(await engine.snapshot("callbacks")) == sorted(users)

    async with build_worker(temporal_client, stores, telephony, task_queue=task_queue):
        handles = [await book(temporal_client, stores, u, in_s=3) for u in users]
        await eventually(all_queued, within=3, every=0.05)  # prepared ahead of the time
    await asyncio.sleep(3.5)  # every callback falls due while no worker runs

    # No worker, yet the booking agent can take each customer: the queue made them callable.
    now = time.time()
    not_before = await stores.redis.hmget(engine.keys.not_before, [str(u) for u in users])
    assert all(nb is not None and float(nb) <= now for nb in not_before)

    async with build_worker(temporal_client, stores, telephony, task_queue=task_queue):
        for handle in handles:
            await eventually(lambda h=handle: _status_is(h, "due"), within=15)
        await eventually(all_queued, within=10)
        for handle in handles:
            assert (await activities_run(handle)).count("prepare") == 1


async def test_a_callback_days_ahead_fires_with_time_skipping(stores: Stores, replica_url: str, telephony) -> None:  # type: ignore[no-untyped-def]
    [user_id] = await callable_customers(stores, replica_url)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(services.VENV_BIN / "temporal-test-server"),
        data_converter=data_converter(stores.settings),
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
            ran = await activities_run(handle)
            # One compliance check (ahead of the due time); one activity per status: scheduled, due, open,
            # missed; all local (no activity task round trips).
            assert ran.count("prepare") == 1 and ran.count("transition") == 4
            assert not {"check_due", "mirror", "requeue"} & set(ran)
    finally:
        await env.shutdown()


async def test_booking_again_moves_the_live_callback_without_waiting_for_a_worker(
    temporal_client: Client, worker: Worker, stores: Stores, replica_url: str
) -> None:
    from workflows.callback_client import book_callback

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
