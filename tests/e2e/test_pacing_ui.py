"""Pacing on the screens, in Debian's headless Chromium against the real API: a queue at its ceiling
shows paused on the supervisor's board with the reason, and a progressive agent working it who asks
for a call sees why none comes ("Progressive paused: abandoned rate X % ≥ ceiling Y %")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright, expect
from sqlalchemy import text

from dialler import clock
from dialler.runtime import Stores
from tests.support.browser import ConsoleErrors, assert_fits, open_page, sign_in
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
