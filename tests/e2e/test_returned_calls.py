"""Returned calls (journey 7): a customer rings the number we called them from.

The product in Twilio mode against the Twilio emulator, with the real API and worker: the customer's
call reaches the inbound voice webhook, which rings the agent who called them (their workspace shows
the customer while it rings); out of hours the caller hears the opening hours; an unknown number
reaches any free agent without a customer on screen. Every returned call is recorded."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright, expect
from sqlalchemy import select, text, update
from temporalio.client import Client
from temporalio.worker import Worker

from api.routes.voice import START_TIMEOUT_S
from devstack.twilio_emulator.client import EmulatorClient
from dialler.agents.models import Agent
from dialler.calls.inbound import opening_hours_text
from dialler.config import Settings, TelephonyMode
from dialler.integrations.twilio import TwilioTelephony
from dialler.integrations.twilio_voice import agent_identity
from dialler.queues.engine import QueueEntry
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.browser import ConsoleErrors, assert_labelled, open_page, shot, sign_in
from tests.support.call_sessions import customer_call, queue_one_customer, start_available
from tests.support.live_api import eventually, login

pytestmark = pytest.mark.e2e

PRIYA, TOM = "priya@rmc.example", "tom@rmc.example"
AISHA, DAN, CORA = "aisha@rmc.example", "dan@rmc.example", "cora@rmc.example"
UNKNOWN = "+447700900123"
# A non-routable address: a connection to it hangs (as to a Temporal that is down) rather than failing fast.
UNREACHABLE_TEMPORAL = "10.255.255.1:7233"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run"]  # Ofcom drama range: no customer has it


@pytest.fixture
def settings(settings: Settings, emulator: EmulatorClient, request: pytest.FixtureRequest) -> Settings:
    """Twilio mode against the emulator; ``@pytest.mark.out_of_hours`` moves the business clock from
    the suite's Wednesday 11:00 to 23:00, when the lines are closed; ``@pytest.mark.temporal_down``
    points the API at a Temporal that never answers."""
    update: dict[str, Any] = {"telephony_mode": TelephonyMode.TWILIO, "twilio_api_base_url": emulator.url}
    if request.node.get_closest_marker("out_of_hours") is not None:
        update["clock_offset_s"] = settings.clock_offset_s + 12 * 3600
    if request.node.get_closest_marker("temporal_down") is not None:
        update["temporal_address"] = UNREACHABLE_TEMPORAL
    return settings.model_copy(update=update)


@pytest_asyncio.fixture
async def telephony(stores: Stores) -> AsyncIterator[TwilioTelephony]:  # type: ignore[override]
    """The worker places its calls through the emulator (the SDK, as in production)."""
    twilio = TwilioTelephony(stores.settings)
    yield twilio
    await twilio.aclose()


async def agent_id(stores: Stores, email: str) -> int:
    async with stores.postgres.connect() as conn:
        found = await conn.scalar(select(Agent.id).where(Agent.email == email))
    assert found is not None
    return int(found)


async def ready(http: httpx.AsyncClient, email: str) -> dict[str, str]:
    """Available, with the browser phone connected."""
    headers = await start_available(http, email)
    assert (await http.post("/api/v1/voice/device-ready", headers=headers)).status_code == 204
    return headers


def ring_us(stores: Stores, emulator: EmulatorClient, from_: str) -> str:
    url = f"{stores.settings.public_base_url}/api/v1/webhooks/twilio/voice/inbound"
    return emulator.inbound_call(from_=from_, to=stores.settings.caller_id, url=url)


async def inbound_rows(stores: Stores) -> list[tuple[Any, ...]]:
    async with stores.postgres.connect() as conn:
        rows = await conn.execute(
            text("SELECT call_sid, user_id, agent_id, outcome FROM inbound_calls ORDER BY received_at")
        )
        return [tuple(r) for r in rows]


async def a_call_by_priya(http: httpx.AsyncClient, stores: Stores, replica_url: str, emulator: EmulatorClient) -> dict:
    """Priya calls a customer (who answers, then hangs up) and records the outcome: the missed-call
    text's "call us back" is what the customer acts on next."""
    emulator.script("*", behaviour="answer", answer_after_s=0.3, hangup_after_s=None)
    await queue_one_customer(stores, replica_url)
    async with stores.sessions() as session:
        await session.execute(update(Agent).where(Agent.email == PRIYA).values(progressive_mode=False))
        await session.commit()
    headers = await start_available(http, PRIYA)
    offered = (await http.post("/api/v1/agents/me/next-call", headers=headers)).json()
    path = f"/api/v1/calls/{offered['session_id']}"
    assert (await http.post(f"{path}/dial", headers=headers)).status_code == 202

    try:
        sid = await customer_call(emulator)
    except AssertionError:
        raise AssertionError(str(emulator.calls())) from None
    await asyncio.to_thread(emulator.wait_for, sid, "person_connected", 20.0)
    await asyncio.to_thread(emulator.customer_hangup, sid)
    states: list[str] = []

    async def wrap_up() -> bool:
        states.append((await http.get(path, headers=headers)).json()["state"])
        return states[-1] == "wrap_up"

    try:
        await eventually(wrap_up, within=30)
    except AssertionError:
        raise AssertionError(f"states: {sorted(set(states))}") from None
    saved = await http.post(f"{path}/outcome", json={"disposition": "not_interested"}, headers=headers)
    assert saved.status_code == 200, saved.text
    async with stores.postgres.connect() as conn:
        phone = await conn.scalar(
            text("SELECT phone_e164 FROM call_sessions WHERE id = :s"), {"s": uuid.UUID(offered["session_id"])}
        )
    return {"user_id": offered["customer"]["user_id"], "phone": phone}


