"""The web UI in Debian's own Firefox (``firefox-esr``, headless), driven by Python Playwright over
WebDriver BiDi (see ``tests/e2e/firefox_bidi.py``), against the real stack and the Twilio emulator.

Chromium runs the full journeys (``test_ui.py``); here each screen must work in Firefox too: signing
in and working by keyboard, the agent taking a call, the supervisor's board and the admin's accounts,
with labelled controls, no console errors and no horizontal scrolling at laptop sizes. No skip: a
machine without Firefox fails with the command that installs it (``make test`` does).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect
from temporalio.worker import Worker

from dialler.runtime import Stores
from tests.support.browser import (
    PASSWORD,
    ConsoleErrors,
    agent_id,
    assert_fits,
    assert_labelled,
    board_row,
    open_page,
    sign_in,
)
from tests.support.call_sessions import queue_one_customer
from tests.support.firefox_bidi import launch_firefox

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture(scope="module")
async def firefox() -> AsyncIterator[Browser]:
    """One Firefox for the module (it takes seconds to start); each test has its own contexts."""
    async with async_playwright() as playwright:
        browser = await launch_firefox(playwright, headless=True)
        yield browser
        await browser.close()


async def tab_to(page: Page, name: str, *, presses: int = 40) -> None:
    """Move the focus with Tab alone until it is on the control named ``name``."""
    for _ in range(presses):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            "() => { const el = document.activeElement;"
            " return el ? (el.getAttribute('aria-label') || el.textContent || '').trim() : ''; }"
        )
        if focused == name:
            return
    raise AssertionError(f"{name!r} cannot be reached with the Tab key ({presses} presses)")


async def test_an_agent_works_by_keyboard_in_firefox(
    live_api: str, worker: Worker, stores: Stores, replica_url: str, firefox: Browser
) -> None:
    await queue_one_customer(stores, replica_url)
    console = ConsoleErrors()
    ctx, page = await open_page(firefox, console, "agent")

    # Sign in by keyboard: the email field has the focus, Tab to the password, Enter to send.
    await page.goto(live_api + "/")
    await expect(page.get_by_label("Email")).to_be_focused()
    await page.keyboard.type("priya@rmc.example")
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/agent$"))
    await expect(page.locator("#who-name")).to_have_text("Priya Shah")
    await assert_fits(page)

    # Available, then the next call, by keyboard.
    await expect(page.get_by_role("button", name="Available")).to_be_enabled()
    await tab_to(page, "Available")
    await page.keyboard.press("Enter")
    await expect(page.locator("#status-now")).to_contain_text("Available")
    await expect(page.get_by_role("button", name="Next call")).to_be_enabled()
    await tab_to(page, "Next call")
    await page.keyboard.press("Enter")
    await expect(page.locator("#customer-name")).to_be_visible()
    await expect(page.locator("#call-state-text")).to_contain_text("Reserved")
    await expect(page.locator("#customer-body")).to_contain_text("Claims")
    await assert_labelled(page)
    await assert_fits(page)

    # The call connects; hang up and record the outcome (the form takes the focus).
    await tab_to(page, "Call")
    await page.keyboard.press("Enter")
    await expect(page.locator("#call-state-text")).to_contain_text("Connected")
    await page.get_by_role("button", name="Hang up").click()
    await expect(page.get_by_label("Not interested")).to_be_enabled()
    await page.get_by_label("Not interested").check()
    await page.get_by_role("button", name="Save outcome").click()
    await expect(page.locator("#status-now")).to_contain_text("Available")
    await expect(page.locator("#customer-body")).to_contain_text("No customer yet")

    assert not console.errors, "\n".join(console.errors)
    await ctx.close()


async def test_the_supervisor_and_admin_screens_in_firefox(live_api: str, stores: Stores, firefox: Browser) -> None:
    console = ConsoleErrors()
    sup_ctx, supervisor = await open_page(firefox, console, "supervisor")
    await sign_in(supervisor, live_api, "sam@rmc.example")
    await expect(supervisor).to_have_url(re.compile(r"/supervisor$"))
    await expect(supervisor.locator("#board-rows tr")).to_have_count(7)  # the demo accounts
    priya = board_row(supervisor, await agent_id(stores, "priya@rmc.example"))
    await expect(priya).to_have_attribute("data-state", "offline")
    await expect(supervisor.locator("#kpi-calls .kpi-value")).to_have_text("0")
    await assert_labelled(supervisor)
    await assert_fits(supervisor)

    adm_ctx, admin = await open_page(firefox, console, "admin")
    await sign_in(admin, live_api, "ada@rmc.example")
    await expect(admin).to_have_url(re.compile(r"/admin$"))
    await expect(admin.locator("#agent-rows tr")).to_have_count(7)
    await assert_fits(admin)
    await admin.get_by_role("button", name="New agent").click()
    dialog = admin.get_by_role("dialog")
    await expect(dialog.get_by_label("Name")).to_be_visible()
    await assert_labelled(admin)
    await admin.keyboard.press("Escape")  # the dialog closes by keyboard
    await expect(dialog).to_be_hidden()

    assert not console.errors, "\n".join(console.errors)
    await sup_ctx.close()
    await adm_ctx.close()
