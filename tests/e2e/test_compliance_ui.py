"""The Compliance page in Debian's headless Chromium against the real stack, recordings on the Twilio
emulator: a compliance officer filters the review queue, plays a recording and seeks to its middle
(through the signed play link, ranges from the API), and adds a do-not-call number. No console errors."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.worker import Worker

from devstack.seed import seed_replica
from devstack.twilio_emulator.client import EmulatorClient
from dialler.calls.dispositions import Disposition
from dialler.calls.models import CallOutcome, CallSession
from dialler.compliance import reviews
from dialler.config import Settings
from dialler.queues.phones import normalise_phone
from dialler.queues.rebuild import recompute
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.browser import ConsoleErrors, agent_id, assert_labelled, open_page, shot, sign_in
from tests.support.call_sessions import start_available
from tests.support.live_api import eventually, login
from tests.support.recordings import recorded_call

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture
def settings(settings: Settings, twilio_emulator: EmulatorClient, emulator: EmulatorClient) -> Settings:
    return settings.model_copy(update={"twilio_api_base_url": twilio_emulator.url})


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def review_item(stores: Stores, user_id: int, disposition: Disposition, notes: str) -> None:
    """A finished session with ``disposition`` and its review item, as the finishing step writes them."""
    session_id, now = uuid.uuid4(), datetime.now(UTC)
    async with stores.sessions() as session:
        session.add(
            CallSession(
                id=session_id,
                workflow_id=f"call-{user_id}",
                user_id=user_id,
                queue="unsigned",
                phone_e164="+447700900123",
                status="closed",
                started_at=now,
                closed_at=now,
            )
        )
        await session.flush()
        session.add(
            CallOutcome(
                call_session_id=session_id, user_id=user_id, disposition=disposition.value, notes=notes, recorded_at=now
            )
        )
        await session.commit()
    async with stores.postgres.begin() as conn:
        await reviews.open_for_outcome(
            conn, disposition=disposition, session_id=session_id, user_id=user_id, agent_id=None, at=now
        )


async def older_complaint(stores: Stores, user_id: int, *, days_left: int) -> int:
    """A complaint received long enough ago that its final response falls due in ``days_left`` days
    (negative: that many days late). Its review item's id."""
    await review_item(stores, user_id, Disposition.COMPLAINT, "still waiting for an answer")
    due = datetime.now(UTC) + timedelta(days=days_left)
    async with stores.postgres.begin() as conn:
        return int(
            await conn.scalar(
                text(
                    "UPDATE review_items SET created_at = :received, final_response_due_at = :due"
                    " WHERE user_id = :u AND kind = 'complaint' RETURNING id"
                ),
                {"received": due - reviews.FINAL_RESPONSE_WITHIN, "due": due, "u": user_id},
            )
        )


