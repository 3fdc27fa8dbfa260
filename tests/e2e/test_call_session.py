"""A call from next-call to outcome, on the real API, worker, Temporal, PostgreSQL, Redis and MariaDB,
with the Twilio emulator posting the signed Twilio webhooks."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import signal
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from devstack import services
from devstack.twilio_emulator.client import EmulatorClient
from dialler import search_attributes as sa
from dialler.agents.models import Agent
from dialler.agents.presence import Initiator, PresenceState, presence_key, set_presence
from dialler.calls.messages import CallSessionInput, DialRequest, call_workflow_id
from dialler.calls.service import take_next_call
from dialler.integrations.twilio import TwilioTelephony
from dialler.integrations.twilio_voice import agent_identity
from dialler.queues.engine import QueueEntry
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.call_sessions import customer_call, queue_one_customer, start_available
from tests.support.histories import record_history
from tests.support.journeys import in_state, talk_then_hang_up
from tests.support.live_api import eventually, login
from tests.support.worker_process import WorkerProcess
from workers.worker import build_worker
from workflows.call_session import CallSessionWorkflow

pytestmark = pytest.mark.e2e


async def call_state(http: httpx.AsyncClient, headers: dict[str, str], session_id: str) -> dict:
    response = await http.get(f"/api/v1/calls/{session_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def first_pending_requirement(replica_writer: AsyncEngine, user_id: int) -> int:
    """The customer's first pending requirement on an active claim, made if they have none."""
    async with replica_writer.begin() as conn:
        pending = await conn.scalar(_FIRST_PENDING, {"user": user_id})
        if pending is None:
            claim = await conn.scalar(
                text("SELECT id FROM claims WHERE user_id = :u AND deleted_at IS NULL ORDER BY id LIMIT 1"),
                {"u": user_id},
            )
            await conn.execute(text("UPDATE claims SET status = 'documents_required' WHERE id = :c"), {"c": claim})
            await conn.execute(
                text(
                    "INSERT INTO claim_requirements (claim_id, type, status, reason, created_at, updated_at)"
                    " VALUES (:c, 'bank_statement', 'PENDING', 'statements for the loan years', NOW(), NOW())"
                ),
                {"c": claim},
            )
            pending = await conn.scalar(_FIRST_PENDING, {"user": user_id})
    return int(pending)


_FIRST_PENDING = text(
    "SELECT cr.id FROM claim_requirements cr JOIN claims c ON c.id = cr.claim_id WHERE c.user_id = :user"
    " AND c.status IN ('new', 'documents_required', 'in_progress', 'submitted_to_lender')"
    " AND c.deleted_at IS NULL AND cr.status = 'PENDING' AND cr.deleted_at IS NULL ORDER BY cr.id LIMIT 1"
)


