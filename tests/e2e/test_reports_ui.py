"""The Reports page in Debian's headless Chromium against the live API: a supervisor opens it from the
header, picks a period, sees the five charts drawn (with the expected number of points) and each one's
table view, and downloads a CSV that Excel reads (BOM, accented names, UK dates). No console errors
(the page runs under the strict CSP: no inline script, the chart library served from /static)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright, expect

from dialler.config import Settings
from dialler.runtime import Stores
from tests.support.browser import ConsoleErrors, assert_labelled, open_page, shot, sign_in
from tests.support.reports import seed

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHARTS = ["hourly", "abandoned", "depth", "agents", "conversion"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The seeded rows are real instants on a fixed UK day: no demo shift of the business clock here.
    return settings.model_copy(update={"clock_offset_s": 0})


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        await browser.close()


async def test_a_supervisor_reads_the_charts_and_downloads_a_csv(
    live_api: str, stores: Stores, browser: Browser
) -> None:
    async with stores.sessions() as session:
        await seed(session)
    console = ConsoleErrors()
    context, page = await open_page(browser, console, "reports")
    await sign_in(page, live_api, "sam@rmc.example")

    await page.get_by_role("link", name="Reports").click()
    await expect(page.locator("#main[data-loaded]")).to_be_attached()
    await page.get_by_label("From", exact=True).fill("2026-10-25")
    await page.get_by_label("To", exact=True).fill("2026-10-25")
    await page.get_by_role("button", name="Show", exact=True).click()
    await expect(page.locator('#main[data-loaded="2026-10-25/2026-10-25"]')).to_be_attached()

    for name in CHARTS:
        canvas = page.locator(f"#chart-{name}")
        await expect(canvas).to_be_visible()
        assert (await canvas.get_attribute("role")) == "img" and await canvas.get_attribute("aria-label")
    points = await page.evaluate(
        "(ids) => ids.map((id) => Chart.getChart(document.getElementById('chart-' + id)).data.labels.length)", CHARTS
    )
    # 25 hours on the day the clocks go back; 24 of the rolling rate; no depth samples seeded; one agent
    # with time that day (Zoë); the three queues.
    assert points == [25, 24, 0, 1, 3]
    figure = page.locator("#figure-agents")
    await figure.get_by_text("Table view").click()
    row = figure.get_by_role("row", name="Zoë Ångström")
    await expect(row).to_be_visible()
    await expect(row).to_contain_text("4h 40m")  # logged in 16,800 s
    await expect(page.locator("#refusals")).to_contain_text("calling hours")
    await assert_labelled(page)
    await page.evaluate("window.scrollTo(0, 0)")
    await shot(page, "reports")

    async with page.expect_download() as waiting:
        await page.get_by_role("button", name="Agents", exact=True).click()
    download = await waiting.value
    assert download.suggested_filename == "agents_2026-10-25_2026-10-25.csv"
    body = Path(await download.path()).read_bytes()  # noqa: ASYNC240 (a small local file)
    assert body.startswith(b"\xef\xbb\xbf")
    assert "Zoë Ångström".encode() in body and b"25/10/2026" in body
    await context.close()
    assert console.errors == []