async def test_a_customer_we_called_rings_back_and_reaches_the_agent_who_called_with_their_context_on_screen(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_url: str, emulator: EmulatorClient
) -> None:
    called = await a_call_by_priya(http, stores, replica_url, emulator)
    priya_id, tom_id = await agent_id(stores, PRIYA), await agent_id(stores, TOM)
    # Both free and Tom just as able to take it: the customer must get Priya, who called them.
    for identity in (agent_identity(priya_id), agent_identity(tom_id)):
        emulator.device(identity, action="ignore")  # they let it ring: the screen-pop is before answering
    priya, tom = await ready(http, PRIYA), await ready(http, TOM)

    sid = await asyncio.to_thread(ring_us, stores, emulator, called["phone"])
    timeline = await asyncio.to_thread(emulator.wait_for, sid, "agent_ringing", 15.0)
    [dial] = [e for e in timeline.events if e["kind"] == "dial"]
    assert agent_identity(priya_id) in str(dial), dial
    assert "This call is recorded" in " ".join(timeline.said())

    live = (await http.get("/api/v1/agents/me/live", headers=priya)).json()
    assert live["inbound"] is not None, live
    assert live["inbound"]["user_id"] == called["user_id"]
    assert live["inbound"]["customer"]["user_id"] == called["user_id"]  # the claims, before hello
    assert (await http.get("/api/v1/agents/me/live", headers=tom)).json()["inbound"] is None
    assert await inbound_rows(stores) == [(sid, called["user_id"], priya_id, "routed_last_agent")]

    # Nobody picks up: the caller hears the opening hours, not silence.
    ended = await asyncio.to_thread(emulator.wait_ended, sid, 40.0)
    assert any("Our advisers are available" in s for s in ended.said()), ended.events

    # Priya was held while it rang, and is free again, with the call off her screen; no session opened.
    async def freed() -> bool:
        live = (await http.get("/api/v1/agents/me/live", headers=priya)).json()
        return live["presence"]["state"] == "available" and live["inbound"] is None

    await eventually(freed, within=20)
    async with stores.postgres.connect() as conn:
        answered, ended_at = (
            await conn.execute(text("SELECT answered_at, ended_at FROM inbound_calls WHERE call_sid = :s"), {"s": sid})
        ).one()
        sessions = await conn.scalar(text("SELECT count(*) FROM call_sessions WHERE queue = 'inbound'"))
    assert answered is None and ended_at is not None and sessions == 0


async def place_in_queue(stores: Stores, user_id: int, queue: str, *, vulnerable: bool = False) -> None:
    """The customer's current queue, as the queue engine has it (a rebuild or CDC moved them)."""
    await queue_engine(stores).upsert(QueueEntry(user_id, queue, score=1.0, vulnerable=vulnerable))