async def test_a_compliance_officer_filters_reviews_plays_a_recording_to_its_middle_and_lists_a_number(
    live_api: str,
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_url: str,
    replica_writer: AsyncEngine,
    browser: Browser,
) -> None:
    await seed_replica(replica_url, users=20, seed=5)
    await review_item(stores, 4, Disposition.COMPLAINT, "unhappy about the number of calls")
    await review_item(stores, 5, Disposition.DECEASED, "daughter answered: passed away last month")
    await recorded_call(stores, 4)

    async def stored() -> bool:
        async with stores.postgres.connect() as conn:
            return bool(await conn.scalar(text("SELECT count(*) FROM call_recordings")))

    await eventually(stored, within=20)

    console = ConsoleErrors()
    context, page = await open_page(browser, console, "compliance")
    await sign_in(page, live_api, "cora@rmc.example")
    await expect(page).to_have_url(re.compile(r"/compliance$"))
    rows = page.locator("#review-rows tr")
    await expect(rows).to_have_count(2)

    # Filter: complaints only.
    await page.get_by_label("Kind").select_option("complaint")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-kind", "complaint")
    await expect(rows.first).to_contain_text("unhappy about the number of calls")

    # The complaint (just received) is inside its 8 weeks: no deadline alert yet.
    await expect(page.locator("#deadline-alert")).to_be_hidden()

    # Two older complaints (DISP 1.6.2): one's final response falls due in 3 days, the other's is late.
    due_in_3_days, overdue = (
        await older_complaint(stores, 6, days_left=3),
        await older_complaint(stores, 7, days_left=-1),
    )
    cora = await login(http, "cora@rmc.example")
    soon = await http.get("/api/v1/compliance/reviews", params={"kind": "complaint", "due_soon": "true"}, headers=cora)
    flags = {i["id"]: i["final_response_overdue"] for i in soon.json()["items"]}
    assert flags == {due_in_3_days: False, overdue: True}, soon.text
    await page.locator("#review-due-soon").check()  # lists them, and asks for the deadlines again
    await expect(rows).to_have_count(2)
    alert = page.locator("#deadline-alert")
    await expect(alert).to_be_visible()
    await expect(alert).to_contain_text("2 complaint(s) need a final response within 7 days, 1 already overdue")
    await expect(alert).to_contain_text(f"#{due_in_3_days} (customer 6) due ")
    await expect(alert).to_contain_text(f"#{overdue} (customer 7) overdue since ")
    await expect(page.locator(f'#review-rows tr[data-review-id="{overdue}"]')).to_have_class("overdue")
    await page.locator("#review-due-soon").uncheck()
    await expect(rows).to_have_count(3)
    complaint = page.locator('#review-rows tr:has(td:text-is("4"))')

    # The complaint's recordings; play, then seek to the middle.
    await complaint.get_by_role("button", name="Recordings").click()
    await expect(page.locator("#recording-rows tr[data-sid]")).to_have_count(1)
    ranges: list[str] = []
    page.on("request", lambda r: ranges.append(r.headers.get("range", "")) if "/stream?" in r.url else None)
    await page.locator("#recording-rows").get_by_role("button", name="Play").click()
    player = page.locator("#player")
    await expect(player).to_have_attribute("src", re.compile(r"^/api/v1/recordings/RE[0-9a-f]{32}/stream\?"))
    await page.wait_for_function(
        "() => { const p = document.querySelector('#player'); return p.readyState >= 1 && isFinite(p.duration); }"
    )
    length = await page.evaluate("document.querySelector('#player').duration")
    assert length > 1
    await page.evaluate(
        """() => new Promise((resolve) => {
             const p = document.querySelector('#player');
             p.addEventListener('seeked', () => resolve(), { once: true });
             p.currentTime = p.duration / 2;
           })"""
    )
    at = await page.evaluate("document.querySelector('#player').currentTime")
    assert abs(at - length / 2) < 0.6, (at, length)
    assert await page.evaluate("document.querySelector('#player').error") is None
    assert ranges and all(r.startswith("bytes=") for r in ranges if r), ranges  # the player asks by range
    await shot(page, "compliance")

    # Mark the complaining customer vulnerable, with a reason.
    await complaint.get_by_role("button", name="Mark vulnerable").click()
    await page.locator("#flag-reason").fill("mentioned a recent bereavement on the call")
    await page.get_by_role("button", name="Confirm").click()
    await expect(page.locator("#tps-result")).to_contain_text("Customer 4: vulnerable")

    # Add a do-not-call number.
    await page.get_by_label("Number", exact=True).fill("07700 900555")
    await page.get_by_label("Reason", exact=True).fill("asked on the phone never to be called")
    await page.get_by_role("button", name="Add number").click()
    await expect(page.locator('#dnc-rows tr[data-phone="+447700900555"]')).to_contain_text("asked on the phone")
    async with stores.postgres.connect() as conn:
        source = await conn.scalar(text("SELECT source FROM do_not_call WHERE phone_e164 = '+447700900555'"))
        played = await conn.scalar(text("SELECT count(*) FROM audit_log WHERE action = 'recording.played'"))
        flagged = await conn.scalar(
            text("SELECT source FROM customer_flags WHERE user_id = 4 AND flag = 'vulnerable' AND cleared_at IS NULL")
        )
    assert source == "customer" and played == 1 and flagged == "compliance"
    await assert_labelled(page)
    await context.close()
    assert not console.errors, console.errors


