"""Finding 1 of docs/RELIABILITY.md: a call whose webhooks find the API down must not strand its
session, nor its agent.

Twilio (the emulator, like Twilio) posts the TwiML fetch and the status callbacks once; with the API
down they meet a closed port and are lost for good. The session then hears nothing more of its call:
it asks the carrier (``CallActivities.check_call``, the twilio SDK's ``calls(sid).fetch()``) after
``carrier_check_after_s`` and every ``carrier_check_every_s`` while the call is live, and ends the call
on what the carrier says. Short checks here (3 s, then every 2 s) keep each test to seconds.

The real API served over HTTP (stopped and started again on its port, as the supervisor restarts a
killed one), the real worker, the Temporal dev server, PostgreSQL, Redis and MariaDB, and the Twilio
emulator."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from temporalio.client import Client
from temporalio.worker import Worker

from devstack.demo import ensure_demo_accounts
from devstack.twilio_emulator.client import EmulatorClient
from dialler.calls.messages import call_workflow_id
from dialler.calls.models import ContactAttempt
from dialler.compliance.facts import number_facts
from dialler.config import Settings
from dialler.integrations.sqs import ensure_cdc_queues
from dialler.runtime import Stores
from tests.support.call_sessions import customer_call, queue_one_customer, start_available
from tests.support.histories import record_history
from tests.support.journeys import in_state
from tests.support.live_api import LiveServer, eventually

pytestmark = pytest.mark.e2e

AGENT = "priya@rmc.example"
CHECK_AFTER_S, CHECK_EVERY_S = 3, 2
# From the call's end to the agent's wrap-up: the next check, and time for a loaded machine.
ENDS_WITHIN_S = CHECK_AFTER_S + CHECK_EVERY_S + 10


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"carrier_check_after_s": CHECK_AFTER_S, "carrier_check_every_s": CHECK_EVERY_S})


class Api:
    """The live API on ``settings.public_base_url``, which a test stops (its port closed: Twilio's
    webhooks find nobody, as after a SIGKILL) and starts again on the same port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.public_base_url
        self._server: LiveServer | None = None

    def start(self) -> None:
        self._server = LiveServer(self.settings).__enter__()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.__exit__(None, None, None)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=15)


@pytest_asyncio.fixture
async def api(settings: Settings, stores: Stores, replica_url: str) -> AsyncIterator[Api]:
    ensure_cdc_queues(settings)
    async with stores.sessions() as session:
        await ensure_demo_accounts(session)
    api = Api(settings)
    api.start()
    yield api
    api.stop()


async def webhooks_of(emulator: EmulatorClient, call_sid: str, final: str) -> list[tuple[str, bool]]:
    """The call's webhooks in the order posted, once its final status callback (``final``) has been
    tried: the status (``twiml`` for a TwiML request: the fetch at the answer, the bridge's
    ``<Dial action>``) and whether it was delivered."""

    async def tried() -> list[dict[str, Any]] | None:
        hooks = [
            h
            for h in await asyncio.to_thread(emulator.webhooks)
            if h["params"].get("CallSid") == call_sid and "/api/v1/webhooks/" in h["url"]  # ours, not a TwiML Bin
        ]
        done = any(h["params"].get("CallStatus") == final and h["status"] is not None for h in hooks)
        return hooks if done else None

    hooks: list[dict[str, Any]] = await eventually(tried, within=10)
    return [
        (h["params"]["CallStatus"] if "voice-status" in h["url"] else "twiml", isinstance(h["status"], int))
        for h in hooks
    ]


async def the_attempt(stores: Stores, session_id: str) -> tuple[str, bool, bool]:
    """The session's attempt once it has closed: its result, whether it counts as abandoned, and
    whether the 72 h cool-off now holds its number (what the dial gate reads)."""

    async def recorded() -> Any:
        async with stores.postgres.connect() as conn:
            return (
                await conn.execute(
                    select(ContactAttempt.result, ContactAttempt.abandoned, ContactAttempt.phone_e164).where(
                        ContactAttempt.call_session_id == uuid.UUID(session_id)
                    )
                )
            ).first()

    result, abandoned, phone = await eventually(recorded, within=30)
    async with stores.postgres.connect() as conn:
        facts = await number_facts(conn, now=datetime.now(UTC), phones=[phone])
    return result, abandoned, phone in facts.abandoned_at


async def ends_and_frees_the_agent(
    api: Api, headers: dict[str, str], session_id: str, *, end_reason: str, answered: bool, disposition: str
) -> None:
    """The session reaches wrap-up on its own with the call's real end, the agent records the
    outcome, and next-call gives the agent another customer."""
    async with api.client() as http:
        await eventually(lambda: in_state(http, headers, session_id, "wrap_up"), within=ENDS_WITHIN_S)
        view = (await http.get(f"/api/v1/calls/{session_id}", headers=headers)).json()
        assert (view["end_reason"], view["answered"]) == (end_reason, answered), view
        saved = await http.post(
            f"/api/v1/calls/{session_id}/outcome", json={"disposition": disposition}, headers=headers
        )
        assert saved.status_code == 200, saved.text

        async def next_customer() -> dict[str, Any] | None:
            response = await http.post("/api/v1/agents/me/next-call", headers=headers)
            body = response.json()
            return body if response.status_code == 200 and body.get("session_id") else None

        offered = await eventually(next_customer, within=15, every=0.5)
        assert offered["session_id"] != session_id