async def on_a_break(http: httpx.AsyncClient, email: str) -> None:
    """Signed in with the browser phone connected, but not free to take a call."""
    headers = await ready(http, email)
    response = await http.put(
        "/api/v1/agents/me/presence", json={"state": "break", "reason": "meeting"}, headers=headers
    )
    assert response.status_code == 200, response.text


async def test_with_the_agent_who_called_busy_an_agent_assigned_to_the_customers_current_queue_gets_the_call(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_url: str, emulator: EmulatorClient
) -> None:
    called = await a_call_by_priya(http, stores, replica_url, emulator)  # from the unsigned queue
    tom_id, aisha_id = await agent_id(stores, TOM), await agent_id(stores, AISHA)
    # Since then the customer has moved to outstanding_requests: Aisha's queue, not Tom's (unsigned).
    await place_in_queue(stores, called["user_id"], "outstanding_requests")
    await on_a_break(http, PRIYA)
    for identity in (agent_identity(tom_id), agent_identity(aisha_id)):
        emulator.device(identity, action="ignore")
    await ready(http, TOM)  # free, and first in id order: only the queue tier passes him over
    aisha = await ready(http, AISHA)

    sid = await asyncio.to_thread(ring_us, stores, emulator, called["phone"])
    timeline = await asyncio.to_thread(emulator.wait_for, sid, "agent_ringing", 15.0)
    [dial] = [e for e in timeline.events if e["kind"] == "dial"]
    assert agent_identity(aisha_id) in str(dial), dial
    assert await inbound_rows(stores) == [(sid, called["user_id"], aisha_id, "routed_queue")]
    live = (await http.get("/api/v1/agents/me/live", headers=aisha)).json()
    assert live["inbound"]["customer"]["user_id"] == called["user_id"]
    await asyncio.to_thread(emulator.customer_hangup, sid)


async def test_a_vulnerable_caller_is_never_routed_to_an_untrained_agent(
    http: httpx.AsyncClient, worker: Worker, stores: Stores, replica_url: str, emulator: EmulatorClient
) -> None:
    called = await a_call_by_priya(http, stores, replica_url, emulator)
    user_id = called["user_id"]
    marked = await http.put(
        f"/api/v1/compliance/customers/{user_id}/vulnerable",
        json={"vulnerable": True, "reason": "told us of a bereavement"},
        headers=await login(http, CORA),
    )
    assert marked.status_code == 200, marked.text
    await place_in_queue(stores, user_id, "unsigned", vulnerable=True)
    # Priya called them and Tom is on their queue, both free but untrained; Dan (on the queue too) is trained.
    async with stores.sessions() as session:
        await session.execute(update(Agent).where(Agent.email.in_([PRIYA, TOM])).values(trained_vulnerable=False))
        await session.execute(update(Agent).where(Agent.email == DAN).values(trained_vulnerable=True))
        await session.commit()
    ids = {email: await agent_id(stores, email) for email in (PRIYA, TOM, DAN)}
    for identity in map(agent_identity, ids.values()):
        emulator.device(identity, action="ignore")
    for email in ids:
        await ready(http, email)

    sid = await asyncio.to_thread(ring_us, stores, emulator, called["phone"])
    timeline = await asyncio.to_thread(emulator.wait_for, sid, "agent_ringing", 15.0)
    [dial] = [e for e in timeline.events if e["kind"] == "dial"]
    assert agent_identity(ids[DAN]) in str(dial), dial
    assert await inbound_rows(stores) == [(sid, user_id, ids[DAN], "routed_queue")]
    await asyncio.to_thread(emulator.customer_hangup, sid)
    await asyncio.to_thread(emulator.wait_ended, sid, 20.0)

    # With no trained agent free, the caller hears the opening hours rather than reach an untrained one.
    await on_a_break(http, DAN)
    sid = await asyncio.to_thread(ring_us, stores, emulator, called["phone"])
    ended = await asyncio.to_thread(emulator.wait_ended, sid, 20.0)
    assert "dial" not in ended.kinds()
    assert (await inbound_rows(stores))[-1] == (sid, user_id, None, "nobody_free")


