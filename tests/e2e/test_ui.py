"""The web UI in Debian's headless Chromium (Python Playwright), against the real stack and the Twilio emulator:
the API over HTTP, the worker on Temporal, PostgreSQL, Redis and MariaDB.

The agent journey: sign in → available → next call → the call connects → hang up → outcome
``callback_requested`` at a time from the picker → the callback shows in "my callbacks"; meanwhile a
supervisor, in a second browser context, sees the agent move on the board without reloading. Then
(``TestACallbackFallsDue``, with a clock offset that puts a picker slot a minute or two ahead) the
callback falls due: a colleague on the callbacks queue is refused that customer during the grace
period, and the booking agent's next call is that customer, with the callback shown. No console
errors anywhere. The same screens in Firefox: ``test_ui_firefox.py``.

With ``DIALLER_UPDATE_SCREENSHOTS=1`` the screenshots of each screen are written to
``docs/screenshots/`` (the README shows them); otherwise to a temporary directory.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.worker import Worker

from devstack.demo import ensure_demo_accounts
from devstack.services import free_port
from devstack.twilio_emulator.client import EmulatorClient
from dialler.agents.presence import Initiator, PresenceState, set_presence
from dialler.callbacks.models import Callback
from dialler.calls.dispositions import EFFECTS, Disposition
from dialler.calls.models import CallOutcome, CallSession, ContactAttempt
from dialler.config import PROJECT_ROOT, Settings
from dialler.queues.engine import QueueEngine, QueueEntry
from dialler.queues.keys import QueueKeys
from dialler.queues.models import QueueRebuild
from dialler.runtime import Stores
from tests.support.browser import (
    PASSWORD,
    SHOTS,
    ConsoleErrors,
    agent_id,
    assert_fits,
    assert_labelled,
    board_row,
    open_page,
    shot,
    sign_in,
)
from tests.support.call_sessions import queue_one_customer, start_available
from tests.support.clock import CLOCK_OFFSET_S
from tests.support.live_api import LiveServer, eventually
from tests.support.pacing import run_pacer

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BOARD_STEP_S = 10_000  # ms: the board polls every 2 s; a move must show within a few polls


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Access tokens of 60 s (the shortest allowed): the screens then refresh them every few seconds,
    so every test here also proves that silent refresh and rotation keep a screen signed in."""
    return settings.model_copy(update={"access_token_ttl_s": 60})


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def access_token(page: Page) -> str:
    return str(await page.evaluate("JSON.parse(sessionStorage.getItem('rmc.session')).access"))


async def set_mobile(replica_url: str, user_id: int) -> None:
    engine = create_async_engine(replica_url)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET phone_number = '07700 900123' WHERE id = :id"), {"id": user_id})
    await engine.dispose()


async def confirmation_text(stores: Stores, user_id: int) -> str | None:
    """The body of the callback confirmation texted to the customer, once it is written."""
    async with stores.postgres.connect() as conn:
        return await conn.scalar(
            text(
                "SELECT m.body FROM sms_messages m JOIN sms_conversations c ON c.id = m.conversation_id"
                " WHERE c.user_id = :u AND m.template = 'callback_confirmation' ORDER BY m.id DESC LIMIT 1"
            ),
            {"u": user_id},
        )


async def assert_upload_links_name_their_claims(page: Page) -> None:
    """One upload-link button per pending requirement, each naming its claim's lender and the
    document, as the pending-requirements table does: never two buttons that read the same."""
    rows = page.get_by_role("table", name="Pending requirements").locator("tbody tr")
    expected = []
    for cells in [await row.locator("td").all_inner_texts() for row in await rows.all()]:
        requirement, lender = cells[0].strip(), cells[1].strip()
        expected.append(f"Upload link · {lender}: {requirement}")
    buttons = page.locator(".sms-links button", has_text="Upload link")
    texts = [t.strip() for t in await buttons.all_inner_texts()]
    assert expected and sorted(texts) == sorted(expected), (texts, expected)
    assert len(set(texts)) == len(texts), texts


async def assert_composer_on_screen(page: Page) -> None:
    """At 1366x768 the SMS composer (text box and Send) shows without scrolling."""
    await page.evaluate("window.scrollTo(0, 0)")
    height = await page.evaluate("window.innerHeight")
    for control in ("#sms-text", "#sms-send"):
        box = await page.locator(control).bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height, (control, box, height)