@pytest.mark.parametrize(
    ("behaviour", "end_reason", "answered", "disposition"),
    [
        ("answer", "completed", True, "not_interested"),
        ("busy", "busy", False, "busy"),
        ("no-answer", "no_answer", False, "no_answer"),
    ],
)
async def test_a_call_placed_while_the_api_is_down_ends_on_the_carriers_status_and_frees_the_agent(
    api: Api,
    worker: Worker,
    stores: Stores,
    replica_url: str,
    emulator: EmulatorClient,
    temporal_client: Client,
    behaviour: str,
    end_reason: str,
    answered: bool,
    disposition: str,
) -> None:
    """The chaos run's case: the API is SIGKILLed just after the agent dials. Every webhook of the
    call (ringing, the TwiML fetch at the answer, the final status) finds the port closed; the
    customer answers (Twilio then plays the information message from the fallback URL, which is not
    the API, and ends the call), is busy, or does not answer."""
    emulator.script("*", behaviour=behaviour, answer_after_s=1.0, hangup_after_s=None)
    await queue_one_customer(stores, replica_url)
    async with api.client() as http:
        headers = await start_available(http, AGENT)
        offered = (await http.post("/api/v1/agents/me/next-call", headers=headers)).json()
        session_id, user_id = offered["session_id"], offered["customer"]["user_id"]
        assert (await http.post(f"/api/v1/calls/{session_id}/dial", headers=headers)).status_code == 202
    # Stopped in the test's own event loop, which the worker shares: the call is placed after the API
    # is gone, so none of its webhooks can arrive.
    api.stop()
    call_sid = await customer_call(emulator)
    timeline = await asyncio.to_thread(emulator.wait_ended, call_sid, 20.0)
    assert timeline.answered is answered
    hooks = await webhooks_of(emulator, call_sid, final="completed" if answered else behaviour)
    assert not any(delivered for _, delivered in hooks), hooks  # nothing reached the session
    assert (("twiml", False) in hooks) is answered, hooks
    if answered:  # the information message, not Twilio's apology, and nobody put through
        said = [e["text"] for e in timeline.events if e["kind"] == "say_start"]
        assert said and all("none of our advisers is free" in t or "That number again" in t for t in said), said
        assert "person_connected" not in timeline.kinds()
    ended = time.monotonic()
    api.start()

    await ends_and_frees_the_agent(
        api, headers, session_id, end_reason=end_reason, answered=answered, disposition=disposition
    )
    assert time.monotonic() - ended < ENDS_WITHIN_S + 15
    # Ofcom: the customer who answered heard the information message and no agent, for longer than the
    # 2 s allowance. The answer's webhook never decided it, so the carrier's record does at the finish:
    # it counts towards the abandoned rate and locks the number for 72 h, whatever the agent recorded.
    assert await the_attempt(stores, session_id) == (
        ("abandoned", True, True) if answered else (disposition, False, False)
    )
    if behaviour == "answer":  # how tests/workflows/histories/call-session-new-carrier-status-check.json was made
        handle = temporal_client.get_workflow_handle(call_workflow_id(user_id))
        await asyncio.wait_for(handle.result(), 30)
        await record_history(handle, "call-session-new-carrier-status-check", stores.settings)


async def test_a_customer_who_hangs_up_while_the_api_is_down_ends_the_call_and_frees_the_agent(
    api: Api, worker: Worker, stores: Stores, replica_url: str, emulator: EmulatorClient
) -> None:
    """The API dies during the conversation: the customer's hang-up (``completed``) finds the port
    closed, and the session, which heard the answer, learns of the end from its periodic check."""
    emulator.script("*", behaviour="answer", answer_after_s=0.5, hangup_after_s=None)
    await queue_one_customer(stores, replica_url)
    async with api.client() as http:
        headers = await start_available(http, AGENT)
        session_id = (await http.post("/api/v1/agents/me/next-call", headers=headers)).json()["session_id"]
        assert (await http.post(f"/api/v1/calls/{session_id}/dial", headers=headers)).status_code == 202
        call_sid = await customer_call(emulator)
        await asyncio.to_thread(emulator.wait_for, call_sid, "person_connected", 20.0)
        await eventually(lambda: in_state(http, headers, session_id, "in_progress"))
    api.stop()
    await asyncio.sleep(CHECK_AFTER_S + CHECK_EVERY_S)  # talking past the first checks: the call is live
    await asyncio.to_thread(emulator.customer_hangup, call_sid)
    await asyncio.to_thread(emulator.wait_ended, call_sid, 20.0)
    statuses = [hook for hook in await webhooks_of(emulator, call_sid, final="completed") if hook[0] != "twiml"]
    assert statuses[-1] == ("completed", False), statuses
    api.start()

    await ends_and_frees_the_agent(
        api, headers, session_id, end_reason="completed", answered=True, disposition="not_interested"
    )
    # The agent was put through within the 2 s: a conversation, not an abandoned call.
    assert await the_attempt(stores, session_id) == ("not_interested", False, False)