async def test_an_unknown_number_reaches_any_free_agent_without_a_customer_on_screen(
    http: httpx.AsyncClient, stores: Stores, emulator: EmulatorClient
) -> None:
    tom_id = await agent_id(stores, TOM)
    emulator.device(agent_identity(tom_id), action="ignore")
    tom = await ready(http, TOM)

    sid = await asyncio.to_thread(ring_us, stores, emulator, UNKNOWN)
    await asyncio.to_thread(emulator.wait_for, sid, "agent_ringing", 15.0)
    live = (await http.get("/api/v1/agents/me/live", headers=tom)).json()
    assert live["inbound"]["call_sid"] == sid and live["inbound"]["user_id"] is None
    assert live["inbound"]["customer"] is None
    assert await inbound_rows(stores) == [(sid, None, tom_id, "routed_any")]
    await asyncio.to_thread(emulator.customer_hangup, sid)


async def test_nobody_free_the_caller_hears_who_we_are_and_the_opening_hours(
    http: httpx.AsyncClient, stores: Stores, emulator: EmulatorClient
) -> None:
    # `http` runs the API (the webhook's server); nobody is available.
    sid = await asyncio.to_thread(ring_us, stores, emulator, UNKNOWN)
    ended = await asyncio.to_thread(emulator.wait_ended, sid, 20.0)
    said = " ".join(ended.said())
    assert stores.settings.company_name in said and "busy" in said and "Monday to Friday" in said
    assert "dial" not in ended.kinds()
    assert await inbound_rows(stores) == [(sid, None, None, "nobody_free")]


@pytest.mark.out_of_hours
async def test_out_of_hours_the_caller_hears_the_opening_hours_and_no_agent_is_rung(
    http: httpx.AsyncClient, stores: Stores, emulator: EmulatorClient
) -> None:
    await ready(http, TOM)  # someone is even logged in: out of hours still closes the line

    sid = await asyncio.to_thread(ring_us, stores, emulator, UNKNOWN)
    ended = await asyncio.to_thread(emulator.wait_ended, sid, 20.0)
    said = " ".join(ended.said())
    assert stores.settings.company_name in said and "closed" in said
    assert opening_hours_text(stores.settings) in said
    assert "dial" not in ended.kinds()
    assert await inbound_rows(stores) == [(sid, None, None, "out_of_hours")]


