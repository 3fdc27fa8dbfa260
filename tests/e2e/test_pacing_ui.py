"""Pacing on the screens, in Debian's headless Chromium against the real API: a queue at its ceiling
shows paused on the supervisor's board with the reason, and a progressive agent working it who asks
for a call sees why none comes ("Progressive paused: abandoned rate X % ≥ ceiling Y %"). The board's
pacing controls: a ceiling above 3 % refused with the reason, a queue's mode, ceiling and ratio
saved, its pacer started, the live decision shown and why it tapers and pauses, then stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright, expect
from sqlalchemy import text
from temporalio.worker import Worker

from dialler import clock
from dialler.config import Settings
from dialler.runtime import Stores
from tests.support.browser import ConsoleErrors, assert_fits, open_page, sign_in
from tests.support.live_api import eventually
from tests.support.pacing import seed_calls

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
REASON = "Progressive paused: abandoned rate 10 % ≥ ceiling 1 %"


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        yield browser
        await browser.close()


async def test_a_queue_at_its_ceiling_shows_paused_with_the_reason_on_the_board_and_the_agents_screen(
    live_api: str, stores: Stores, browser: Browser, tmp_path: Path
) -> None:
    # 1 abandoned of 10 live calls in the last 24 h on the unsigned queue: 10 %, over the default 1 %.
    await seed_calls(stores, queue="unsigned", at=clock.instant() - timedelta(hours=3), live=9, abandoned=1)
    async with stores.postgres.begin() as conn:
        await conn.execute(text("UPDATE agents SET progressive_mode = true WHERE email = 'tom@rmc.example'"))
    console = ConsoleErrors()

    board_ctx, board = await open_page(browser, console, "supervisor")
    await sign_in(board, live_api, "sam@rmc.example")
    unsigned = board.locator('#queue-rows tr[data-queue="unsigned"] td.pacing')
    await expect(unsigned.locator(".rate")).to_have_text("10.0%")
    await expect(unsigned.locator(".ceiling")).to_have_text("max 1.0%")
    await expect(board.locator('#queue-rows tr[data-paused-queue="unsigned"]')).to_contain_text(REASON)
    await expect(board.locator('#queue-rows tr[data-queue="callbacks"] td.pacing .rate')).to_have_text("n/a")
    await expect(board.locator("#queue-rows tr.pacing-paused")).to_have_count(1)
    await assert_fits(board)  # the extra column and the reason row keep the board on a laptop screen

    agent_ctx, agent = await open_page(browser, console, "agent")
    await sign_in(agent, live_api, "tom@rmc.example")
    await agent.get_by_role("button", name="Available").click()
    await expect(agent.locator("#status-now")).to_contain_text("Available")
    await agent.get_by_role("button", name="Next call").click()  # the page never asks by itself
    await expect(agent.locator("#call-error")).to_contain_text(REASON, timeout=15_000)
    await expect(agent.locator("#customer-name")).to_have_count(0)
    await agent.screenshot(path=str(tmp_path / "agent-progressive-paused.png"))
    await board.screenshot(path=str(tmp_path / "supervisor-progressive-paused.png"))

    # The refusal itself is the one failed request the browser logs (a 409 is the server's answer).
    others = [e for e in console.errors if "status of 409" not in e]
    assert not others, "\n".join(others)
    await agent_ctx.close()
    await board_ctx.close()


class TestTheBoardsPacingControls:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"pacing_tick_s": 0.5})

    async def test_a_supervisor_sets_starts_watches_and_stops_a_queues_pacer(
        self, live_api: str, worker: Worker, stores: Stores, browser: Browser, tmp_path: Path
    ) -> None:
        # 60 calls put through in the last 24 h, none abandoned: the governor lets predictive run.
        await seed_calls(stores, queue="unsigned", at=clock.instant() - timedelta(hours=2), live=60)
        console = ConsoleErrors()
        ctx, board = await open_page(browser, console, "supervisor")
        await sign_in(board, live_api, "sam@rmc.example")
        form = board.locator('form[data-pacing-queue="unsigned"]')
        await expect(form.locator(".pacer-status")).to_contain_text("Pacer stopped")

        # Above Ofcom's 3 %: refused, with the reason, and nothing saved.
        await form.get_by_label("Ceiling %").fill("4")
        await form.get_by_role("button", name="Save").click()
        await expect(board.locator("#pacing-error")).to_contain_text("cannot be above 3 %")

        await form.get_by_label("Mode").select_option("predictive")
        await form.get_by_label("Ceiling %").fill("2")
        await form.get_by_label("Max ratio").fill("2.5")
        await form.get_by_role("button", name="Save").click()
        await expect(board.locator("#pacing-error")).to_be_hidden()

        async def saved() -> Any:
            async with stores.postgres.connect() as conn:
                query = text("SELECT pacing_mode, max_ratio, abandon_rate_ceiling FROM queue_settings")
                row = (await conn.execute(query)).one_or_none()
            return row if row is not None and row.pacing_mode == "predictive" else None

        row = await eventually(saved, within=10)
        assert (float(row.max_ratio), float(row.abandon_rate_ceiling)) == (2.5, 0.02)

        await form.get_by_role("button", name="Start pacer").click()
        status = form.locator(".pacer-status")
        await expect(status).to_contain_text("Running · predictive · ratio", timeout=15_000)
        await expect(status).to_contain_text("24 h abandoned 0.0% of max 2.0%")
        await expect(form.locator(".pacer-reason")).to_contain_text("predictive: abandoned 0.00% in 24 h")

        # One abandoned call: 1 of 61 = 1.6 %, over 75 % of the 2 % ceiling: tapered to progressive.
        await seed_calls(stores, queue="unsigned", at=clock.instant() - timedelta(hours=1), abandoned=1)
        await expect(status).to_contain_text("Running · progressive", timeout=15_000)
        await expect(form.locator(".pacer-reason")).to_contain_text(
            "Why: tapered to progressive: abandoned 1.64% in 24 h is near the ceiling 2.00%"
        )
        # Two more: 3 of 63 = 4.8 %, over the ceiling: paused.
        await seed_calls(stores, queue="unsigned", at=clock.instant() - timedelta(hours=1), abandoned=2)
        await expect(status).to_contain_text("Running · paused", timeout=15_000)
        await expect(form.locator(".pacer-reason")).to_contain_text("Why: paused: abandoned 4.76% in 24 h reached")
        await assert_fits(board)
        await board.screenshot(path=str(tmp_path / "supervisor-pacing-paused.png"))

        await form.get_by_role("button", name="Stop pacer").click()
        await expect(status).to_contain_text("Pacer stopped", timeout=15_000)
        # The refused ceiling is the one failed request the browser logs (a 422 is the server's answer).
        others = [e for e in console.errors if "status of 422" not in e]
        assert not others, "\n".join(others)
        await ctx.close()
