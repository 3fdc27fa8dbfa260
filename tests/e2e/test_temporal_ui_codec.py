"""In the Temporal UI (Chromium), a supervisor signed in to the dialler sees a workflow's input
decoded through the API's codec server; an agent signed in the same way sees only ciphertext.

A private dev server with its Web UI, started as ``make run`` starts it (``--ui-codec-endpoint``);
the browser's Data Encoder setting "Include cross-origin credentials" is on (set in localStorage as
the UI stores it), so the UI's codec requests carry the dialler's /codec cookie."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright, expect
from temporalio.client import Client

from devstack import services
from dialler.config import Settings
from dialler.security.codec import data_converter
from tests.support.browser import sign_in

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
NOTES = "Mrs Tregothnan asked to be called after six on 07700 900123"


@dataclass
class Note:
    notes: str


@pytest.fixture
def ui_port() -> int:
    return services.free_port()


@pytest.fixture
def settings(settings: Settings, ui_port: int) -> Settings:
    """The API allows the private UI's origin (``make run``'s is http://127.0.0.1:8233, the default)."""
    return settings.model_copy(update={"codec_cors_origins": [f"http://127.0.0.1:{ui_port}"]})


@pytest_asyncio.fixture
async def temporal_ui(settings: Settings, ui_port: int, tmp_path) -> AsyncIterator[tuple[str, Client]]:  # type: ignore[no-untyped-def]
    port = services.free_port()
    private = settings.model_copy(update={"temporal_address": f"127.0.0.1:{port}"})
    group = services.ProcessGroup(tmp_path / "temporal-ui", die_with_parent=True)
    try:
        services.start_temporal(group, private, ui_port=ui_port)
        client = await Client.connect(private.temporal_address, data_converter=data_converter(settings))
        yield f"http://127.0.0.1:{ui_port}", client
    finally:
        group.stop_all()


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def test_the_supervisor_sees_the_input_decoded_and_an_agent_does_not(
    live_api: str, temporal_ui: tuple[str, Client], browser: Browser
) -> None:
    ui, client = temporal_ui
    await client.start_workflow("CallbackWorkflow", Note(NOTES), id="codec-ui-1", task_queue="nobody-polls")
    seen = {}
    for who, email in (("supervisor", "sam@rmc.example"), ("agent", "priya@rmc.example")):
        context = await browser.new_context()
        await context.add_init_script(
            f"""if (location.origin === {ui!r}) {{
                localStorage.setItem("endpoint", JSON.stringify({live_api + "/codec"!r}));
                localStorage.setItem("includeCredentials", "true");
                localStorage.setItem("passAccessToken", "false");
                localStorage.setItem("overrideRemoteCodecConfiguration", "true");
            }}"""
        )
        page = await context.new_page()
        await sign_in(page, live_api, email)
        if who == "supervisor":
            cookies = await context.cookies(live_api + "/codec/decode")
            assert [c["name"] for c in cookies] == ["dialler_codec"]
        async with page.expect_response(lambda r: "/codec/decode" in r.url and r.request.method == "POST") as asked:
            await page.goto(f"{ui}/namespaces/default/workflows/codec-ui-1")
        decode = await asked.value
        if who == "supervisor":
            assert decode.status == 200
            await expect(page.get_by_text(re.compile("asked to be called after six"))).to_be_visible(timeout=20_000)
        else:
            assert decode.status == 401  # an agent's sign-in gives this browser no codec session
            await page.wait_for_timeout(2000)  # the page has rendered what it got: ciphertext
            await expect(page.get_by_text(re.compile("asked to be called after six"))).to_have_count(0)
        seen[who] = await page.content()
        await context.close()

    assert NOTES not in seen["agent"]