async def test_the_agent_who_called_answers_the_returned_call_and_closes_it_with_an_outcome_counted_as_contact(
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_url: str,
    emulator: EmulatorClient,
    temporal_client: Client,
) -> None:
    called = await a_call_by_priya(http, stores, replica_url, emulator)
    user_id, priya_id = called["user_id"], await agent_id(stores, PRIYA)
    emulator.device(agent_identity(priya_id), action="manual")  # Priya answers when the test says so
    priya = await ready(http, PRIYA)
    attempts_before = await attempts_of(stores, user_id)

    sid = await asyncio.to_thread(ring_us, stores, emulator, called["phone"])
    timeline = await asyncio.to_thread(emulator.wait_for, sid, "agent_ringing", 15.0)
    [dial] = [e for e in timeline.events if e["kind"] == "dial"]

    async def held_with_the_customer_on_screen() -> dict | None:
        live = (await http.get("/api/v1/agents/me/live", headers=priya)).json()
        ok = live["presence"]["state"] == "reserved" and live["inbound"] and live["inbound"]["customer"]
        return live if ok else None

    live = await eventually(held_with_the_customer_on_screen, within=15)  # the screen-pop, before hello
    assert live["inbound"]["customer"]["user_id"] == user_id and live["call"] is None
    # Nothing else is offered to her while it rings.
    offered = await http.post("/api/v1/agents/me/next-call", headers=priya)
    assert offered.status_code == 409 or offered.json()["customer"] is None, offered.text

    await asyncio.to_thread(emulator.accept, dial["call_sid"])
    await asyncio.to_thread(emulator.wait_for, sid, "person_connected", 15.0)

    async def on_the_call() -> dict | None:
        live = (await http.get("/api/v1/agents/me/live", headers=priya)).json()
        ok = live["presence"]["state"] == "on_call" and live["call"] and live["call"]["state"] == "in_progress"
        return live if ok else None

    call = (await eventually(on_the_call, within=15))["call"]
    assert call["queue"] == "inbound" and call["user_id"] == user_id
    path = f"/api/v1/calls/{call['session_id']}"
    refused = await http.post(f"{path}/outcome", json={"disposition": "not_interested"}, headers=priya)
    assert refused.status_code == 409, refused.text  # hang up first, as on any call

    await asyncio.to_thread(emulator.customer_hangup, sid)

    async def wrapping_up() -> dict | None:
        live = (await http.get("/api/v1/agents/me/live", headers=priya)).json()
        ok = live["presence"]["state"] == "wrap_up" and live["call"] and live["call"]["state"] == "wrap_up"
        return live if ok else None

    await eventually(wrapping_up, within=20)
    # "No answer" describes a call we placed: not an outcome of one the customer made.
    wrong = await http.post(f"{path}/outcome", json={"disposition": "no_answer"}, headers=priya)
    assert wrong.status_code == 422, wrong.text
    saved = await http.post(
        f"{path}/outcome",
        json={"disposition": "docs_promised", "notes": "will send the bank statements"},
        headers=priya,
    )
    assert saved.status_code == 200, saved.text

    async def available() -> bool:
        live = (await http.get("/api/v1/agents/me/live", headers=priya)).json()
        return live["presence"]["state"] == "available" and live["call"] is None and live["inbound"] is None

    await eventually(available, within=20)
    async with stores.postgres.connect() as conn:
        outcome = (
            await conn.execute(
                text(
                    "SELECT o.disposition, o.user_id, o.agent_id, s.queue, s.closed_at IS NOT NULL AS closed"
                    " FROM call_outcomes o JOIN call_sessions s ON s.id = o.call_session_id"
                    " WHERE s.twilio_call_sid = :sid"
                ),
                {"sid": sid},
            )
        ).one()
        answered, ended = (
            await conn.execute(text("SELECT answered_at, ended_at FROM inbound_calls WHERE call_sid = :s"), {"s": sid})
        ).one()
    assert tuple(outcome) == ("docs_promised", user_id, priya_id, "inbound", True)

    # Recorded (CMCOB 2.3.2), after the notice, and the recording is the returned call's session's.
    said = (await asyncio.to_thread(emulator.timeline, sid)).said()
    assert said and said[0].startswith("This call is recorded"), said

    async def recording() -> tuple | None:
        async with stores.postgres.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT r.user_id, s.queue FROM call_recordings r"
                        " JOIN call_sessions s ON s.id = r.call_session_id WHERE r.call_sid = :sid"
                    ),
                    {"sid": sid},
                )
            ).one_or_none()
        return tuple(row) if row else None

    assert await eventually(recording, within=20) == (user_id, "inbound")
    assert answered is not None and ended is not None and answered < ended
    # A contact (the outcome), never an attempt: the caps on our calls count only the calls we make.
    assert await attempts_of(stores, user_id) == attempts_before == 1

    # Documents promised: the upload link follows, as after any call (when something is pending).
    async with stores.replica.connect() as conn:
        pending = await conn.scalar(
            text(
                "SELECT count(*) FROM claim_requirements r JOIN claims c ON c.id = r.claim_id"
                " WHERE c.user_id = :u AND r.status = 'PENDING' AND r.deleted_at IS NULL AND c.deleted_at IS NULL"
            ),
            {"u": user_id},
        )

    async def upload_links() -> int | None:
        async with stores.postgres.connect() as conn:
            n = await conn.scalar(
                text("SELECT count(*) FROM magic_links WHERE user_id = :u AND purpose = 'upload'"), {"u": user_id}
            )
        return int(n or 0) or None

    if pending:
        assert await eventually(upload_links, within=20) == 1
    else:
        assert await upload_links() is None

    # Supervisors find it in the Temporal UI by agent and queue, with its outcome.
    query = f"AgentId = '{priya_id}' AND QueueType = 'inbound' AND Disposition = 'docs_promised'"
    found = [w async for w in temporal_client.list_workflows(query)]
    assert [w.id for w in found] == [f"inbound-call-{sid}"]


