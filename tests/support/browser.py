"""The browser tests' helpers: pages with their console errors watched, signing in, screenshots, and
the checks every screen passes (labelled controls, no sideways scrolling at laptop sizes)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, expect
from sqlalchemy import text

from dialler.config import PROJECT_ROOT
from dialler.runtime import Stores

VIEWPORT = ViewportSize(width=1366, height=768)
# The suite runs in parallel on a small machine (make test): a screen gets 10 s to show what it must,
# not Playwright's 5. A wait for something that never comes still fails; one for something slow does not.
expect.set_options(timeout=10_000)


SHOTS = PROJECT_ROOT / "docs" / "screenshots"


# The committed screenshots change only when asked for; other runs still take them (into a temp dir).
UPDATE_SHOTS = os.environ.get("DIALLER_UPDATE_SCREENSHOTS") == "1"


SHOTS_OUT = SHOTS if UPDATE_SHOTS else Path(tempfile.gettempdir()) / "rmc-dialler-screenshots"


PASSWORD = "dialler-demo"


class ConsoleErrors:
    """Every console error and uncaught exception of the pages it watches."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page: Page, name: str) -> Page:
        page.on("console", lambda m: self.errors.append(f"{name} console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"{name} pageerror: {e}"))
        return page


async def open_page(browser: Browser, console: ConsoleErrors, name: str) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport=VIEWPORT, base_url=None)
    context.set_default_timeout(15_000)
    return context, console.watch(await context.new_page(), name)


async def sign_in(page: Page, base_url: str, email: str, *, screenshot: str | None = None) -> None:
    await page.goto(base_url + "/")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    if screenshot:
        await shot(page, screenshot)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#who-name")).to_be_visible()


async def shot(page: Page, name: str) -> None:
    SHOTS_OUT.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS_OUT / f"{name}.png"))


UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter((el) => el.type !== 'hidden' && el.getClientRects().length)
  .filter((el) => !(el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
    || [...(el.labels || [])].some((l) => l.textContent.trim())
    || (el.tagName === 'BUTTON' && el.textContent.trim())))
  .map((el) => el.outerHTML.slice(0, 100))"""


async def assert_labelled(page: Page) -> None:
    """Every visible control has an accessible name (a label, aria-label or its text)."""
    assert await page.evaluate(UNLABELLED) == []


LAPTOPS = [VIEWPORT, ViewportSize(width=1280, height=720)]


async def assert_fits(page: Page) -> None:
    """At each laptop size the page scrolls vertically only."""
    for size in LAPTOPS:
        await page.set_viewport_size(size)
        await page.wait_for_timeout(200)  # one layout after the resize
        widths = await page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], f"{page.url} scrolls sideways at {size}: {widths}"
    await page.set_viewport_size(VIEWPORT)


def board_row(page: Page, agent_id: int):  # type: ignore[no-untyped-def]
    return page.locator(f'#board-rows tr[data-agent-id="{agent_id}"]')


async def agent_id(stores: Stores, email: str) -> int:
    async with stores.postgres.connect() as conn:
        return int(await conn.scalar(text("SELECT id FROM agents WHERE email = :e"), {"e": email}))
