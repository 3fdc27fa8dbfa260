"""Nothing lost, nobody double-booked, under crashes (issue 19): an outcome answered 2xx while the
worker is SIGKILLed is applied exactly once when a worker comes back, even after the wrap-up limit;
a next call that meets a customer whose session is still open skips them instead of a 409 loop.

The real API over HTTP, the real worker in a process of its own (so that it can be SIGKILLed), the
Temporal dev server, PostgreSQL, Redis and MariaDB, with the simulated carrier's signed webhooks."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio.client import Client
from temporalio.worker import Worker

from devstack import services
from dialler.calls import received
from dialler.calls.messages import OutcomeAccepted, OutcomeInput, call_workflow_id
from dialler.calls.view import update_view
from dialler.config import Settings
from dialler.integrations.twilio import TwilioTelephony
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.call_sessions import queue_one_customer, start_available
from tests.support.journeys import talk_then_hang_up
from tests.support.live_api import eventually
from tests.support.proxy import CuttableProxy
from tests.support.worker_process import WorkerProcess
from workers.worker import build_worker
from workflows import call_session_client

pytestmark = pytest.mark.e2e

WRAP_UP_S = 30  # the shortest wrap-up the settings allow: the worker stays down longer than this


@pytest.fixture
def settings(settings: Settings, temporal_link: CuttableProxy) -> Settings:
    """The API's settings: a short wrap-up, and Temporal through the cuttable link."""
    return settings.model_copy(
        update={"wrap_up_timeout_s": WRAP_UP_S, "temporal_address": f"127.0.0.1:{temporal_link.port}"}
    )


