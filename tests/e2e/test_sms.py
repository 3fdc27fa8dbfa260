"""SMS end to end: the real API over HTTP, the real worker, the Twilio emulator posting signed webhooks.

Journey 5 (a customer texts STOP) and its neighbours: delivery statuses, START, CANCEL in reply to a
callback text, magic links verified by the portal, who may read which conversation, forged webhooks.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from devstack.twilio_emulator.client import EmulatorClient
from dialler import clock
from dialler.agents.models import Agent
from dialler.callbacks.messages import BookCallbackInput, callback_workflow_id
from dialler.calls.models import CallSession
from dialler.comms.inbound import CANCEL_REASON, STOP_REASON, inbound_sms_workflow_id
from dialler.comms.messages import SendSmsInput, SendStatus, sms_workflow_id
from dialler.comms.models import SmsMessage
from dialler.compliance.models import OptOut
from dialler.config import Settings
from dialler.integrations.twilio import TwilioTelephony
from dialler.integrations.twilio_voice import sign
from dialler.queues.rebuild import recompute
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.live_api import eventually, login
from tests.support.replica_customers import Customer, add_customer
from workers.worker import build_worker
from workflows.callback import CallbackWorkflow
from workflows.callback_client import book_callback
from workflows.magic_link import MagicLinkWorkflow
from workflows.sms import SendSmsWorkflow

pytestmark = pytest.mark.e2e

INBOUND = "/api/v1/webhooks/twilio/sms-inbound"
STATUS = "/api/v1/webhooks/twilio/sms-status"
SAM, PRIYA, TOM = "sam@rmc.example", "priya@rmc.example", "tom@rmc.example"


# --- helpers ---------------------------------------------------------------------------------------


async def post_twilio(
    http: httpx.AsyncClient, settings: Settings, path: str, params: dict[str, str], *, signature: str | None = None
) -> httpx.Response:
    """A webhook as Twilio posts it: form-encoded, signed over our public URL."""
    url = settings.public_base_url.rstrip("/") + path
    headers = {"X-Twilio-Signature": signature if signature is not None else sign(settings, url, params)}
    return await http.post(path, data=params, headers=headers)


def inbound(settings: Settings, phone: str, body: str, sid: str | None = None) -> dict[str, str]:
    return {
        "AccountSid": settings.twilio_account_sid,
        "MessageSid": sid or "SM" + secrets.token_hex(16),
        "From": phone,
        "To": settings.caller_id,
        "Body": body,
        "NumSegments": "1",
    }


async def queued_customer(stores: Stores, replica_writer: AsyncEngine, user_id: int = 1, **kwargs: object) -> Customer:
    customer = await add_customer(replica_writer, user_id, **kwargs)  # type: ignore[arg-type]
    await recompute(stores, queue_engine(stores), [user_id])
    return customer


async def outbound(stores: Stores, template: str | None = None) -> list[SmsMessage]:
    async with stores.sessions() as session:
        query = select(SmsMessage).where(SmsMessage.direction == "outbound").order_by(SmsMessage.id)
        if template is not None:
            query = query.where(SmsMessage.template == template)
        return list((await session.scalars(query)).all())


async def delivered(stores: Stores, template: str, count: int = 1) -> list[SmsMessage]:
    async def check() -> list[SmsMessage] | None:
        found = await outbound(stores, template)
        return found if len(found) == count and all(m.status == "delivered" for m in found) else None

    result: list[SmsMessage] = await eventually(check)
    return result


async def agent_id(stores: Stores, email: str) -> int:
    async with stores.sessions() as session:
        found = await session.scalar(select(Agent.id).where(Agent.email == email))
    assert found is not None
    return found


async def texts_to(emulator: EmulatorClient, phone: str) -> list[str]:
    """The bodies of the texts sent to ``phone``, as Twilio holds them."""
    return [m["body"] for m in await asyncio.to_thread(emulator.messages, phone)]


async def out_of_queues(stores: Stores, user_ids: list[int]) -> bool:
    engine = queue_engine(stores)
    return all([await engine.position(u) is None for u in user_ids])


async def in_queue(stores: Stores, user_id: int, queue: str) -> bool:
    found = await queue_engine(stores).position(user_id)
    return found is not None and found[0] == queue


async def book(temporal_client: Client, stores: Stores, user_id: int) -> None:
    due = datetime.now(UTC) + timedelta(hours=2)
    await book_callback(temporal_client, stores.settings, BookCallbackInput(user_id, due, booked_by_agent_id=None))


# --- delivery statuses -----------------------------------------------------------------------------


async def test_a_text_goes_out_and_its_delivery_status_only_moves_forward(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_writer: AsyncEngine, settings: Settings
) -> None:
    customer = await queued_customer(stores, replica_writer)
    sam = await login(http, SAM)

    response = await http.post(
        f"/api/v1/sms/customers/{customer.user_id}/messages",
        json={"text": "Hello, it\u2019s Sam \u2013 call us back when you can."},
        headers=sam,
    )

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert (accepted["encoding"], accepted["segments"]) == ("GSM-7", 1)  # smart-encoded punctuation
    assert accepted["workflow_id"].startswith("sms-agent-")
    [message] = await delivered(stores, template=None)  # type: ignore[arg-type]
    assert message.body == "Hello, it's Sam - call us back when you can." and message.twilio_sid

    late = {"MessageSid": message.twilio_sid, "MessageStatus": "sent", "AccountSid": settings.twilio_account_sid}
    path = f"{STATUS}?m={message.id}"
    assert (await post_twilio(http, settings, path, late)).status_code == 204  # out of order
    assert (await post_twilio(http, settings, path, {**late, "MessageStatus": "delivered"})).status_code == 204
    forged = await post_twilio(http, settings, path, {**late, "MessageStatus": "failed"}, signature="bm90IGl0")
    assert forged.status_code == 403
    assert [m.status for m in await outbound(stores)] == ["delivered"]

    thread = (await http.get(f"/api/v1/sms/customers/{customer.user_id}/messages", headers=sam)).json()
    assert [(m["direction"], m["status"]) for m in thread["items"]] == [("outbound", "delivered")]
    assert thread["conversation"]["phone_masked"].endswith("123") and "+447700900123" not in str(thread)


async def test_texts_are_checked_before_they_are_accepted(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_writer: AsyncEngine
) -> None:
    await queued_customer(stores, replica_writer)
    await add_customer(replica_writer, 2, phone="0161 496 0123", e164="+441614960123")  # a landline
    sam = await login(http, SAM)
    send = "/api/v1/sms/customers/{}/messages"

    too_long = await http.post(send.format(1), json={"text": "a" * 919}, headers=sam)
    system_only = await http.post(send.format(1), json={"template": "stop_confirmation"}, headers=sam)
    both = await http.post(send.format(1), json={"template": "missed_call", "text": "hi"}, headers=sam)
    landline = await http.post(send.format(2), json={"template": "missed_call"}, headers=sam)
    nobody = await http.post(send.format(99), json={"template": "missed_call"}, headers=sam)
    ok = await http.post(send.format(1), json={"template": "missed_call"}, headers=sam)

    assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "sms_too_long"
    assert too_long.json()["error"]["details"]["segments"] == 7
    assert system_only.status_code == 422 and system_only.json()["error"]["code"] == "invalid_template"
    assert both.status_code == 422
    assert landline.status_code == 422 and landline.json()["error"]["code"] == "no_mobile_number"
    assert nobody.status_code == 404
    assert ok.status_code == 202 and ok.json()["segments"] == 1
    templates = (await http.get("/api/v1/sms/templates", headers=sam)).json()
    assert [t["name"] for t in templates] == ["missed_call"] and templates[0]["encoding"] == "GSM-7"


# --- STOP, START, CANCEL ---------------------------------------------------------------------------


async def test_inbound_stop_opts_out_at_once_everywhere_and_confirms_once(
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_writer: AsyncEngine,
    settings: Settings,
    temporal_client: Client,
    emulator: EmulatorClient,
) -> None:
    # Two customer records share the number: one waits in the unsigned queue, the other has a callback.
    queued = await queued_customer(stores, replica_writer, 1)
    await add_customer(replica_writer, 2, phone="+447700900123")
    await book(temporal_client, stores, 2)
    await delivered(stores, "callback_confirmation")
    engine = queue_engine(stores)
    assert (await engine.position(1))[0] == "unsigned"  # type: ignore[index]
    stop = inbound(settings, queued.e164, "Stop")

    response = await post_twilio(http, settings, INBOUND, stop)

    # Within the request: opted out; within seconds (InboundSmsWorkflow): in no queue.
    assert response.status_code == 200 and "<Response" in response.text
    assert response.headers["content-type"].startswith("application/xml")
    async with stores.sessions() as session:
        opt_out = await session.scalar(select(OptOut))
    assert opt_out is not None and opt_out.phone_e164 == queued.e164 and opt_out.keyword == "STOP"
    await eventually(lambda: out_of_queues(stores, [1, 2]), within=5)
    # The callback is cancelled with the reason.
    callback = temporal_client.get_workflow_handle_for(CallbackWorkflow.run, callback_workflow_id(2))
    assert await callback.result() == "cancelled"
    async with stores.postgres.connect() as conn:
        reason = await conn.scalar(text("SELECT reason FROM callbacks WHERE user_id = 2 AND status = 'cancelled'"))
    assert reason == STOP_REASON

    # Twilio retries the webhook, and the customer says it again: still one confirmation.
    assert (await post_twilio(http, settings, INBOUND, stop)).status_code == 200
    assert (await post_twilio(http, settings, INBOUND, inbound(settings, queued.e164, "STOP STOP"))).status_code == 200
    [confirmation] = await delivered(stores, "stop_confirmation")
    await asyncio.sleep(1.5)
    assert len(await outbound(stores, "stop_confirmation")) == 1
    assert sum("opted out" in body for body in await texts_to(emulator, queued.e164)) == 1
    async with stores.postgres.connect() as conn:
        inbound_rows = await conn.scalar(text("SELECT count(*) FROM sms_messages WHERE direction = 'inbound'"))
    assert inbound_rows == 2  # the retry was not threaded twice
    # Still out of the queues after a recompute (the rules see the opt-out).
    await recompute(stores, engine, [1, 2])
    assert await engine.position(1) is None

    # START: back in the queue within seconds, and told so.
    start = await post_twilio(http, settings, INBOUND, inbound(settings, queued.e164, "START"))

    assert start.status_code == 200
    await eventually(lambda: in_queue(stores, 1, "unsigned"), within=5)
    await delivered(stores, "start_confirmation")
    async with stores.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OptOut)) == 0
    assert confirmation.conversation_id == (await outbound(stores, "start_confirmation"))[0].conversation_id


async def _called(stores: Stores, customer: Customer, at: datetime, agent: int) -> uuid.UUID:
    """A call session to the customer started at ``at`` (the call itself is beside the point here)."""
    session_id = uuid.uuid4()
    async with stores.sessions() as session:
        session.add(
            CallSession(
                id=session_id,
                workflow_id=f"call-{customer.user_id}",
                user_id=customer.user_id,
                agent_id=agent,
                queue="unsigned",
                phone_e164=customer.e164,
                status="closed",
                started_at=at,
            )
        )
        await session.commit()
    return session_id


async def test_a_stop_on_the_day_of_a_call_reaches_the_review_queue_once_and_an_older_call_does_not(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_writer: AsyncEngine, settings: Settings
) -> None:
    today, earlier = await queued_customer(stores, replica_writer, 1), await queued_customer(stores, replica_writer, 3)
    priya = await agent_id(stores, PRIYA)
    called_today = await _called(stores, today, clock.instant() - timedelta(minutes=5), priya)
    await _called(stores, earlier, clock.day_start(settings) - timedelta(hours=1), priya)  # yesterday
    stop = inbound(settings, today.e164, "STOP")

    assert (await post_twilio(http, settings, INBOUND, stop)).status_code == 200
    assert (await post_twilio(http, settings, INBOUND, stop)).status_code == 200  # Twilio's retry
    assert (await post_twilio(http, settings, INBOUND, inbound(settings, today.e164, "STOP"))).status_code == 200
    assert (await post_twilio(http, settings, INBOUND, inbound(settings, earlier.e164, "STOP"))).status_code == 200
    await eventually(lambda: out_of_queues(stores, [1, 3]), within=10)
    cora = await login(http, "cora@rmc.example")

    async def stop_items() -> list[dict]:
        got = await http.get("/api/v1/compliance/reviews", params={"kind": "stop_after_call"}, headers=cora)
        assert got.status_code == 200, got.text
        return list(got.json()["items"])

    [item] = await eventually(stop_items, within=10)
    assert (item["user_id"], item["call_session_id"], item["agent_id"]) == (1, str(called_today), priya)
    assert item["status"] == "open"
    await asyncio.sleep(1.5)  # every fan-out has run: still the one item, none for the older call
    assert len(await stop_items()) == 1


async def test_a_stop_with_no_worker_running_is_recorded_at_once_and_fanned_out_when_one_runs(
    http: httpx.AsyncClient,
    stores: Stores,
    replica_writer: AsyncEngine,
    settings: Settings,
    temporal_client: Client,
    telephony: TwilioTelephony,
    emulator: EmulatorClient,
) -> None:
    """The webhook answers once the opt-out is committed, whatever the workers are doing; the
    fan-out waits in Temporal, is never lost, and runs once (a Twilio retry starts nothing more)."""
    task_queue = stores.settings.temporal_task_queue
    customer = await queued_customer(stores, replica_writer, 1)
    async with build_worker(temporal_client, stores, telephony, task_queue=task_queue):
        await book(temporal_client, stores, 1)
        await delivered(stores, "callback_confirmation")
    stop = inbound(settings, customer.e164, "STOP")

    # No worker: the opt-out is recorded and Twilio gets its answer; no text may go to the number.
    response = await post_twilio(http, settings, INBOUND, stop)
    retried = await post_twilio(http, settings, INBOUND, stop)

    assert response.status_code == 200 and retried.status_code == 200
    async with stores.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OptOut)) == 1
    headers = await login(http, SAM)
    refused = await http.post("/api/v1/sms/customers/1/messages", json={"text": "hello"}, headers=headers)
    assert refused.status_code == 409
    fan_out = temporal_client.get_workflow_handle(inbound_sms_workflow_id(stop["MessageSid"]))
    assert (await fan_out.describe()).status is not None  # started once, waiting for a worker

    async with build_worker(temporal_client, stores, telephony, task_queue=task_queue):
        await fan_out.result()
        callback = temporal_client.get_workflow_handle_for(CallbackWorkflow.run, callback_workflow_id(1))
        assert await callback.result() == "cancelled"
        await delivered(stores, "stop_confirmation")
    assert await out_of_queues(stores, [1])
    async with stores.postgres.connect() as conn:
        reason = await conn.scalar(text("SELECT reason FROM callbacks WHERE user_id = 1 AND status = 'cancelled'"))
    assert reason == STOP_REASON
    assert sum("opted out" in body for body in await texts_to(emulator, customer.e164)) == 1


async def test_cancel_in_reply_to_the_callback_text_cancels_the_callback_only(
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_writer: AsyncEngine,
    settings: Settings,
    temporal_client: Client,
    emulator: EmulatorClient,
) -> None:
    customer = await add_customer(replica_writer, 1)
    await book(temporal_client, stores, 1)
    await delivered(stores, "callback_confirmation")

    response = await post_twilio(http, settings, INBOUND, inbound(settings, customer.e164, "Cancel please"))

    assert response.status_code == 200
    handle = temporal_client.get_workflow_handle_for(CallbackWorkflow.run, callback_workflow_id(1))
    assert await handle.result() == "cancelled"
    assert (await handle.query(CallbackWorkflow.view)).history[-1].endswith(f"cancelled: {CANCEL_REASON}")
    await delivered(stores, "callback_cancelled")
    async with stores.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OptOut)) == 0  # not an opt-out
    # Once no callback is live, CANCEL is a message for the agents, never an opt-out.
    again = await post_twilio(http, settings, INBOUND, inbound(settings, customer.e164, "CANCEL"))
    assert again.status_code == 200
    async with stores.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OptOut)) == 0


async def test_a_forged_inbound_webhook_changes_nothing(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_writer: AsyncEngine, settings: Settings
) -> None:
    customer = await queued_customer(stores, replica_writer)
    stop = inbound(settings, customer.e164, "STOP")
    other_url = sign(settings, settings.public_base_url + "/api/v1/webhooks/twilio/voice-status", stop)
    forger = settings.model_copy(update={"twilio_auth_token": SecretStr("not-ours")})
    wrong_token = sign(forger, settings.public_base_url + INBOUND, stop)

    for signature in ("", "bm9wZQ==", other_url, wrong_token):
        response = await post_twilio(http, settings, INBOUND, stop, signature=signature)
        assert response.status_code == 403
    unsigned = await http.post(INBOUND, data=stop)

    assert unsigned.status_code == 403
    assert (await queue_engine(stores).position(1))[0] == "unsigned"  # type: ignore[index]
    async with stores.postgres.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM opt_outs")) == 0
        assert await conn.scalar(text("SELECT count(*) FROM sms_messages")) == 0
        assert await conn.scalar(text("SELECT count(*) FROM sms_conversations")) == 0


async def test_nothing_is_sent_to_an_opted_out_number(
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_writer: AsyncEngine,
    settings: Settings,
    temporal_client: Client,
    emulator: EmulatorClient,
) -> None:
    customer = await queued_customer(stores, replica_writer)
    await post_twilio(http, settings, INBOUND, inbound(settings, customer.e164, "unsubscribe"))
    await delivered(stores, "stop_confirmation")
    sam = await login(http, SAM)

    text_ = await http.post("/api/v1/sms/customers/1/messages", json={"template": "missed_call"}, headers=sam)
    link = await http.post("/api/v1/sms/customers/1/magic-links", json={"purpose": "sign"}, headers=sam)
    # Even a workflow that asks anyway (as a callback reminder would) is stopped at send time.
    outcome = await temporal_client.execute_workflow(
        SendSmsWorkflow.run,
        SendSmsInput(user_id=1, template="missed_call"),
        id=sms_workflow_id("test", uuid.uuid4().hex),
        task_queue=settings.temporal_task_queue,
    )

    assert text_.status_code == 409 and text_.json()["error"]["code"] == "opted_out"
    assert link.status_code == 409
    assert outcome.status == SendStatus.BLOCKED
    assert [b for b in await texts_to(emulator, customer.e164) if "opted out" not in b] == []
    assert [m.status for m in await outbound(stores, "missed_call")] == ["blocked"]


# --- who reads what --------------------------------------------------------------------------------


async def test_an_agent_reads_only_their_customers_conversations(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_writer: AsyncEngine, settings: Settings
) -> None:
    customer = await queued_customer(stores, replica_writer)
    priya, tom, sam = await login(http, PRIYA), await login(http, TOM), await login(http, SAM)
    async with stores.sessions() as session:  # Priya called this customer earlier
        session.add(
            CallSession(
                id=uuid.uuid4(),
                workflow_id=f"call-test-{uuid.uuid4().hex}",
                user_id=1,
                agent_id=await agent_id(stores, PRIYA),
                queue="unsigned",
                phone_e164=customer.e164,
                status="closed",
                started_at=datetime.now(UTC),
            )
        )
        await session.commit()
    await post_twilio(http, settings, INBOUND, inbound(settings, customer.e164, "call me tomorrow at 10"))

    mine = (await http.get("/api/v1/sms/conversations", headers=priya)).json()["items"]
    assert [(c["user_id"], c["unread_count"], c["last_preview"]) for c in mine] == [(1, 1, "call me tomorrow at 10")]
    conversation_id = mine[0]["id"]
    thread = await http.get(f"/api/v1/sms/conversations/{conversation_id}/messages", headers=priya)
    assert thread.status_code == 200 and thread.json()["items"][0]["body"] == "call me tomorrow at 10"
    assert (await http.get("/api/v1/sms/conversations?unread_only=true", headers=priya)).json()["items"] == []

    refused = [
        await http.get(f"/api/v1/sms/conversations/{conversation_id}/messages", headers=tom),
        await http.get("/api/v1/sms/customers/1/messages", headers=tom),
        await http.post("/api/v1/sms/customers/1/messages", json={"template": "missed_call"}, headers=tom),
        await http.post("/api/v1/sms/customers/1/magic-links", json={"purpose": "sign"}, headers=tom),
    ]
    assert [r.status_code for r in refused] == [403] * 4
    assert {r.json()["error"]["code"] for r in refused} == {"not_your_customer"}
    assert (await http.get("/api/v1/sms/conversations", headers=tom)).json()["items"] == []
    assert (await http.get("/api/v1/sms/conversations/all", headers=tom)).status_code == 403
    async with stores.postgres.connect() as conn:
        audited = (
            await conn.execute(
                text("SELECT actor_agent_id, subject_id FROM audit_log WHERE action = 'sms.access_denied'")
            )
        ).all()
    assert len(audited) == 4 and {a.actor_agent_id for a in audited} == {await agent_id(stores, TOM)}
    everything = (await http.get("/api/v1/sms/conversations/all", headers=sam)).json()["items"]
    assert [c["id"] for c in everything] == [conversation_id]


# --- magic links -----------------------------------------------------------------------------------


async def test_a_magic_link_is_texted_verified_once_by_the_portal_and_recorded(
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_writer: AsyncEngine,
    settings: Settings,
    temporal_client: Client,
    emulator: EmulatorClient,
) -> None:
    customer = await queued_customer(stores, replica_writer, signed=True)
    sam = await login(http, SAM)

    response = await http.post(
        "/api/v1/sms/customers/1/magic-links",
        json={"purpose": "upload", "requirement_id": customer.requirement_id},
        headers=sam,
    )

    assert response.status_code == 202, response.text
    workflow_id = response.json()["workflow_id"]
    [message] = await delivered(stores, "magic_link_upload")
    [body] = await texts_to(emulator, customer.e164)
    assert body.startswith("RMC Claims: please upload your bank statements here: https://portal.example.co.uk/m/")
    token = body.split("/m/", 1)[1].split()[0]
    assert token not in message.body
    verify = "/api/v1/portal/magic-links/verify"
    key = {"X-Portal-Key": settings.portal_api_key.get_secret_value()}

    assert (await http.post(verify, json={"token": token}, headers={"X-Portal-Key": "nope"})).status_code == 401
    first = await http.post(verify, json={"token": token}, headers=key)
    second = await http.post(verify, json={"token": token}, headers=key)

    assert first.status_code == 200
    assert (first.json()["user_id"], first.json()["purpose"], first.json()["requirement_id"]) == (
        1,
        "upload",
        customer.requirement_id,
    )
    assert second.status_code == 409
    result = await temporal_client.get_workflow_handle_for(MagicLinkWorkflow.run, workflow_id).result()
    assert result.result == "used"
    async with stores.postgres.connect() as conn:
        history = (await conn.execute(text("SELECT channel, result FROM contact_attempts"))).all()
    assert [tuple(h) for h in history] == [("sms", "magic_link_used")]