async def test_next_call_dial_talk_outcome_requeues_and_frees_the_agent(
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_url: str,
    replica_writer: AsyncEngine,
    temporal_client: Client,
) -> None:
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")

    offered = (await http.post("/api/v1/agents/me/next-call", headers=headers)).json()
    session_id, user_id = offered["session_id"], offered["customer"]["user_id"]
    requirement = await first_pending_requirement(replica_writer, user_id)
    assert offered["customer"]["claims"] and "+44" not in str(offered["customer"])  # number never shown whole
    assert (await http.get("/api/v1/agents/me/presence", headers=headers)).json()["state"] == "reserved"

    await talk_then_hang_up(http, headers, session_id)

    response = await http.post(
        f"/api/v1/calls/{session_id}/outcome",
        json={"disposition": "docs_promised", "notes": "sending payslips"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    handle = temporal_client.get_workflow_handle(call_workflow_id(user_id))
    await handle.result()
    await record_history(handle, "call-session-lean-answered", stores.settings)  # RECORD_HISTORY_TO=<dir>
    # Filed for supervisors: set at the start by the API's starter, the rest as the call went.
    filed = (await handle.describe()).typed_search_attributes
    async with stores.postgres.connect() as conn:
        agent_id, queue = (await conn.execute(text("SELECT agent_id, queue FROM call_sessions"))).one()
    assert [filed.get(key) for key in (sa.AGENT_ID, sa.USER_ID, sa.QUEUE_TYPE, sa.CALL_STATUS, sa.DISPOSITION)] == [
        str(agent_id),
        str(user_id),
        queue,
        "closed",
        "docs_promised",
    ]

    async with stores.postgres.connect() as conn:
        outcome = (await conn.execute(text("SELECT disposition, notes FROM call_outcomes"))).one()
        attempt = (await conn.execute(text("SELECT user_id, result, abandoned FROM contact_attempts"))).one()
        session = (
            await conn.execute(text("SELECT status, answered_at, ended_at, end_reason FROM call_sessions"))
        ).one()
    assert tuple(outcome) == ("docs_promised", "sending payslips")
    assert tuple(attempt) == (user_id, "docs_promised", False)
    assert session.status == "closed" and session.answered_at and session.end_reason == "completed"
    engine = queue_engine(stores)
    assert await engine.lease_of(user_id) is None
    assert (await engine.position(user_id))[0] == "unsigned"  # back in the queue...
    not_before = float(await stores.redis.hget(engine.keys.not_before, str(user_id)))
    assert not_before >= (datetime.now(UTC) + timedelta(hours=3, minutes=59)).timestamp()  # ...after the gap
    presence = (await http.get("/api/v1/agents/me/presence", headers=headers)).json()
    assert presence["state"] == "available"

    # docs_promised texts the customer a link to upload the documents of their first pending requirement.
    async def link_texted() -> bool:
        async with stores.postgres.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT purpose, requirement_id, created_by_agent_id FROM magic_links WHERE user_id = :u"),
                    {"u": user_id},
                )
            ).one_or_none()
            sent = await conn.scalar(
                text("SELECT count(*) FROM sms_messages WHERE template = 'magic_link_upload' AND status <> 'pending'")
            )
        return row is not None and tuple(row)[:2] == ("upload", requirement) and row[2] is not None and sent == 1

    await eventually(link_texted)