async def test_a_compliance_officer_handles_a_complaint_keeps_a_vulnerable_customer_from_untrained_agents_and_lists_a_queued_number(  # noqa: E501
    live_api: str,
    http: httpx.AsyncClient,
    stores: Stores,
    replica_url: str,
    replica_writer: AsyncEngine,
    browser: Browser,
) -> None:
    """Grace's Friday (journey 8), screen by screen: the complaint acknowledged then resolved with what
    was done; its customer marked vulnerable, after which an untrained agent's next call never offers
    them and a trained agent's does; a queued customer's number added to do-not-call, after which
    they are in no queue."""
    await seed_replica(replica_url, users=20, seed=5)
    engine = queue_engine(stores)
    await recompute(stores, engine, list(range(1, 21)))
    queued = sorted(await engine.snapshot("unsigned"))
    assert len(queued) >= 2, queued
    complainant, listed = queued[0], queued[1]
    # Only these two are callable: what each agent is offered next is then theirs to tell.
    everyone_else = [u for u in range(1, 21) if u not in (complainant, listed)]
    await engine.remove_many(everyone_else)
    # The main app holds the complainant as an ordinary customer: only the desk's mark below can keep
    # them from an untrained agent (else the check at the end could pass on the seed's status alone).
    async with replica_writer.begin() as conn:
        await conn.execute(text("UPDATE users SET status = 'active' WHERE id = :u"), {"u": complainant})
    await recompute(stores, engine, [complainant])
    assert not await stores.redis.sismember(engine.keys.vulnerable, str(complainant))
    await review_item(stores, complainant, Disposition.COMPLAINT, "unhappy about the number of calls")
    async with stores.replica.connect() as conn:
        raw_phone = await conn.scalar(text("SELECT phone_number FROM users WHERE id = :u"), {"u": listed})
    listed_e164 = normalise_phone(raw_phone).e164
    assert listed_e164 is not None

    console = ConsoleErrors()
    context, page = await open_page(browser, console, "compliance-handles")
    await sign_in(page, live_api, "cora@rmc.example")
    await page.get_by_label("Status").select_option("")  # any status: the item stays listed as it moves on
    row = page.locator(f'#review-rows tr[data-kind="complaint"]:has(td:text-is("{complainant}"))')
    await expect(row).to_have_count(1)

    # Handle the complaint: acknowledged (DISP: promptly), then resolved with what was done.
    await row.get_by_role("button", name="Acknowledge").click()
    await expect(row).to_contain_text(re.compile("in progress", re.I))
    # ...assigned to a compliance officer (herself, the only one)...
    cora_id = await agent_id(stores, "cora@rmc.example")
    await row.get_by_role("combobox", name=re.compile("^Assign review")).select_option(label="Cora Lane")
    await row.get_by_role("button", name="Assign").click()
    await expect(row.get_by_role("combobox", name=re.compile("^Assign review"))).to_have_value(str(cora_id))
    await row.get_by_role("button", name="Resolve").click()
    await page.locator("#resolve-text").fill("apologised; calls limited to one a week at the customer's request")
    await page.locator("#resolve-form").get_by_role("button", name="Resolve").click()
    await expect(row).to_contain_text(re.compile("closed", re.I))
    async with stores.postgres.connect() as conn:
        handled = (
            await conn.execute(
                text(
                    "SELECT acknowledged_at IS NOT NULL, resolved_at IS NOT NULL, resolution FROM review_items"
                    " WHERE user_id = :u AND kind = 'complaint'"
                ),
                {"u": complainant},
            )
        ).one()
        assigned = (
            await conn.execute(
                text(
                    "SELECT actor_agent_id, details FROM audit_log WHERE action = 'review.assigned'"
                    " AND subject_type = 'review' AND subject_id = (SELECT id::text FROM review_items"
                    " WHERE user_id = :u AND kind = 'complaint')"
                ),
                {"u": complainant},
            )
        ).one()
    assert tuple(handled) == (True, True, "apologised; calls limited to one a week at the customer's request")
    assert assigned.actor_agent_id == cora_id and assigned.details == {"from": None, "to": cora_id}

    # Mark the complainant vulnerable.
    await row.get_by_role("button", name="Mark vulnerable").click()
    await page.locator("#flag-reason").fill("mentioned a recent bereavement on the call")
    await page.get_by_role("button", name="Confirm").click()
    await expect(page.locator("#tps-result")).to_contain_text(f"Customer {complainant}: vulnerable")

    # List the other queued customer's number, as a customer would say it.
    await page.get_by_label("Number", exact=True).fill(raw_phone)
    await page.get_by_label("Reason", exact=True).fill("asked on the phone never to be called")
    await page.get_by_role("button", name="Add number").click()
    await expect(page.locator("#tps-result")).to_contain_text("1 customer(s) left the queues")
    await expect(page.locator(f'#dnc-rows tr[data-phone="{listed_e164}"]')).to_be_visible()
    assert await engine.position(listed) is None  # in no queue
    await assert_labelled(page)
    await context.close()
    assert not console.errors, console.errors

    # Tom is not trained for vulnerable customers: the complainant is not offered to him (and the
    # listed customer is in no queue); Priya is trained, and gets them.
    tom = await start_available(http, "tom@rmc.example")
    offered = (await http.post("/api/v1/agents/me/next-call", headers=tom)).json()
    assert offered["customer"] is None, offered
    assert "needing an agent trained for vulnerable customers" in offered["reason"], offered
    priya = await start_available(http, "priya@rmc.example")
    offered = (await http.post("/api/v1/agents/me/next-call", headers=priya)).json()
    assert offered["customer"]["user_id"] == complainant, offered