async def test_agent_journey_with_a_supervisor_watching(
    live_api: str, worker: Worker, stores: Stores, replica_url: str, browser: Browser
) -> None:
    await queue_one_customer(stores, replica_url)
    priya = await agent_id(stores, "priya@rmc.example")
    console = ConsoleErrors()
    agent_ctx, agent = await open_page(browser, console, "agent")
    sup_ctx, supervisor = await open_page(browser, console, "supervisor")

    await sign_in(supervisor, live_api, "sam@rmc.example")
    await expect(supervisor).to_have_url(re.compile(r"/supervisor$"))
    sam_board = board_row(supervisor, priya)
    await expect(sam_board).to_have_attribute("data-state", "offline")

    # Sign in and start work.
    await sign_in(agent, live_api, "priya@rmc.example", screenshot="login")
    await expect(agent).to_have_url(re.compile(r"/agent$"))
    first_token = await access_token(agent)
    await agent.get_by_role("button", name="Available").click()
    await expect(agent.locator("#status-now")).to_contain_text("Available")
    await expect(sam_board).to_have_attribute("data-state", "available", timeout=BOARD_STEP_S)
    await expect(agent.get_by_role("button", name="Next call")).to_be_enabled()
    await shot(agent, "agent-idle")

    # Next call: the customer panel fills; the supervisor sees "reserved".
    await agent.get_by_role("button", name="Next call").click()
    await expect(agent.locator("#customer-name")).to_be_visible()
    customer = (await agent.locator("#customer-name").inner_text()).strip()
    await expect(agent.locator("#call-state-text")).to_contain_text("Reserved")
    await expect(agent.locator("#customer-body")).to_contain_text("Claims")
    await expect(sam_board).to_have_attribute("data-state", "reserved", timeout=BOARD_STEP_S)
    await expect(sam_board.locator(".customer-cell")).to_contain_text(customer.split()[0])

    # Call: the (emulated) carrier rings, the customer answers.
    await agent.get_by_role("button", name="Call", exact=True).click()
    await expect(agent.locator("#call-state-text")).to_contain_text("Connected")
    await expect(sam_board).to_have_attribute("data-state", "on_call", timeout=BOARD_STEP_S)

    # While on the phone: a signing link by text, and it shows in the customer's thread.
    user_id = int((await agent.locator("#customer-body .tag", has_text="Customer #").inner_text()).split("#")[1])
    await set_mobile(replica_url, user_id)  # the seed gives some customers landlines; texts need a mobile
    await agent.get_by_role("button", name="Send signing link").click()
    await expect(agent.locator("#sms-thread .sms-outbound")).to_contain_text("sign", timeout=15_000)
    await assert_upload_links_name_their_claims(agent)
    await assert_composer_on_screen(agent)
    await shot(agent, "agent-on-call")
    await assert_labelled(agent)
    await assert_fits(agent)

    # Hang up: wrap-up, and the outcome form opens.
    await agent.get_by_role("button", name="Hang up").click()
    await expect(agent.locator("#call-state-text")).to_contain_text(re.compile("Wrap-up|Call ended"))
    await expect(sam_board).to_have_attribute("data-state", "wrap_up", timeout=BOARD_STEP_S)
    await expect(agent.get_by_label("Callback requested")).to_be_enabled()
    await expect(agent.locator('input[name="disposition"]:checked')).to_have_count(0)  # answered: the agent says

    # Outcome: callback requested, at a time the picker offers.
    await agent.get_by_label("Callback requested").check()
    picker = agent.locator("#callback-fields")
    await expect(picker).to_be_visible()
    times = agent.get_by_label("Time", exact=True)
    await expect(times.locator("option")).not_to_have_count(1)  # more than the "Choose a time" prompt
    await expect(agent.get_by_label("Day", exact=True)).not_to_have_value("")
    values = [v for v in await times.locator("option").evaluate_all("os => os.map(o => o.value)") if v]
    chosen = values[min(2, len(values) - 1)]
    await times.select_option(chosen)
    picked = (await times.locator(f'option[value="{chosen}"]').inner_text()).strip()  # "11:30" on the demo clock
    await agent.get_by_label("Call notes").fill("Call back after the school run, prefers mornings.")
    await shot(agent, "agent-outcome-callback-picker")
    await assert_labelled(agent)
    await agent.get_by_role("button", name="Save outcome").click()

    await expect(agent.locator("#status-now")).to_contain_text("Available")
    await expect(sam_board).to_have_attribute("data-state", "available", timeout=BOARD_STEP_S)
    await expect(agent.locator("#customer-body")).to_contain_text("No customer yet")

    # The callback is booked for this agent and shows in "my callbacks".
    async with stores.postgres.connect() as conn:
        outcome = (await conn.execute(text("SELECT disposition, callback_at, agent_id FROM call_outcomes"))).one()
    assert outcome.disposition == "callback_requested" and outcome.agent_id == priya
    assert outcome.callback_at == datetime.fromisoformat(chosen)
    upcoming = agent.locator("#callbacks-upcoming li")
    await expect(upcoming).to_have_count(1, timeout=15_000)
    await expect(upcoming).to_contain_text("Customer #")
    await shot(agent, "agent-callback-booked")

    # One clock (the suite runs with a clock offset, as a demo at night does): the customer's
    # confirmation text, the agent's list and the board all name the time on the clock she booked on.
    await expect(upcoming).to_contain_text(picked)
    confirmation = await eventually(lambda: confirmation_text(stores, user_id), within=15)
    assert f"at {picked}" in confirmation, (picked, confirmation)
    await expect(supervisor.locator("#kpi-callbacks-due .kpi-sub")).to_contain_text("1 more later today")
    checked = re.search(r"checked (\d\d):(\d\d)", await supervisor.locator("#freshness").inner_text())
    assert checked is not None
    business_now = (datetime.now(UTC) + timedelta(seconds=CLOCK_OFFSET_S)).astimezone(ZoneInfo("Europe/London"))
    board_minutes = int(checked[1]) * 60 + int(checked[2])
    assert abs(board_minutes - (business_now.hour * 60 + business_now.minute)) <= 1, (checked[0], business_now)

    # The supervisor's board kept up without a reload; its numbers now count the call.
    await expect(supervisor.locator("#kpi-calls .kpi-value")).to_have_text("1", timeout=BOARD_STEP_S)
    await expect(supervisor.locator('#outcomes li[data-disposition="callback_requested"]')).to_be_visible()
    await assert_labelled(supervisor)
    await assert_fits(supervisor)

    # Tokens of 60 s were refreshed (and rotated) silently while both screens kept working.
    assert await access_token(agent) != first_token

    assert not console.errors, "\n".join(console.errors)
    await agent_ctx.close()
    await sup_ctx.close()