async def _next_call(http: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    """Next call, as the agent's screen asks it: the API's first link to Temporal goes through the test's
    proxy, which this test's event loop serves, and may have timed out while fixtures held the loop;
    like any client, honour Retry-After."""
    for _ in range(10):
        answer = await http.post("/api/v1/agents/me/next-call", headers=headers)
        if answer.status_code != 503:
            break
        await asyncio.sleep(float(answer.headers["Retry-After"]))
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _worker_process(group: services.ProcessGroup, settings: Settings) -> WorkerProcess:
    """The production worker in a process of its own (SIGKILL-able), once it polls."""
    worker = WorkerProcess(group, f"worker-{uuid.uuid4().hex[:6]}", settings)
    await asyncio.to_thread(worker.wait_logged, "worker polling task queue")
    return worker


async def _presence(http: httpx.AsyncClient, headers: dict[str, str]) -> str:
    state: str = (await http.get("/api/v1/agents/me/presence", headers=headers)).json()["state"]
    return state


@pytest.mark.parametrize("temporal_reachable", [True, False], ids=["worker-killed", "worker-killed-and-temporal-cut"])
async def test_do_not_call_posted_while_the_worker_is_killed_past_wrap_up_is_applied_once(
    temporal_reachable: bool,
    http: httpx.AsyncClient,
    stores: Stores,
    settings: Settings,
    replica_url: str,
    temporal_client: Client,
    temporal_link: CuttableProxy,
    telephony: TwilioTelephony,
    process_group: services.ProcessGroup,
) -> None:
    """Worker killed: Temporal holds the Update and a signal until a worker comes back. Temporal cut
    from the API as well: neither reaches it, and the session finds the kept outcome at wrap-up's end."""
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")
    direct = temporal_client.service_client.config.target_host
    worker_settings = settings.model_copy(update={"temporal_address": direct})
    worker = await _worker_process(process_group, worker_settings)
    try:
        offered = await _next_call(http, headers)
        session_id, user_id = offered["session_id"], offered["customer"]["user_id"]
        await talk_then_hang_up(http, headers, session_id)
        call = (await http.get(f"/api/v1/calls/{session_id}", headers=headers)).json()
        wrap_up_ends = datetime.fromisoformat(call["wrap_up_deadline"])

        await asyncio.to_thread(worker.kill)  # SIGKILL, in wrap-up: no worker polls the session's task queue
        if not temporal_reachable:
            await temporal_link.cut()

        url = f"/api/v1/calls/{session_id}/outcome"
        posted = await http.post(
            url, json={"disposition": "do_not_call", "notes": "asked us to stop"}, headers=headers, timeout=30
        )
        assert posted.status_code == 202, posted.text
        assert (posted.json()["disposition"], posted.json()["kept"]) == ("do_not_call", True)
        # The agent's second click (no answer seen) is the same request, not a second outcome...
        again = await http.post(url, json={"disposition": "do_not_call", "notes": "asked us to stop"}, headers=headers)
        assert again.status_code == 202, again.text
        # ...and a different outcome for the same call is refused: one outcome per call.
        other = await http.post(url, json={"disposition": "busy"}, headers=headers)
        assert other.status_code == 409, other.text

        if not temporal_reachable:
            await temporal_link.restore()
        # The worker stays down past the wrap-up limit (the session's timer fires with nobody to run it).
        await asyncio.sleep(max(0.0, (wrap_up_ends - datetime.now(UTC)).total_seconds()) + 3)
        assert (await _presence(http, headers)) == "wrap_up"

        # A worker comes back: the session resumes and takes the kept outcome.
        worker = await _worker_process(process_group, worker_settings)
        handle = temporal_client.get_workflow_handle(call_workflow_id(user_id), result_type=OutcomeAccepted)
        result = await asyncio.wait_for(handle.result(), 60)
        if os.environ.get("RECORD_HISTORY_TO"):  # how tests/workflows/histories/call-session-new-kept-*.json were made
            name = f"call-session-new-kept-outcome-{'signalled' if temporal_reachable else 'found'}.json"
            history = (await handle.fetch_history()).to_json()
            await asyncio.to_thread((Path(os.environ["RECORD_HISTORY_TO"]) / name).write_text, history)
        assert result.disposition == "do_not_call"
        assert await _presence(http, headers) == "available"
    finally:
        if worker.proc.poll() is None:
            await asyncio.to_thread(worker.kill)

    async with stores.postgres.connect() as conn:
        outcomes = (await conn.execute(text("SELECT disposition, notes FROM call_outcomes"))).all()
        session = (await conn.execute(text("SELECT status, phone_e164 FROM call_sessions"))).one()
        listed = (
            await conn.execute(text("SELECT source, reason FROM do_not_call WHERE user_id = :u"), {"u": user_id})
        ).all()
        attempts = await conn.scalar(text("SELECT count(*) FROM contact_attempts"))
        kept = (await conn.execute(text("SELECT claimed_at, notes FROM received_outcomes"))).one()
    assert [tuple(o) for o in outcomes] == [("do_not_call", "asked us to stop")]  # once, and not no_outcome
    assert session.status == "closed"
    assert [tuple(row) for row in listed] == [("agent", "do_not_call")]  # the number is on do-not-call, once
    assert attempts == 1
    assert kept.claimed_at is not None and kept.notes is None  # applied: the notes live in call_outcomes alone
    engine = queue_engine(stores)
    assert await engine.lease_of(user_id) is None and await engine.position(user_id) is None  # never called again


async def test_a_customer_skipped_before_any_worker_ran_the_session_is_skipped_once_one_does(
    http: httpx.AsyncClient,
    stores: Stores,
    replica_url: str,
    temporal_client: Client,
    telephony: TwilioTelephony,
) -> None:
    """No worker has run the session yet (it has no row in PostgreSQL, only its view): the agent's
    outcome is still kept (202), and applied when a worker starts."""
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")
    offered = await _next_call(http, headers)
    session_id, user_id = offered["session_id"], offered["customer"]["user_id"]

    skipped = await http.post(
        f"/api/v1/calls/{session_id}/outcome", json={"disposition": "wrong_number"}, headers=headers
    )
    assert skipped.status_code == 202, skipped.text

    async with build_worker(temporal_client, stores, telephony, task_queue=stores.settings.temporal_task_queue):
        handle = temporal_client.get_workflow_handle(call_workflow_id(user_id), result_type=OutcomeAccepted)
        assert (await asyncio.wait_for(handle.result(), 30)).disposition == "wrong_number"
    async with stores.postgres.connect() as conn:
        assert (await conn.execute(text("SELECT disposition FROM call_outcomes"))).scalars().all() == ["wrong_number"]
    assert await _presence(http, headers) == "available"


async def test_a_session_told_of_a_kept_outcome_takes_it_at_once(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_url: str, temporal_client: Client
) -> None:
    """The signal the API sends when its Update times out: the session (here still reserved: the agent
    skips the customer) takes the kept outcome then, not at the end of the preview or wrap-up."""
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")
    offered = await _next_call(http, headers)
    session_id, user_id = offered["session_id"], offered["customer"]["user_id"]
    lease = await queue_engine(stores).lease_of(user_id)
    assert lease is not None
    async with stores.sessions() as session:
        skip = OutcomeInput(agent_id=lease.agent_id, disposition="wrong_number", notes="not the customer")
        assert await received.keep(session=session, session_id=session_id, outcome=skip, at=datetime.now(UTC))
        await session.commit()

    told = time.monotonic()
    await call_session_client.outcome_received(temporal_client, call_workflow_id(user_id))
    handle = temporal_client.get_workflow_handle(call_workflow_id(user_id), result_type=OutcomeAccepted)
    assert (await asyncio.wait_for(handle.result(), 30)).disposition == "wrong_number"
    assert time.monotonic() - told < stores.settings.preview_limit_s  # taken when told, not at the limit
    if os.environ.get(
        "RECORD_HISTORY_TO"
    ):  # how tests/workflows/histories/call-session-new-kept-outcome-told.json was made
        history = (await handle.fetch_history()).to_json()
        await asyncio.to_thread(
            (Path(os.environ["RECORD_HISTORY_TO"]) / "call-session-new-kept-outcome-told.json").write_text, history
        )
    async with stores.postgres.connect() as conn:
        outcomes = (await conn.execute(text("SELECT disposition, notes FROM call_outcomes"))).all()
    assert [tuple(o) for o in outcomes] == [("wrong_number", "not the customer")]
    assert await _presence(http, headers) == "available"


async def test_an_outcome_the_session_refuses_is_never_kept_and_a_repeat_is_the_same_request(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_url: str, temporal_client: Client
) -> None:
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")
    offered = await _next_call(http, headers)
    session_id, user_id = offered["session_id"], offered["customer"]["user_id"]
    url = f"/api/v1/calls/{session_id}/outcome"

    async def kept() -> list[tuple[str, bool]]:
        async with stores.postgres.connect() as conn:
            rows = await conn.execute(text("SELECT disposition, claimed_at IS NOT NULL FROM received_outcomes"))
            return [(r[0], r[1]) for r in rows]

    # Never dialled: "no answer" is refused by the view's facts, and nothing is kept.
    never_rung = await http.post(url, json={"disposition": "no_answer"}, headers=headers)
    assert never_rung.status_code == 422, never_rung.text
    assert await kept() == []
    # A view lagging the session (it says answered; the session knows better): the API keeps the
    # outcome, the session refuses it, and the API withdraws it before answering: never applied later.
    await update_view(stores.redis, stores.settings, session_id, answered=True)
    lagging = await http.post(url, json={"disposition": "not_interested"}, headers=headers)
    assert lagging.status_code == 422 and "answered" in lagging.text, lagging.text
    assert await kept() == []

    taken = await http.post(url, json={"disposition": "wrong_number"}, headers=headers)
    assert taken.status_code == 200, taken.text
    handle = temporal_client.get_workflow_handle(call_workflow_id(user_id), result_type=OutcomeAccepted)
    assert (await handle.result()).disposition == "wrong_number"
    repeat = await http.post(url, json={"disposition": "wrong_number"}, headers=headers)
    assert repeat.status_code == 200, repeat.text  # the same request, answered the same
    different = await http.post(url, json={"disposition": "busy"}, headers=headers)
    assert different.status_code in (404, 409), different.text
    assert await kept() == [("wrong_number", True)]
    async with stores.postgres.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM call_outcomes")) == 1


async def test_next_call_skips_a_customer_whose_session_is_still_open(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, settings: Settings, replica_url: str
) -> None:
    """Priya's session outlives its lease (its worker was away longer than the lease): the customer is
    back at the head of the queue. Tom's next call meets them: he gets the next customer, and the first
    goes back to Priya's session, not to the head of the queue (every next call would meet them again)."""
    await queue_one_customer(stores, replica_url)
    priya = await start_available(http, "priya@rmc.example")
    tom = await start_available(http, "tom@rmc.example")
    engine = queue_engine(stores)

    offered = await _next_call(http, priya)
    held_user = offered["customer"]["user_id"]
    lease = await engine.lease_of(held_user)
    assert lease is not None

    async def session_opened() -> bool:
        async with stores.postgres.connect() as conn:
            return bool(await conn.scalar(text("SELECT count(*) FROM call_sessions WHERE closed_at IS NULL")))

    await eventually(session_opened)
    # The lease lapses (as when the session's worker is away longer than the TTL): the customer is
    # put back where they were, at the head of the queue, while their session is still open.
    assert await engine.reap_expired(now=time.time() + settings.lease_ttl_s + 60) == [held_user]
    assert await engine.position(held_user) is not None

    second = await _next_call(http, tom)

    assert second["customer"]["user_id"] != held_user
    assert await engine.position(held_user) is None  # not at the head of the queue again
    back = await engine.lease_of(held_user)
    assert back is not None and (back.agent_id, back.token) == (lease.agent_id, lease.token)  # Priya's session's
