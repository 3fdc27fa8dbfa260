"""The API served over HTTP for end-to-end tests, signing in, and waiting for a condition."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn

from api.__main__ import KEEP_ALIVE_S
from api.app import create_app
from dialler.config import Settings


class LiveServer:
    """The app under uvicorn in a thread, on the port of ``settings.public_base_url``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.public_base_url
        port = urlsplit(self.url).port
        assert port is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        config = uvicorn.Config(
            create_app(settings),
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_keep_alive=KEEP_ALIVE_S,  # as api/__main__.py: a test's reused connection is never cut
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


async def login(http: httpx.AsyncClient, email: str, password: str = "dialler-demo") -> dict[str, str]:
    response = await http.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def eventually(check: Callable[[], Awaitable[Any]], *, within: float = 15, every: float = 0.1) -> Any:
    """Poll until ``check`` returns something truthy (the value), or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {within} s (last: {last!r})")
