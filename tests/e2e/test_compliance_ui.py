"""The Compliance page in Debian's headless Chromium against the real stack, recordings on the Twilio
emulator: a compliance officer filters the review queue, plays a recording and seeks to its middle
(through the signed play link, ranges from the API), and adds a do-not-call number. No console errors."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

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
from dialler.runtime import Stores
from tests.support.browser import ConsoleErrors, assert_labelled, open_page, shot, sign_in
from tests.support.live_api import eventually
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


async def test_a_compliance_officer_filters_reviews_plays_a_recording_to_its_middle_and_lists_a_number(
    live_api: str, worker: Worker, stores: Stores, replica_url: str, replica_writer: AsyncEngine, browser: Browser
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

    # The complaint's recordings; play, then seek to the middle.
    await rows.first.get_by_role("button", name="Recordings").click()
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
    await rows.first.get_by_role("button", name="Mark vulnerable").click()
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