async def attempts_of(stores: Stores, user_id: int) -> int:
    async with stores.postgres.connect() as conn:
        count = await conn.scalar(text("SELECT count(*) FROM contact_attempts WHERE user_id = :u"), {"u": user_id})
    return int(count or 0)


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def test_in_chromium_the_agent_sees_the_screen_pop_while_it_rings_answers_and_saves_the_outcome(
    live_api: str,
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_url: str,
    emulator: EmulatorClient,
    browser: Browser,
) -> None:
    called = await a_call_by_priya(http, stores, replica_url, emulator)
    priya_id = await agent_id(stores, PRIYA)
    await start_available(http, PRIYA)

    console = ConsoleErrors()
    page_context, page = await open_page(browser, console, "agent-returned-call")
    await sign_in(page, live_api, PRIYA)
    await expect(page).to_have_url(re.compile(r"/agent$"))
    await expect(page.locator("#status-now")).to_contain_text("Available")

    async def device_ready() -> bool:  # the page's browser phone has registered with the emulator
        return bool(await stores.redis.exists(f"{stores.settings.redis_prefix}:device:{priya_id}"))

    await eventually(device_ready, within=15)
    sid = await asyncio.to_thread(ring_us, stores, emulator, called["phone"])
    timeline = await asyncio.to_thread(emulator.wait_for, sid, "agent_ringing", 15.0)
    [dial] = [e for e in timeline.events if e["kind"] == "dial"]

    # The screen-pop, before she answers: who is calling, how our last call ended, their claims.
    pop = page.locator("#returned-call")
    await expect(pop).to_contain_text("is calling you back")
    name = (await page.locator("#customer-name").text_content() or "").strip()
    assert name and name in (await pop.text_content() or "")
    await expect(page.locator("#returned-call-last")).to_contain_text("Not interested")
    await expect(page.locator("#customer-body")).to_contain_text("Claims (")
    await expect(page.get_by_role("button", name="Next call")).to_be_disabled()
    await shot(page, "returned-call-screen-pop")

    assert dial["call_sid"]
    # The browser phone rings and holds the call: she answers it from the screen-pop.
    await page.get_by_role("button", name="Answer").click()
    await expect(page.locator("#call-state-text")).to_contain_text("Connected")
    await expect(page.locator("#returned-call-note")).to_be_visible()
    await expect(page.locator("#customer-name")).to_have_text(name)

    await page.get_by_role("button", name="Hang up").click()  # the agent ends it: the caller's leg goes
    await asyncio.to_thread(emulator.wait_ended, sid, 20.0)
    await expect(page.locator("#call-state-text")).to_contain_text("Wrap-up", timeout=20_000)
    await expect(page.locator('input[name="disposition"][value="no_answer"]')).to_be_disabled()
    await page.get_by_label("Documents promised").check()
    await page.get_by_role("button", name="Save outcome").click()
    await expect(page.locator("#next-call-message")).to_contain_text("Documents promised")
    await expect(page.locator("#status-now")).to_contain_text("Available", timeout=20_000)
    await expect(pop).to_have_count(0)

    async with stores.postgres.connect() as conn:
        saved = await conn.scalar(
            text(
                "SELECT o.disposition FROM call_outcomes o JOIN call_sessions s ON s.id = o.call_session_id"
                " WHERE s.twilio_call_sid = :sid"
            ),
            {"sid": sid},
        )
    assert saved == "docs_promised"
    await assert_labelled(page)
    await page_context.close()
    assert not console.errors, console.errors


@pytest.mark.temporal_down
async def test_with_temporal_down_the_returned_call_is_still_routed_at_once_recorded_and_popped(
    http: httpx.AsyncClient, stores: Stores, emulator: EmulatorClient
) -> None:
    tom_id = await agent_id(stores, TOM)
    emulator.device(agent_identity(tom_id), action="ignore")
    tom = await ready(http, TOM)

    sid = await asyncio.to_thread(ring_us, stores, emulator, UNKNOWN)
    timeline = await asyncio.to_thread(emulator.wait_for, sid, "agent_ringing", 20.0)
    # The caller heard the recording notice once the webhook stopped waiting for Temporal: the wait is
    # bounded, and nothing else of the call needs Temporal.
    first_words = next(e for e in timeline.events if e["kind"] == "say_start")
    assert first_words["elapsed"] < START_TIMEOUT_S + 1.5, timeline.events
    assert await inbound_rows(stores) == [(sid, None, tom_id, "routed_any")]
    live = (await http.get("/api/v1/agents/me/live", headers=tom)).json()
    assert live["inbound"]["call_sid"] == sid  # the screen-pop reads PostgreSQL only
    await asyncio.to_thread(emulator.customer_hangup, sid)