SLOT_LEAD_S = 60  # the shortest lead the picker allows (callback_slot_lead_s)
TO_PICKER_S = 50  # budget from the test's start to the outcome form, where the picker reads the clock


def clock_offset_before_a_slot() -> int:
    """A compliance clock offset (see tests/conftest.py) that puts one of the picker's quarter-hour
    slots ``SLOT_LEAD_S + TO_PICKER_S`` seconds from now, still on the pinned weekday morning: the
    earliest slot the agent can pick then falls due a minute or two after the booking, not 5-20 min."""
    now = datetime.now(UTC)
    london = (now + timedelta(seconds=CLOCK_OFFSET_S)).astimezone(ZoneInfo("Europe/London"))
    quarter = london.replace(minute=london.minute - london.minute % 15, second=0, microsecond=0)
    slot = quarter + timedelta(minutes=30)
    wanted_now = slot - timedelta(seconds=SLOT_LEAD_S + TO_PICKER_S)
    return CLOCK_OFFSET_S + int((wanted_now - london).total_seconds())


class TestACallbackFallsDue:
    """The rest of the journey: the booked callback falls due and is offered to its agent first."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(
            update={"callback_slot_lead_s": SLOT_LEAD_S, "clock_offset_s": clock_offset_before_a_slot()}
        )

    async def test_the_booking_agent_gets_the_callback_when_it_falls_due_and_a_colleague_does_not(
        self, settings: Settings, live_api: str, worker: Worker, stores: Stores, replica_url: str, browser: Browser
    ) -> None:
        started = time.monotonic()
        await queue_one_customer(stores, replica_url)
        priya = await agent_id(stores, "priya@rmc.example")
        async with stores.postgres.begin() as conn:  # a colleague who works callbacks only, any customer
            await conn.execute(
                text("UPDATE agents SET queues = '{callbacks}', trained_vulnerable = true WHERE email = :e"),
                {"e": "aisha@rmc.example"},
            )
        console = ConsoleErrors()
        sup_ctx, supervisor = await open_page(browser, console, "supervisor")
        agent_ctx, agent = await open_page(browser, console, "agent")
        await sign_in(supervisor, live_api, "sam@rmc.example")
        sam_board = board_row(supervisor, priya)

        # Priya calls a customer who asks to be called back; she books the earliest time offered.
        await sign_in(agent, live_api, "priya@rmc.example")
        await agent.get_by_role("button", name="Available").click()
        await agent.get_by_role("button", name="Next call").click()
        customer_tag = agent.locator("#customer-body .tag", has_text="Customer #")
        user_id = int((await customer_tag.inner_text()).split("#")[1])
        await agent.get_by_role("button", name="Call", exact=True).click()
        await expect(agent.locator("#call-state-text")).to_contain_text("Connected")
        await agent.get_by_role("button", name="Hang up").click()
        await agent.get_by_label("Callback requested").check()
        times = agent.get_by_label("Time", exact=True)
        await expect(times.locator("option")).not_to_have_count(1)
        first = await times.locator("option").nth(1).get_attribute("value") or ""
        due = datetime.fromisoformat(first)
        to_picker = time.monotonic() - started
        assert due - datetime.now(UTC) < timedelta(seconds=SLOT_LEAD_S + TO_PICKER_S + 5), (
            f"the earliest slot is {first}: the outcome form opened {to_picker:.0f} s into the test, "
            f"after the {TO_PICKER_S} s the clock offset allows for (a slow machine?)"
        )
        await times.select_option(first)
        await agent.get_by_role("button", name="Save outcome").click()
        await expect(agent.locator("#status-now")).to_contain_text("Available")
        await expect(agent.locator(f'#my-callbacks li[data-user-id="{user_id}"]')).to_be_visible(timeout=15_000)

        # It falls due: "due now" on her screen.
        await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))

        async def shows_due_now() -> bool:  # the list refreshes every 30 s by itself; Refresh is quicker
            await agent.get_by_role("button", name="Refresh").click()
            await agent.wait_for_timeout(500)
            return await agent.locator(f'#callbacks-due li[data-user-id="{user_id}"]').count() == 1

        await eventually(shows_due_now, within=15, every=0.5)

        # A colleague on the callbacks queue asks for a call during the grace period: not this customer.
        async with httpx.AsyncClient(base_url=live_api, timeout=15) as http:
            aisha = await start_available(http, "aisha@rmc.example")

            async def refused_as_reserved() -> bool:
                offered = (await http.post("/api/v1/agents/me/next-call", headers=aisha)).json()
                assert offered["customer"] is None, f"a colleague was given customer {offered['customer']['user_id']}"
                return "reserved for another agent's callback" in offered["reason"]

            await eventually(refused_as_reserved, within=15, every=0.5)

        # Priya presses Next call: that customer, from the callbacks queue, with the callback shown.
        await agent.get_by_role("button", name="Next call").click()
        await expect(customer_tag).to_be_visible()
        queue = agent.locator("#call-state .hint").filter(has_text="Queue:")
        offered = (await customer_tag.inner_text()).strip()
        assert offered == f"Customer #{user_id}", (
            f"Priya's due callback (customer #{user_id}) was not offered to her first; "
            f"she got {offered} ({(await queue.inner_text()).strip()})"
        )
        assert datetime.now(UTC) >= due
        await expect(agent.locator("#call-state")).to_contain_text("Queue: Callbacks")
        await expect(agent.locator("#open-callback")).to_contain_text("Open callback")
        await expect(sam_board).to_have_attribute("data-state", "reserved", timeout=BOARD_STEP_S)

        # She reaches the customer and records the outcome: the callback is done, gone from "due now".
        await agent.get_by_role("button", name="Call", exact=True).click()
        await expect(agent.locator("#call-state-text")).to_contain_text("Connected")
        await expect(sam_board).to_have_attribute("data-state", "on_call", timeout=BOARD_STEP_S)
        await agent.get_by_role("button", name="Hang up").click()
        await agent.get_by_label("Documents promised").check()
        await agent.get_by_role("button", name="Save outcome").click()
        await expect(agent.locator("#status-now")).to_contain_text("Available")
        await expect(agent.locator("#callbacks-due li")).to_have_count(0, timeout=15_000)

        assert not console.errors, "\n".join(console.errors)
        await agent_ctx.close()
        await sup_ctx.close()


# A morning on the floor: (disposition, answered, abandoned) of the calls made so far today.
CALLS_TODAY = [
    ("signed_on_call", True, False),
    ("signed_on_call", True, False),
    ("docs_promised", True, False),
    ("docs_promised", True, False),
    ("callback_requested", True, False),
    ("not_interested", True, False),
    ("no_answer", False, False),
    ("no_answer", False, False),
    ("no_answer", False, False),
    ("voicemail", False, False),
    ("busy", False, False),
    ("no_outcome", True, True),  # abandoned: answered, no agent in time
]


async def seed_floor(stores: Stores) -> None:
    """Calls, callbacks, a rebuild and agent states, written where the product writes them."""
    now = datetime.now(UTC)
    ids = {email: await agent_id(stores, email) for email in ("priya@rmc.example", "tom@rmc.example")}
    async with stores.sessions() as session:
        for n, (disposition, answered, abandoned) in enumerate(CALLS_TODAY):
            started = now - timedelta(minutes=5 * n + 3)
            call = CallSession(
                id=uuid.uuid4(),
                workflow_id=f"call-{100 + n}-seed",
                user_id=100 + n,
                agent_id=ids["priya@rmc.example"] if n % 2 else ids["tom@rmc.example"],
                queue="unsigned",
                phone_e164="+447700900000",
                status="closed",
                progressive=False,
                started_at=started,
                answered_at=started + timedelta(seconds=8) if answered else None,
                ended_at=started + timedelta(minutes=2),
                end_reason="completed" if answered else "no_answer",
                closed_at=started + timedelta(minutes=3),
            )
            session.add(call)
            await session.flush()
            session.add(
                CallOutcome(
                    call_session_id=call.id,
                    user_id=call.user_id,
                    agent_id=call.agent_id,
                    disposition=disposition,
                    recorded_at=call.closed_at,
                )
            )
            session.add(
                ContactAttempt(
                    user_id=call.user_id,
                    phone_e164=call.phone_e164,
                    channel="voice",
                    call_session_id=call.id,
                    agent_id=call.agent_id,
                    result="abandoned" if abandoned else disposition,
                    abandoned=abandoned,
                    attempted_at=started,
                )
            )
        for user, status, due in ((7, "due", now - timedelta(minutes=2)), (9, "missed", now - timedelta(hours=3))):
            session.add(
                Callback(
                    workflow_id=f"callback-{user}",
                    workflow_run_key=f"seed-{user}",
                    user_id=user,
                    booked_by_agent_id=ids["priya@rmc.example"],
                    owner_agent_id=ids["priya@rmc.example"],
                    source="call",
                    due_at=due,
                    status=status,
                )
            )
        session.add(
            QueueRebuild(
                workflow_id="queue-rebuild-seed",
                trigger="schedule",
                started_at=now - timedelta(minutes=9),
                finished_at=now - timedelta(minutes=8, seconds=51),
                counts={"queued": {"unsigned": 13, "outstanding_requests": 16}},
                drift={"unsigned": {"added": 0, "removed": 0, "rescored": 0}},
            )
        )
        await session.commit()

    # Agents in every state, for a while.
    walks = {
        "dan@rmc.example": [("available", 50), ("reserved", 7), ("on_call", 6)],
        "aisha@rmc.example": [("available", 40), ("reserved", 9), ("on_call", 8), ("wrap_up", 2)],
        "tom@rmc.example": [("available", 60), ("break", 19)],
        "priya@rmc.example": [("available", 1)],
    }
    engine = QueueEngine(stores.redis, prefix=stores.settings.redis_prefix, lease_ttl_s=stores.settings.lease_ttl_s)
    for email, steps in walks.items():
        who = await agent_id(stores, email)
        for state, minutes_ago in steps:
            async with stores.sessions() as session:
                await set_presence(
                    session=session,
                    redis=stores.redis,
                    settings=stores.settings,
                    agent_id=who,
                    target=PresenceState(state),
                    reason="lunch" if state == "break" else None,
                    now=now - timedelta(minutes=minutes_ago),
                    by=Initiator.SYSTEM,
                )
            if state == "reserved":  # the customer they hold is their lease's (taken for the hour)
                user = 12 if email.startswith("dan") else 5
                far = time.time() + 3600
                await engine.upsert(QueueEntry(user, "callbacks", -1e12, reserved_for_agent=who, reserved_until=far))
                lease = await engine.next_call(agent_id=who, queues=["callbacks"], trained_vulnerable=True, now=far)
                assert lease is not None and lease.user_id == user


async def test_supervisor_dashboard_shows_the_numbers_of_the_stores(
    live_api: str, stores: Stores, replica_url: str, browser: Browser
) -> None:
    depth = await queue_one_customer(stores, replica_url)
    await seed_floor(stores)
    prefix = stores.settings.redis_prefix
    await stores.redis.hset(
        f"{prefix}:cdc:publisher",
        mapping={
            "state": "running",
            "lag_s": "0.420",
            "published_total": "1234",
            "last_event_at": datetime.now(UTC).isoformat(),
        },
    )
    console = ConsoleErrors()
    ctx, page = await open_page(browser, console, "supervisor")

    await sign_in(page, live_api, "sam@rmc.example")

    contacts = sum(1 for d, _, _ in CALLS_TODAY if EFFECTS[Disposition(d)].contact)
    answered = sum(1 for _, a, _ in CALLS_TODAY if a)
    await expect(page.locator("#kpi-calls .kpi-value")).to_have_text(str(len(CALLS_TODAY)))
    await expect(page.locator("#kpi-contact-rate .kpi-value")).to_have_text(f"{contacts / len(CALLS_TODAY):.1%}")
    await expect(page.locator("#kpi-abandoned .kpi-value")).to_have_text(f"{1 / answered:.1%}")
    await expect(page.locator("#kpi-callbacks-due .kpi-value")).to_have_text("1")
    await expect(page.locator("#kpi-callbacks-missed .kpi-value")).to_have_text("1")
    await expect(page.locator("#kpi-cdc-lag .kpi-value")).to_have_text("0.4 s")
    await expect(page.locator("#kpi-dlq .kpi-value")).to_have_text("0")
    await expect(page.locator("#kpi-drift .kpi-value")).to_have_text("0")
    await expect(page.locator('#queue-rows tr[data-queue="unsigned"] .depth')).to_have_text(str(depth))
    await expect(page.locator('#outcomes li[data-disposition="no_answer"]')).to_contain_text("3")
    await expect(page.locator("#board-rows tr")).to_have_count(7)  # the demo accounts
    dan = page.locator("#board-rows tr", has_text="Dan Murphy")
    await expect(dan).to_have_attribute("data-state", "on_call")
    await expect(dan.locator("td.in-state")).to_have_text(re.compile(r"^6:\d\d$"))
    href = await dan.locator("td").first.locator("a").get_attribute("href") or ""
    assert href.startswith(stores.settings.temporal_ui_url) and "query=AgentId%3D%22" in href
    customer = await dan.locator(".customer-cell a").get_attribute("href") or ""
    assert customer.endswith("query=UserId%3D%2212%22")
    await shot(page, "supervisor-dashboard")

    # Live: a change in a store shows without a reload.
    await stores.redis.zadd(QueueKeys(prefix).queue("unsigned"), {"999001": 1.0})
    await expect(page.locator('#queue-rows tr[data-queue="unsigned"] .depth')).to_have_text(str(depth + 1))

    assert not console.errors, "\n".join(console.errors)
    await ctx.close()


async def test_admin_creates_edits_and_disables_an_agent(live_api: str, stores: Stores, browser: Browser) -> None:
    console = ConsoleErrors()
    ctx, page = await open_page(browser, console, "admin")
    email = f"new.agent.{uuid.uuid4().hex[:6]}@rmc.example"

    await sign_in(page, live_api, "ada@rmc.example")
    await expect(page).to_have_url(re.compile(r"/admin$"))
    await expect(page.locator("#agent-rows tr")).to_have_count(7)
    await shot(page, "admin")

    await page.get_by_role("button", name="New agent").click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_label("Name").fill("Noor Patel")
    await dialog.get_by_label("Email").fill(email)
    await dialog.get_by_label("Password").fill("a-long-enough-password")
    await dialog.get_by_label("Unsigned").check()
    await dialog.get_by_label("Callbacks").check()
    await dialog.get_by_label("Trained for vulnerable customers").check()
    await shot(page, "admin-new-agent")
    await assert_labelled(page)
    await dialog.get_by_role("button", name="Save").click()
    await expect(dialog).to_be_hidden()
    row = page.locator("#agent-rows tr", has_text=email)
    await expect(row).to_contain_text("Unsigned, Callbacks")

    await row.get_by_role("button", name="Edit Noor Patel").click()
    await dialog.get_by_label("Role").select_option("supervisor")
    await dialog.get_by_label("Progressive mode (auto-dial)").check()
    await dialog.get_by_role("button", name="Save").click()
    await expect(dialog).to_be_hidden()
    await expect(row.locator("td.role")).to_have_text("supervisor")

    await row.get_by_role("button", name="Disable Noor Patel").click()
    await row.get_by_role("button", name="Disable Noor Patel").click()  # the second click confirms
    await expect(row).to_be_hidden()  # the list shows active accounts unless asked

    async with stores.postgres.connect() as conn:
        saved = (
            await conn.execute(
                text("SELECT role, queues, trained_vulnerable, progressive_mode, active FROM agents WHERE email = :e"),
                {"e": email},
            )
        ).one()
    assert tuple(saved) == ("supervisor", ["unsigned", "callbacks"], True, True, False)
    assert not console.errors, "\n".join(console.errors)
    await ctx.close()


async def test_sign_in_by_keyboard_screens_by_role_and_a_session_ended_elsewhere(
    live_api: str, stores: Stores, browser: Browser
) -> None:
    console = ConsoleErrors()
    ctx, page = await open_page(browser, console, "login")

    # Keyboard only: the email field has the focus, Tab to the password, Enter to send.
    await page.goto(live_api + "/")
    await page.keyboard.type("priya@rmc.example")
    await page.keyboard.press("Tab")
    await page.keyboard.type("not-the-password")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("alert")).to_contain_text("do not match")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/agent$"))

    # An agent's screens only.
    await expect(page.get_by_role("link", name="Supervisor")).to_have_count(0)
    await page.goto(live_api + "/supervisor")
    await expect(page.get_by_role("heading", name="Not available to you")).to_be_visible()

    # The sign-in ends elsewhere (an admin disabled it, a logout in another tab): back to sign-in.
    await page.goto(live_api + "/agent")
    await expect(page.locator("#status-now")).to_contain_text("Offline")
    refresh = await page.evaluate("JSON.parse(sessionStorage.getItem('rmc.session')).refresh")
    async with httpx.AsyncClient(base_url=live_api) as http:
        assert (await http.post("/api/v1/auth/logout", json={"refresh_token": refresh})).status_code == 204
    await expect(page).to_have_url(re.compile(r"/\?next=%2Fagent$"))
    await expect(page.locator("#login-notice")).to_contain_text("session has ended")

    # Sign in again and sign out by the button.
    await page.get_by_label("Email").fill("priya@rmc.example")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/agent$"))
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/$"))
    await page.goto(live_api + "/agent")
    await expect(page).to_have_url(re.compile(r"/\?next=%2Fagent$"))

    # The refused password and the ended session are the only errors: the browser logs their 401s.
    unexpected = [e for e in console.errors if "401" not in e]
    assert not unexpected, "\n".join(unexpected)
    await ctx.close()


async def test_two_tabs_of_one_sign_in_take_turns_to_refresh(live_api: str, browser: Browser) -> None:
    """A tab opened from another starts with a copy of its sign-in. Refresh tokens are single-use and a
    reused one ends the sign-in, so the tabs must hand rotated tokens to each other: with 60 s tokens
    (refreshed every few seconds) both stay signed in."""
    console = ConsoleErrors()
    ctx, first = await open_page(browser, console, "first tab")
    await sign_in(first, live_api, "priya@rmc.example")
    async with ctx.expect_page() as opened:
        await first.evaluate("window.open('/agent')")
    second = console.watch(await opened.value, "second tab")
    await expect(second.locator("#who-name")).to_have_text("Priya Shah")
    start = await access_token(first)

    await first.wait_for_timeout(16_000)  # several refreshes of each tab

    assert await access_token(first) != start
    await first.get_by_role("button", name="Available").click()
    for page in (first, second):  # each tab's own polls, with its own (rotated) token, see the change
        await expect(page).to_have_url(re.compile(r"/agent$"))
        await expect(page.locator("#status-now")).to_contain_text("Available")
    assert not console.errors, "\n".join(console.errors)
    await ctx.close()


async def test_the_page_never_dials_by_itself_the_queues_pacer_does(
    live_api: str, worker: Worker, stores: Stores, replica_url: str, browser: Browser
) -> None:
    """A progressive agent's page asks for no next call by itself (issue 23: the dialler, not the
    browser, dials); once a supervisor starts the queue's pacer, the call arrives on the page, the
    answer is put through to its phone, and the agent records the outcome as on any call."""
    await queue_one_customer(stores, replica_url)
    async with stores.postgres.begin() as conn:
        await conn.execute(text("UPDATE agents SET progressive_mode = true WHERE email = 'dan@rmc.example'"))
    console = ConsoleErrors()
    ctx, page = await open_page(browser, console, "agent")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if r.url.endswith("/agents/me/next-call") else None)

    await sign_in(page, live_api, "dan@rmc.example")
    await page.get_by_role("button", name="Available").click()
    await expect(page.locator("#progressive-text")).to_contain_text("Ready: when your queue's dialler runs")
    await page.wait_for_timeout(6000)  # longer than the old auto-dial's pause between calls
    await expect(page.locator("#customer-name")).to_have_count(0)
    assert asked == []

    await run_pacer(live_api, "unsigned", mode="progressive")
    await expect(page.locator("#customer-name")).to_be_visible(timeout=15_000)
    await expect(page.locator("#call-state-text")).to_contain_text("Connected", timeout=15_000)
    await page.get_by_role("button", name="Hang up").click()
    await page.get_by_label("Not interested").check()
    await page.get_by_role("button", name="Save outcome").click()
    await expect(page.locator("#status-now")).to_contain_text(re.compile("Available|Reserved|On a call"))
    assert asked == []  # the call came from the pacer, not from this page

    assert not console.errors, "\n".join(console.errors)
    await ctx.close()


async def test_a_dial_refused_at_the_last_moment_says_why_and_frees_the_agent(
    live_api: str, worker: Worker, stores: Stores, replica_url: str, browser: Browser
) -> None:
    """The compliance gate refuses the dial the agent clicks (an abandoned call to the number an hour
    ago: Ofcom's 72 h): no call rings, the agent is told why and from when, and is free at once for the
    next customer, with no outcome to invent for a call that never rang."""
    await queue_one_customer(stores, replica_url)
    console = ConsoleErrors()
    ctx, page = await open_page(browser, console, "agent")
    await sign_in(page, live_api, "priya@rmc.example")
    await page.get_by_role("button", name="Available").click()
    await page.get_by_role("button", name="Next call").click()
    await expect(page.locator("#customer-name")).to_be_visible()

    async def session_on_record() -> bool:  # the session writes its row as it starts, just after the offer
        async with stores.postgres.connect() as conn:
            return bool(await conn.scalar(text("SELECT count(*) FROM call_sessions WHERE closed_at IS NULL")))

    await eventually(session_on_record)
    async with stores.postgres.begin() as conn:
        added = await conn.execute(
            text(
                "INSERT INTO contact_attempts (user_id, phone_e164, channel, result, abandoned, attempted_at)"
                " SELECT 999999, phone_e164, 'voice', 'abandoned', true, now() - interval '1 hour'"
                " FROM call_sessions WHERE closed_at IS NULL"
            )
        )
    assert added.rowcount == 1
    await page.get_by_role("button", name="Call", exact=True).click()
    message = page.locator("#next-call-message")
    await expect(message).to_contain_text("Call not placed: abandoned_cooloff", timeout=15_000)
    await expect(message).to_contain_text("Next allowed at")
    await expect(page.locator("#status-now")).to_contain_text("Available")
    await expect(page.locator("#customer-body")).to_contain_text("No customer yet")
    async with stores.postgres.connect() as conn:
        texts = await conn.scalar(text("SELECT count(*) FROM sms_messages"))
    assert texts == 0
    assert not console.errors, "\n".join(console.errors)
    await ctx.close()


class TestTheLineTellsTheOutcome:
    """A busy, unanswered or machine-answered line is the outcome the agent would pick: it is chosen
    for them, to confirm. Voicemail is known from the carrier's answering-machine detection (on here)."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"answering_machine_detection": True})

    async def test_a_busy_unanswered_or_voicemail_line_preselects_its_outcome(
        self,
        live_api: str,
        worker: Worker,
        stores: Stores,
        replica_url: str,
        browser: Browser,
        emulator: EmulatorClient,
    ) -> None:
        await queue_one_customer(stores, replica_url)
        console = ConsoleErrors()
        ctx, page = await open_page(browser, console, "agent")
        await sign_in(page, live_api, "priya@rmc.example")
        await page.get_by_role("button", name="Available").click()
        for line, outcome, result in (
            ({"behaviour": "busy"}, "Busy", "the line was busy"),
            ({"behaviour": "no-answer", "answer_after_s": 0.5}, "No answer", "nobody answered"),
            ({"behaviour": "machine", "answer_after_s": 0.3, "hangup_after_s": 2.0}, "Voicemail", "the call ended"),
        ):
            await asyncio.to_thread(emulator.script, "*", **line)
            await page.get_by_role("button", name="Next call").click()
            await expect(page.locator("#customer-name")).to_be_visible()
            await page.get_by_role("button", name="Call", exact=True).click()
            await expect(page.locator("#call-state")).to_contain_text(result, timeout=15_000)
            await expect(page.get_by_label(outcome, exact=True)).to_be_checked()
            await expect(page.locator('input[name="disposition"]:checked')).to_have_count(1)
            await page.get_by_role("button", name="Save outcome").click()
            await expect(page.locator("#status-now")).to_contain_text("Available")
            await expect(page.locator("#customer-body")).to_contain_text("No customer yet")

        async with stores.postgres.connect() as conn:
            recorded = (await conn.execute(text("SELECT disposition FROM call_outcomes ORDER BY id"))).scalars().all()
        assert recorded == ["busy", "no_answer", "voicemail"]
        assert not console.errors, "\n".join(console.errors)
        await ctx.close()


async def test_twilio_mode_loads_the_voice_sdk_and_shows_phone_trouble(
    settings: Settings, stores: Stores, replica_url: str, browser: Browser
) -> None:
    """With Twilio itself (no emulator) the workspace loads the vendored Voice SDK (allowed by the page's CSP), asks
    for a voice token and registers a Device; Twilio is unreachable from here, so what must show is
    a visible phone error, never a silent screen."""
    twilio = settings.model_copy(
        update={"twilio_api_base_url": None, "public_base_url": f"http://127.0.0.1:{free_port()}"}
    )
    async with stores.sessions() as session:
        await ensure_demo_accounts(session)
    console = ConsoleErrors()
    ctx, page = await open_page(browser, console, "agent")
    with LiveServer(twilio) as server:
        await sign_in(page, server.url, "priya@rmc.example")
        await expect(page.get_by_role("button", name="Mute")).to_be_visible()
        await expect(page.locator("#device-status")).to_be_visible()
        # The SDK (300 kB) loads after the status shows "Connecting": wait for it, do not race it.
        await page.wait_for_function("() => typeof window.Twilio?.Device === 'function'", timeout=15_000)
        await expect(page.locator("#device-status")).to_contain_text("Phone problem", timeout=30_000)
        await expect(page.locator("#call-error")).to_contain_text("Phone problem")
    csp = [e for e in console.errors if "Content Security Policy" in e]
    assert not csp, "\n".join(csp)
    await ctx.close()


def test_screenshots_are_in_the_readme() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    for name in (
        "login",
        "agent-idle",
        "agent-on-call",
        "agent-outcome-callback-picker",
        "supervisor-dashboard",
        "admin",
    ):
        assert f"docs/screenshots/{name}.png" in readme, name
        assert Path(SHOTS / f"{name}.png").is_file(), name