async def test_a_hangup_whose_final_status_lands_first_still_records_the_end(
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_url: str,
    telephony: TwilioTelephony,
    emulator: EmulatorClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The carrier may post the call's final status before it answers our hang-up request: the end
    (when and why) must still reach the session's record, not be lost between the two."""
    hang_up = telephony.hangup

    async def hangup_answered_after_the_status(call_sid: str) -> None:
        await hang_up(call_sid)
        await asyncio.to_thread(emulator.wait_ended, call_sid)

    monkeypatch.setattr(telephony, "hangup", hangup_answered_after_the_status)
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")
    session_id = (await http.post("/api/v1/agents/me/next-call", headers=headers)).json()["session_id"]
    await talk_then_hang_up(http, headers, session_id)

    async with stores.postgres.connect() as conn:
        row = (await conn.execute(text("SELECT status, ended_at, end_reason FROM call_sessions"))).one()
    assert row.status == "wrap_up" and row.ended_at is not None and row.end_reason == "completed"


async def test_a_worker_without_the_sandbox_runs_a_call_to_its_outcome(
    http: httpx.AsyncClient, temporal_client: Client, stores: Stores, replica_url: str, telephony: TwilioTelephony
) -> None:
    """``DIALLER_WORKFLOW_SANDBOX=false`` (a production worker saving CPU) runs the same sessions."""
    unsandboxed = dataclasses.replace(stores, settings=stores.settings.model_copy(update={"workflow_sandbox": False}))
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")
    async with build_worker(
        temporal_client, unsandboxed, telephony, task_queue=stores.settings.temporal_task_queue
    ) as running:
        assert isinstance(running.config()["workflow_runner"], UnsandboxedWorkflowRunner)
        offered = (await http.post("/api/v1/agents/me/next-call", headers=headers)).json()
        session_id, user_id = offered["session_id"], offered["customer"]["user_id"]
        await talk_then_hang_up(http, headers, session_id)
        response = await http.post(f"/api/v1/calls/{session_id}/outcome", json={"disposition": "busy"}, headers=headers)
        assert response.status_code == 200, response.text
        await temporal_client.get_workflow_handle(call_workflow_id(user_id)).result()
    assert (await call_state(http, headers, session_id))["disposition"] == "busy"


async def test_a_missed_call_is_texted_at_most_once_a_day(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_url: str, temporal_client: Client
) -> None:
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")
    users = []
    for _ in range(2):  # the same customer twice: the second call's outcome finds today's text
        offered = (await http.post("/api/v1/agents/me/next-call", headers=headers)).json()
        users.append(offered["customer"]["user_id"])
        session_id = offered["session_id"]
        # A machine took the call: the voicemail outcome texts (only ever after a dial).
        assert (await http.post(f"/api/v1/calls/{session_id}/dial", headers=headers)).status_code == 202
        await eventually(lambda sid=session_id: in_state(http, headers, sid, "in_progress"))
        await http.post(f"/api/v1/calls/{session_id}/hangup", headers=headers)
        await eventually(lambda sid=session_id: in_state(http, headers, sid, "wrap_up"))
        response = await http.post(
            f"/api/v1/calls/{session_id}/outcome", json={"disposition": "voicemail"}, headers=headers
        )
        assert response.status_code == 200, response.text
        await eventually(lambda: _agent_available(http, headers))
        if len(users) == 1:  # put the same customer back at the head of the queue for the second call
            await temporal_client.get_workflow_handle(call_workflow_id(users[0])).result()  # session closed
            engine = queue_engine(stores)
            await stores.redis.hdel(engine.keys.not_before, str(users[0]))
            await stores.redis.zadd(engine.keys.queue("unsigned"), {str(users[0]): -1})

    async def texted_once() -> bool:
        async with stores.postgres.connect() as conn:
            count = await conn.scalar(text("SELECT count(*) FROM sms_messages WHERE template = 'missed_call'"))
        return count == 1

    assert users[0] == users[1]
    await eventually(texted_once)
    await asyncio.sleep(1)  # and no second one arrives late
    assert await texted_once()


async def test_a_due_callback_comes_first_whatever_order_the_agent_lists_queues_in(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_url: str
) -> None:
    await queue_one_customer(stores, replica_url)
    engine = queue_engine(stores)
    waiting = (await stores.redis.zrange(engine.keys.queue("unsigned"), -1, -1))[0]
    user_id = int(waiting)  # the last of the unsigned queue: only a due callback puts them first
    await engine.upsert(QueueEntry(user_id, "callbacks", score=0.0))
    async with stores.postgres.begin() as conn:
        await conn.execute(
            text("UPDATE agents SET queues = ARRAY['unsigned', 'callbacks'] WHERE email = 'priya@rmc.example'")
        )
    headers = await start_available(http, "priya@rmc.example")
    offered = (await http.post("/api/v1/agents/me/next-call", headers=headers)).json()
    assert (offered["customer"]["user_id"], offered["lease"]["queue"]) == (user_id, "callbacks")


async def _agent_available(http: httpx.AsyncClient, headers: dict[str, str]) -> bool:
    return (await http.get("/api/v1/agents/me/presence", headers=headers)).json()["state"] == "available"


async def test_outcome_is_validated_per_disposition(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_url: str
) -> None:
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")
    session_id = (await http.post("/api/v1/agents/me/next-call", headers=headers)).json()["session_id"]
    await http.post(f"/api/v1/calls/{session_id}/dial", headers=headers)
    await eventually(lambda: in_state(http, headers, session_id, "in_progress"))

    during = await http.post(f"/api/v1/calls/{session_id}/outcome", json={"disposition": "busy"}, headers=headers)
    assert during.status_code == 409 and "hang up" in during.json()["error"]["message"]
    await http.post(f"/api/v1/calls/{session_id}/hangup", headers=headers)
    await eventually(lambda: in_state(http, headers, session_id, "wrap_up"))

    no_time = await http.post(
        f"/api/v1/calls/{session_id}/outcome", json={"disposition": "callback_requested"}, headers=headers
    )
    assert no_time.status_code == 422 and "callback time" in no_time.json()["error"]["message"]
    unknown = await http.post(f"/api/v1/calls/{session_id}/outcome", json={"disposition": "hung_up"}, headers=headers)
    assert unknown.status_code == 422
    ok = await http.post(f"/api/v1/calls/{session_id}/outcome", json={"disposition": "not_interested"}, headers=headers)
    assert ok.status_code == 200


async def test_another_agent_cannot_touch_my_session_and_it_is_audited(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_url: str
) -> None:
    await queue_one_customer(stores, replica_url)
    priya = await start_available(http, "priya@rmc.example")
    tom = await login(http, "tom@rmc.example")
    offered = await http.post("/api/v1/agents/me/next-call", headers=priya)
    assert offered.status_code == 200 and offered.json()["session_id"], offered.text
    session_id = offered.json()["session_id"]

    assert (await http.get(f"/api/v1/calls/{session_id}", headers=tom)).status_code == 403
    assert (await http.post(f"/api/v1/calls/{session_id}/dial", headers=tom)).status_code == 403
    async with stores.postgres.connect() as conn:
        denied = await conn.scalar(text("SELECT count(*) FROM audit_log WHERE action = 'call.access_denied'"))
    assert denied == 2


async def test_next_call_twice_is_409_and_an_unavailable_agent_is_refused(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_url: str
) -> None:
    await queue_one_customer(stores, replica_url)
    aisha = await login(http, "aisha@rmc.example")
    refused = await http.post("/api/v1/agents/me/next-call", headers=aisha)
    assert refused.status_code == 409 and "available" in refused.json()["error"]["message"]

    priya = await start_available(http, "priya@rmc.example")
    first = await http.post("/api/v1/agents/me/next-call", headers=priya)
    again = await http.post("/api/v1/agents/me/next-call", headers=priya)
    assert first.status_code == 200 and again.status_code == 409
    assert again.json()["error"]["details"]["user_id"] == first.json()["customer"]["user_id"]


async def test_empty_queue_gives_a_reason_not_a_customer(
    http: httpx.AsyncClient, worker: Worker, stores: Stores
) -> None:
    headers = await start_available(http, "priya@rmc.example")

    response = await http.post("/api/v1/agents/me/next-call", headers=headers)

    assert response.status_code == 200
    assert response.json()["customer"] is None and "Nobody" in response.json()["reason"]


async def test_wrap_up_timeout_closes_with_no_outcome_and_releases_the_lease(
    live_api: str,
    temporal_client: Client,
    worker: Worker,
    stores: Stores,
    replica_url: str,
    emulator: EmulatorClient,
) -> None:
    # The agent's phone takes the bridge at once: a conversation, then a wrap-up that runs out. (An
    # agent who took longer than the 2 s would leave the customer abandoned, with nothing to wrap up.)
    emulator.device(agent_identity(1), action="accept", accept_after_s=0.0)
    await queue_one_customer(stores, replica_url)
    engine = queue_engine(stores)
    async with stores.sessions() as session:
        from devstack.demo import ensure_demo_accounts

        await ensure_demo_accounts(session)
    lease = await engine.next_call(
        agent_id=1, queues=["unsigned"], trained_vulnerable=True, now=datetime.now(UTC).timestamp()
    )
    assert lease is not None
    handle = await temporal_client.start_workflow(
        CallSessionWorkflow.run,
        CallSessionInput(str(uuid.uuid4()), lease.user_id, 1, lease.queue, lease.token, wrap_up_timeout_s=1),
        id=call_workflow_id(lease.user_id),
        task_queue=stores.settings.temporal_task_queue,
    )
    await handle.signal(CallSessionWorkflow.dial, DialRequest(1))
    # The answer crosses the worker, the Twilio emulator and the live API: seconds, more under load.
    await eventually(lambda: _workflow_state(handle, "in_progress"), within=45)
    # Hung up once the agent is on the line: hung up earlier, after the 2 s, the call is abandoned.
    await asyncio.to_thread(emulator.wait_for, await customer_call(emulator), "person_connected", 20.0)
    await handle.signal(CallSessionWorkflow.hang_up)

    result = await handle.result()

    assert result.disposition == "no_outcome"
    assert await engine.lease_of(lease.user_id) is None
    assert (await engine.position(lease.user_id))[0] == "unsigned"


async def test_a_preview_not_dialled_within_the_limit_puts_the_customer_back_with_no_attempt(
    live_api: str,
    temporal_client: Client,
    worker: Worker,
    stores: Stores,
    replica_url: str,
    emulator: EmulatorClient,
) -> None:
    """An agent cannot hold a customer on screen indefinitely: after the preview limit the customer is
    back in their queue, nothing was dialled or counted, and no text went out."""
    await queue_one_customer(stores, replica_url)
    engine = queue_engine(stores)
    async with stores.sessions() as session:
        from devstack.demo import ensure_demo_accounts

        await ensure_demo_accounts(session)
    lease = await engine.next_call(
        agent_id=1, queues=["unsigned"], trained_vulnerable=True, now=datetime.now(UTC).timestamp()
    )
    assert lease is not None
    handle = await temporal_client.start_workflow(
        CallSessionWorkflow.run,
        CallSessionInput(str(uuid.uuid4()), lease.user_id, 1, lease.queue, lease.token, preview_limit_s=2),
        id=call_workflow_id(lease.user_id),
        task_queue=stores.settings.temporal_task_queue,
    )

    result = await asyncio.wait_for(handle.result(), 30)

    assert result.disposition == "no_outcome"
    assert await asyncio.to_thread(emulator.calls) == []  # never dialled
    assert await engine.lease_of(lease.user_id) is None
    assert (await engine.position(lease.user_id))[0] == "unsigned"
    async with stores.postgres.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM contact_attempts")) == 0
        assert await conn.scalar(text("SELECT count(*) FROM sms_messages")) == 0


async def test_an_outcome_recorded_before_a_dial_counts_no_attempt_and_sends_no_text(
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_url: str,
    temporal_client: Client,
    emulator: EmulatorClient,
) -> None:
    """The agent skips a reserved customer ("not calling this customer": wrong number) without
    dialling: nobody was rung, so no attempt is counted and no "we tried to call you" text goes out;
    the outcomes that say how a dial went are refused until there was one."""
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")
    offered = (await http.post("/api/v1/agents/me/next-call", headers=headers)).json()
    session_id, user_id = offered["session_id"], offered["customer"]["user_id"]
    path = f"/api/v1/calls/{session_id}/outcome"

    for disposition in ("no_answer", "voicemail"):  # they would text the customer
        refused = await http.post(path, json={"disposition": disposition}, headers=headers)
        assert refused.status_code == 422, refused.text
    skipped = await http.post(path, json={"disposition": "wrong_number"}, headers=headers)
    assert skipped.status_code == 200, skipped.text
    result = await temporal_client.get_workflow_handle(call_workflow_id(user_id)).result()

    assert result["disposition"] == "wrong_number"
    async with stores.postgres.connect() as conn:
        assert await conn.scalar(text("SELECT disposition FROM call_outcomes")) == "wrong_number"
        assert await conn.scalar(text("SELECT count(*) FROM contact_attempts")) == 0
        assert await conn.scalar(text("SELECT count(*) FROM sms_messages")) == 0
    assert await asyncio.to_thread(emulator.calls) == []  # never dialled
    assert await asyncio.to_thread(emulator.messages) == []  # and never texted
    assert (await http.get("/api/v1/agents/me/presence", headers=headers)).json()["state"] == "available"


async def _workflow_state(handle, state: str) -> bool:  # type: ignore[no-untyped-def]
    return (await handle.query(CallSessionWorkflow.view)).state == state


async def supervisor_lists(temporal_client: Client, query: str) -> list[dict]:
    """What a supervisor gets from ``temporal workflow list --query …`` (the real CLI): id, CallStatus
    and Disposition of each session found."""
    proc = await asyncio.create_subprocess_exec(
        str(services.VENV_BIN / "temporal"),
        "workflow",
        "list",
        "--address",
        temporal_client.service_client.config.target_host,
        "--query",
        query,
        "--output",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    found = json.loads(out or b"[]")
    return [
        {
            "id": execution["execution"]["workflowId"],
            **{
                name: json.loads(base64.b64decode(payload["data"]))
                for name, payload in execution["searchAttributes"]["indexedFields"].items()
                if name in ("CallStatus", "Disposition")
            },
        }
        for execution in found
    ]


async def test_supervisors_find_a_live_conversation_and_a_customers_sessions_with_the_cli(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_url: str, temporal_client: Client
) -> None:
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")
    offered = (await http.post("/api/v1/agents/me/next-call", headers=headers)).json()
    session_id, user_id = offered["session_id"], offered["customer"]["user_id"]
    workflow_id = call_workflow_id(user_id)
    assert (await http.post(f"/api/v1/calls/{session_id}/dial", headers=headers)).status_code == 202
    await eventually(lambda: in_state(http, headers, session_id, "in_progress"))

    mine = f"TaskQueue = '{stores.settings.temporal_task_queue}'"  # this test's sessions only
    talking = await eventually(lambda: supervisor_lists(temporal_client, f"{mine} AND CallStatus = 'in_progress'"))
    assert [row["id"] for row in talking] == [workflow_id]

    assert (await http.post(f"/api/v1/calls/{session_id}/hangup", headers=headers)).status_code == 202
    await eventually(lambda: in_state(http, headers, session_id, "wrap_up"))
    response = await http.post(f"/api/v1/calls/{session_id}/outcome", json={"disposition": "busy"}, headers=headers)
    assert response.status_code == 200, response.text
    await temporal_client.get_workflow_handle(workflow_id).result()

    sessions = await supervisor_lists(temporal_client, f"{mine} AND UserId = '{user_id}'")
    assert sessions == [{"id": workflow_id, "CallStatus": "closed", "Disposition": "busy"}]
    assert await supervisor_lists(temporal_client, f"{mine} AND CallStatus = 'in_progress'") == []


async def test_a_second_open_session_for_the_same_customer_is_refused(
    temporal_client: Client, worker: Worker, stores: Stores
) -> None:
    first = CallSessionInput(str(uuid.uuid4()), 424242, 1, "unsigned", 1)
    await temporal_client.start_workflow(
        CallSessionWorkflow.run, first, id=call_workflow_id(424242), task_queue=stores.settings.temporal_task_queue
    )
    with pytest.raises(WorkflowAlreadyStartedError):
        await temporal_client.start_workflow(
            CallSessionWorkflow.run,
            CallSessionInput(str(uuid.uuid4()), 424242, 2, "unsigned", 2),
            id=call_workflow_id(424242),
            task_queue=stores.settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    await temporal_client.get_workflow_handle(call_workflow_id(424242)).terminate("test done")


async def test_worker_killed_mid_call_loses_nothing(
    http: httpx.AsyncClient,
    temporal_client: Client,
    stores: Stores,
    replica_url: str,
    telephony: TwilioTelephony,
    emulator: EmulatorClient,
    process_group: services.ProcessGroup,
) -> None:
    """The worker process is SIGKILLed while the customer and the agent talk: the call stays up at
    Twilio (the emulator, its own process, as Twilio would), the agent's screen still shows it, her
    hang-up lands, and a new worker hangs the call up at Twilio and takes the session to its outcome."""
    emulator.script("*", behaviour="answer", answer_after_s=0.3, hangup_after_s=None)
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")
    task_queue = stores.settings.temporal_task_queue
    process = WorkerProcess(process_group, f"worker-{uuid.uuid4().hex[:6]}", stores.settings)
    try:
        offered = (await http.post("/api/v1/agents/me/next-call", headers=headers)).json()
        session_id, user_id = offered["session_id"], offered["customer"]["user_id"]
        await http.post(f"/api/v1/calls/{session_id}/dial", headers=headers)
        await eventually(lambda: in_state(http, headers, session_id, "in_progress"), within=60)
        [call] = [c for c in await asyncio.to_thread(emulator.calls) if not c["parent_call_sid"]]
        await asyncio.to_thread(emulator.wait_for, call["sid"], "person_connected")
    finally:
        returncode = await asyncio.to_thread(process.kill)
    assert returncode == -signal.SIGKILL
    # The worker is gone; the call is not. The agent's screen still shows it (the session's view, not a
    # query that needs a worker), and the carrier's callbacks and the agent's clicks still land (signals).
    await asyncio.sleep(1.0)
    line = await asyncio.to_thread(emulator.timeline, call["sid"])
    assert (line.ended, line.status) == (False, "in-progress") and "bridge_ended" not in line.kinds()
    shown = await call_state(http, headers, session_id)
    assert (shown["state"], shown["answered"], shown["user_id"]) == ("in_progress", True, user_id)
    live = (await http.get("/api/v1/agents/me/live", headers=headers)).json()  # the workspace's own poll
    assert live["call_unavailable"] is False
    assert (live["call"]["session_id"], live["call"]["state"]) == (session_id, "in_progress")
    await http.post(f"/api/v1/calls/{session_id}/hangup", headers=headers)

    async with build_worker(temporal_client, stores, telephony, task_queue=task_queue):
        ended = await asyncio.to_thread(emulator.wait_ended, call["sid"], 60.0)
        await eventually(lambda: in_state(http, headers, session_id, "wrap_up"))
        wrap_up = await call_state(http, headers, session_id)
        response = await http.post(f"/api/v1/calls/{session_id}/outcome", json={"disposition": "busy"}, headers=headers)
        assert response.status_code == 200
        await temporal_client.get_workflow_handle(call_workflow_id(user_id)).result()
    hangups = [e for e in ended.events if e["kind"] == "hangup" and e["leg"] == "customer"]
    assert hangups and hangups[0]["by"] == "api", ended.events  # the product hung up, after the restart
    assert wrap_up["end_reason"] == "completed" and wrap_up["wrap_up_deadline"] is not None
    closed = await call_state(http, headers, session_id)
    assert (closed["state"], closed["disposition"]) == ("closed", "busy")
    async with stores.postgres.connect() as conn:
        assert await conn.scalar(text("SELECT disposition FROM call_outcomes")) == "busy"
    # ... and the agent is free for the next customer.
    assert (await http.get("/api/v1/agents/me/presence", headers=headers)).json()["state"] == "available"


async def _agent(stores: Stores, email: str) -> Agent:
    async with stores.sessions() as session:
        found = await session.scalar(select(Agent).where(Agent.email == email))
    assert found is not None
    return found


async def test_an_api_that_stops_after_leasing_leaves_nothing_stuck(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_url: str, temporal_client: Client
) -> None:
    """The API leased a customer (as next-call does) and died before the session started. The agent
    is reserved for that customer by the lease alone, and their next click starts that very session."""
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")
    priya = await _agent(stores, "priya@rmc.example")
    engine = queue_engine(stores)
    session_id = str(uuid.uuid4())
    offer = await engine.next_call_detailed(
        agent_id=priya.id,
        queues=["unsigned"],
        trained_vulnerable=priya.trained_vulnerable,
        now=datetime.now(UTC).timestamp(),
        session_id=session_id,
        presence_key=presence_key(stores.settings, priya.id),
    )
    assert offer.lease is not None
    presence = (await http.get("/api/v1/agents/me/presence", headers=headers)).json()
    assert (presence["state"], presence["user_id"]) == ("reserved", offer.lease.user_id)

    resumed = await http.post("/api/v1/agents/me/next-call", headers=headers)
    again = await http.post("/api/v1/agents/me/next-call", headers=headers)

    assert resumed.status_code == 200, resumed.text
    assert (resumed.json()["session_id"], resumed.json()["customer"]["user_id"]) == (session_id, offer.lease.user_id)
    assert again.status_code == 409 and again.json()["error"]["details"]["user_id"] == offer.lease.user_id
    assert (await call_state(http, headers, session_id))["state"] == "reserved"
    # Never dialled: "no answer" (which texts "we tried to call you") is refused; a reason that needs
    # no call is taken.
    never_rung = await http.post(
        f"/api/v1/calls/{session_id}/outcome", json={"disposition": "no_answer"}, headers=headers
    )
    assert 400 <= never_rung.status_code < 500 and "after a call was dialled" in never_rung.text
    response = await http.post(
        f"/api/v1/calls/{session_id}/outcome", json={"disposition": "wrong_number"}, headers=headers
    )
    assert response.status_code == 200, response.text
    await temporal_client.get_workflow_handle(call_workflow_id(offer.lease.user_id)).result()
    assert (await http.get("/api/v1/agents/me/presence", headers=headers)).json()["state"] == "available"


async def test_a_session_that_cannot_start_gives_the_customer_back_in_one_step(
    http: httpx.AsyncClient, stores: Stores, replica_url: str
) -> None:
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")
    priya = await _agent(stores, "priya@rmc.example")
    engine = queue_engine(stores)
    before = {u: await engine.position(u) for u in range(1, 61)}

    async def temporal_down(input: CallSessionInput) -> bool:
        raise RuntimeError("Temporal is unreachable")

    with pytest.raises(RuntimeError):
        async with stores.sessions() as session:
            await take_next_call(
                session=session, stores=stores, start_session=temporal_down, engine=engine, agent=priya
            )

    assert await engine.lease_of_agent(priya.id) is None
    assert {u: await engine.position(u) for u in range(1, 61)} == before  # every customer where they were
    presence = (await http.get("/api/v1/agents/me/presence", headers=headers)).json()
    assert (presence["state"], presence["user_id"]) == ("available", None)


async def test_a_reserved_state_with_no_lease_behind_it_holds_nobody(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_url: str
) -> None:
    """Stored by the code before the lease was the reservation (or left by a crash then): next call
    finds nobody held and offers a customer, instead of a 409 for ever."""
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")
    priya = await _agent(stores, "priya@rmc.example")
    async with stores.sessions() as session:
        await set_presence(
            session=session,
            redis=stores.redis,
            settings=stores.settings,
            agent_id=priya.id,
            target=PresenceState.RESERVED,
            now=datetime.now(UTC),
            by=Initiator.SYSTEM,
        )

    offered = await http.post("/api/v1/agents/me/next-call", headers=headers)

    assert offered.status_code == 200, offered.text
    assert offered.json()["customer"] is not None
    presence = (await http.get("/api/v1/agents/me/presence", headers=headers)).json()
    assert (presence["state"], presence["user_id"]) == ("reserved", offered.json()["customer"]["user_id"])
