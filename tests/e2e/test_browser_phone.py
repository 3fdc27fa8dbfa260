"""The agent's browser phone in Debian's Chromium against the Twilio emulator: the product in Twilio
mode (the real API, worker and ``twilio`` SDK), the agent's screen running voice.js with the
emulator's Device adapter (``web/static/js/emulator_device.js``) — the same flow it runs on the
Twilio Voice SDK — so that it is this browser, not a script, that takes the call.

Measured on the emulator's own timeline, from the customer's answer: the agent's accept in the
browser puts a person on the line within 2 s and nothing is played before. Click-to-dial and
progressive; hang-up and mute from the browser; and a page that closes stops being a phone that
progressive mode counts on within seconds.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect
from sqlalchemy import text, update
from temporalio.worker import Worker

from devstack.twilio_emulator.client import EmulatorClient, Timeline
from devstack.twilio_emulator.devices import HEARTBEAT_GRACE_S
from dialler.agents.models import Agent
from dialler.calls.inbound import device_key
from dialler.config import Settings, TelephonyMode
from dialler.integrations.twilio import TwilioTelephony
from dialler.integrations.twilio_voice import RECORDING_NOTICE, agent_identity
from dialler.runtime import Stores
from tests.support.browser import ConsoleErrors, agent_id, open_page, sign_in
from tests.support.call_sessions import customer_call, queue_one_customer
from tests.support.live_api import eventually
from tests.support.pacing import run_pacer

pytestmark = pytest.mark.e2e

AGENT = "priya@rmc.example"
BUDGET_S = 2.0  # Ofcom: a person on the line within 2 s of the customer's answer
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def settings(settings: Settings, emulator: EmulatorClient) -> Settings:
    """Twilio mode with the SDK pointed at the emulator: /ui/config then names the emulator to the
    agent's screen (development only) and the pages' CSP lets it connect there."""
    return settings.model_copy(update={"telephony_mode": TelephonyMode.TWILIO, "twilio_api_base_url": emulator.url})


@pytest_asyncio.fixture
async def telephony(stores: Stores) -> AsyncIterator[TwilioTelephony]:  # type: ignore[override]
    twilio = TwilioTelephony(stores.settings)
    yield twilio
    await twilio.aclose()


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def phone_ready(page: Page, emulator: EmulatorClient, stores: Stores, agent: int) -> dict[str, Any]:
    """The screen says its phone is ready, the emulator has this browser registered and free, and
    the product counts on it (the heartbeat the screen sends once registered)."""
    await expect(page.locator("#device-status")).to_contain_text("Phone ready")
    browser = (await asyncio.to_thread(emulator.device_state, agent_identity(agent)))["browser"]
    assert browser is not None and browser["online"] and browser["call_sid"] is None, browser

    async def counted_on() -> bool:
        return bool(await stores.redis.exists(device_key(stores.settings, agent)))

    assert await eventually(counted_on, within=5)
    return dict(browser)


async def connected_in_time(emulator: EmulatorClient, sid: str) -> Timeline:
    """The browser (not a scripted device) took the call, a person was on the line within 2 s of
    the answer, and the customer heard nothing before."""
    try:
        timeline = await asyncio.to_thread(emulator.wait_for, sid, "person_connected", 30.0)
    except TimeoutError:
        raise AssertionError(f"nobody came on: {emulator.timeline(sid).events}") from None
    answered = timeline.first("agent_answered")
    assert answered is not None and answered["device"] == "browser", timeline.events
    ringing = timeline.first("agent_ringing")
    assert ringing is not None and ringing["device"] == "browser"
    to_person = timeline.seconds_to_person_or_speech()
    assert to_person is not None and to_person <= BUDGET_S, f"a person came on {to_person} s after the answer"
    assert timeline.first("person_connected")["leg"] == "agent"  # type: ignore[index]
    assert timeline.speech_before_person() == []
    return timeline


async def test_click_to_dial_rings_the_browser_which_accepts_mutes_and_hangs_up(
    live_api: str, worker: Worker, stores: Stores, replica_url: str, emulator: EmulatorClient, browser: Browser
) -> None:
    await queue_one_customer(stores, replica_url)
    priya = await agent_id(stores, AGENT)
    console = ConsoleErrors()
    context, page = await open_page(browser, console, "agent")
    await sign_in(page, live_api, AGENT)
    await phone_ready(page, emulator, stores, priya)

    await page.get_by_role("button", name="Available").click()
    await page.get_by_role("button", name="Next call").click()
    await expect(page.locator("#call-state-text")).to_contain_text("Reserved")
    assert await asyncio.to_thread(emulator.calls) == []  # nobody is dialled until the agent presses Call
    await page.get_by_role("button", name="Call", exact=True).click()

    sid = await customer_call(emulator, within=30)
    await connected_in_time(emulator, sid)
    await expect(page.locator("#device-status")).to_contain_text("On the phone")
    await expect(page.locator("#call-state-text")).to_contain_text("Connected")
    # Nothing automated played before the agent: the recording notice is their first line (CMCOB 2.3.5).
    await expect(page.locator("#say-first")).to_have_text(f'Say first: "{RECORDING_NOTICE}"')

    mute = page.locator("#mute")
    await mute.click()
    await expect(mute).to_have_attribute("aria-pressed", "true")
    await asyncio.to_thread(emulator.wait_for, sid, "agent_muted", 10.0)
    await mute.click()
    await expect(mute).to_have_text("Mute")

    await page.get_by_role("button", name="Hang up").click()
    ended = await asyncio.to_thread(emulator.wait_ended, sid, 15.0)
    hangups = [(e["leg"], e["by"]) for e in ended.events if e["kind"] == "hangup"]
    assert hangups[0] == ("agent", "agent"), hangups  # the browser hung up first, then the customer's leg ended
    bridge = ended.first("bridge_ended")
    assert bridge is not None and bridge["by"] == "agent"
    await expect(page.locator("#device-status")).to_contain_text("Phone ready")

    # The outcome is the agent's, as on any call.
    await expect(page.locator("#call-state-text")).to_contain_text(re.compile("Wrap-up|Call ended"))
    await page.get_by_label("Not interested").check()
    await page.get_by_label("Call notes").fill("Happy with their current arrangement.")
    await page.get_by_role("button", name="Save outcome").click()
    await expect(page.locator("#status-now")).to_contain_text("Available")
    async with stores.postgres.connect() as conn:
        outcome = (await conn.execute(text("SELECT disposition FROM call_outcomes"))).one()
    assert outcome.disposition == "not_interested"

    assert not console.errors, "\n".join(console.errors)
    await context.close()


async def test_progressive_dials_only_with_the_browser_registered_and_bridges_the_answer_to_it(
    live_api: str, worker: Worker, stores: Stores, replica_url: str, emulator: EmulatorClient, browser: Browser
) -> None:
    await queue_one_customer(stores, replica_url)
    async with stores.sessions() as session:
        await session.execute(update(Agent).where(Agent.email == AGENT).values(progressive_mode=True))
        await session.commit()
    priya = await agent_id(stores, AGENT)
    console = ConsoleErrors()
    context, page = await open_page(browser, console, "agent")
    await sign_in(page, live_api, AGENT)
    await page.get_by_role("button", name="Available").click()
    await expect(page.locator("#status-now")).to_contain_text("Available")

    # Before anyone is dialled: this browser registered with the emulator and free; the page itself
    # never dials (issue 23): the queue's pacer does, once a supervisor starts it.
    await phone_ready(page, emulator, stores, priya)
    assert await asyncio.to_thread(emulator.calls) == []
    await run_pacer(live_api, "unsigned", mode="progressive")

    sid = await customer_call(emulator, within=30)
    await connected_in_time(emulator, sid)
    await expect(page.locator("#device-status")).to_contain_text("On the phone")
    await expect(page.locator("#call-state-text")).to_contain_text("Connected")
    # Nothing automated played before the agent: the recording notice is their first line (CMCOB 2.3.5).
    await expect(page.locator("#say-first")).to_have_text(f'Say first: "{RECORDING_NOTICE}"')

    await page.get_by_role("button", name="Hang up").click()
    ended = await asyncio.to_thread(emulator.wait_ended, sid, 15.0)
    assert ended.first("bridge_ended")["by"] == "agent", ended.events  # type: ignore[index]
    assert not console.errors, "\n".join(console.errors)
    await context.close()


async def test_a_closed_page_stops_being_a_ready_phone_within_seconds(
    live_api: str, worker: Worker, stores: Stores, emulator: EmulatorClient, browser: Browser
) -> None:
    priya = await agent_id(stores, AGENT)
    identity = agent_identity(priya)
    console = ConsoleErrors()
    context, page = await open_page(browser, console, "agent")
    await sign_in(page, live_api, AGENT)
    await phone_ready(page, emulator, stores, priya)

    await page.close()

    # The product stops counting on it (what progressive mode and returned calls check) ...
    async def not_ready() -> bool:
        return not await stores.redis.exists(device_key(stores.settings, priya))

    assert await eventually(not_ready, within=3)

    # ... and the emulator stops ringing it: its registration is gone, or its heartbeat ran out.
    async def offline() -> bool:
        return not (await asyncio.to_thread(emulator.device_state, identity))["browser"]["online"]

    assert await eventually(offline, within=HEARTBEAT_GRACE_S + 2)
    assert not console.errors, "\n".join(console.errors)
    await context.close()


async def test_the_phone_registers_again_when_the_emulator_forgets_it(
    live_api: str, worker: Worker, stores: Stores, emulator: EmulatorClient, browser: Browser
) -> None:
    """A developer restarts the emulator (or a test resets it): the screen's phone registers again by
    itself, as the Voice SDK reconnects to Twilio, and is rung, not the identity's script."""
    priya = await agent_id(stores, AGENT)
    console = ConsoleErrors()
    context, page = await open_page(browser, console, "agent")
    await sign_in(page, live_api, AGENT)
    first = await phone_ready(page, emulator, stores, priya)

    await asyncio.to_thread(emulator.reset)

    async def registered_again() -> dict[str, Any] | None:
        state = (await asyncio.to_thread(emulator.device_state, agent_identity(priya)))["browser"]
        return state if state is not None and state["online"] else None

    again = await eventually(registered_again, within=20)
    assert again["device_id"] != first["device_id"]
    await expect(page.locator("#device-status")).to_contain_text("Phone ready")
    assert not console.errors, "\n".join(console.errors)
    await context.close()
