"""Drive Debian's own Firefox (``firefox-esr``) from Python Playwright, over WebDriver BiDi.

Playwright's patched Firefox build cannot be downloaded here, but Playwright also speaks WebDriver
BiDi, the W3C protocol stock Firefox implements, through its ``moz-firefox`` channel. One command it
sends when it opens a browser context, ``emulation.setMediaFeaturesOverride`` (to emulate
``prefers-color-scheme``), is newer than Firefox ESR 153, which answers "unknown command", and the
context cannot open.

So :func:`launch_firefox` starts Playwright on a small launcher: this module, run as a script. It
starts the real Firefox with Playwright's arguments, relays its output, and stands between the two
as a WebDriver BiDi proxy that passes every message through unchanged, except that it answers that
one command itself with success (no override: Firefox keeps its own colour scheme, which the tests
do not depend on). Everything the tests do (navigation, input, locators, console events) is real
Firefox. When Firefox implements the command the proxy can go, and ``FIREFOX`` can be launched
directly.

No screenshots in Firefox tests: Playwright hides the caret with an inline style, which the UI's
Content-Security-Policy refuses, and Firefox reports that refusal as a page error.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import stat
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the launcher process below needs none of Playwright
    from playwright.async_api import Browser, Playwright

FIREFOX = "/usr/bin/firefox-esr"
# Commands Playwright sends that Firefox ESR does not implement yet, answered here with success.
ANSWERED_HERE = frozenset({"emulation.setMediaFeaturesOverride"})
LISTENING = re.compile(r"WebDriver BiDi listening on (ws://\S+)")


def firefox_executable() -> str:
    """The Firefox to drive (``DIALLER_TEST_FIREFOX`` may name another); a clear failure, never a
    skip, when it is missing: ``make test`` installs it."""
    wanted = os.environ.get("DIALLER_TEST_FIREFOX") or FIREFOX
    if os.access(wanted, os.X_OK):
        return wanted
    raise RuntimeError(
        f"the browser tests need Firefox at {wanted}: run `make system-deps` (apt-get install firefox-esr)"
    )


def launcher() -> str:
    """An executable that runs this module with the test's Python (Playwright launches a file)."""
    script = f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n'
    # Named after its content: test runs of other checkouts or interpreters never swap it under us.
    digest = hashlib.sha256(script.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"rmc-dialler-firefox-{os.getuid()}-{digest}.sh"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}")
        tmp.write_text(script)
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR)
        tmp.replace(path)
    return str(path)


async def launch_firefox(playwright: Playwright, **options: Any) -> Browser:
    """``playwright.firefox.launch`` on the real Firefox, over WebDriver BiDi (through the proxy)."""
    env: dict[str, str | float | bool] = {**os.environ, "RMC_FIREFOX": firefox_executable()}
    return await playwright.firefox.launch(channel="moz-firefox", executable_path=launcher(), env=env, **options)


# --- the launcher and proxy (runs in its own process) ---------------------------------------------


async def _relay(source: Any, sink: Any, answer: Any = None) -> None:
    async for message in source:
        if answer is not None and isinstance(message, str) and '"emulation.' in message:
            request = json.loads(message)
            if request.get("method") in ANSWERED_HERE:
                await answer.send(json.dumps({"type": "success", "id": request["id"], "result": {}}))
                continue
        await sink.send(message)


async def _proxy(upstream_base: str) -> str:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import ServerConnection, serve

    async def handle(client: ServerConnection) -> None:
        path = client.request.path if client.request is not None else "/session"
        async with connect(upstream_base + path, max_size=None, compression=None, ping_interval=None) as firefox:
            pumps = [
                asyncio.create_task(_relay(client, firefox, answer=client)),
                asyncio.create_task(_relay(firefox, client)),
            ]
            _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()

    server = await serve(handle, "127.0.0.1", 0, max_size=None, compression=None, ping_interval=None)
    port = next(iter(server.sockets)).getsockname()[1]
    return f"ws://127.0.0.1:{port}"


async def _main(args: list[str]) -> int:
    firefox = await asyncio.create_subprocess_exec(
        os.environ.get("RMC_FIREFOX", FIREFOX), *args, stderr=asyncio.subprocess.PIPE
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, firefox.send_signal, signum)
    assert firefox.stderr is not None
    while line := await firefox.stderr.readline():
        text = line.decode(errors="replace")
        found = LISTENING.search(text)
        if found:
            text = text.replace(found.group(1), await _proxy(found.group(1)))
        sys.stderr.write(text)
        sys.stderr.flush()
    return await firefox.wait()


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1:])))
