"""Settings for the Twilio layer's tests, and the receiver of the webhooks Twilio (the emulator) sends."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import parse_qsl

import uvicorn
from fastapi import FastAPI, Request, Response

from dialler.config import Settings, TelephonyMode
from dialler.integrations import twilio_voice

ACCOUNT_SID = "AC" + "a1" * 16


AUTH_TOKEN = "test-auth-token-0123456789abcdef"


API_KEY_SID = "SK" + "b2" * 16


API_KEY_SECRET = "test-api-key-secret-0123456789ab"


TWIML_APP_SID = "AP" + "c3" * 16


CALLER_ID = "+441615550100"


class BackgroundServer:
    """An ASGI app served by uvicorn on 127.0.0.1 in a daemon thread; ``url`` once started."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> Self:
        # Bind first and hand uvicorn the socket: no window in which another process takes the port.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("background uvicorn server did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "telephony_mode": TelephonyMode.TWILIO,
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_api_key_sid": API_KEY_SID,
        "twilio_api_key_secret": API_KEY_SECRET,
        "twilio_twiml_app_sid": TWIML_APP_SID,
        "caller_id": CALLER_ID,
        "company_name": "RMC Claims",
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass(frozen=True)
class Hook:
    """One webhook request as the receiver saw it."""

    path: str
    url: str
    pairs: list[tuple[str, str]]
    signature: str | None
    idempotency_token: str | None

    @property
    def form(self) -> dict[str, str]:
        return dict(self.pairs)


class Receiver:
    """Our side of the webhooks: records every POST; serves TwiML on ``/twiml/<name>``."""

    def __init__(self) -> None:
        self.hooks: list[Hook] = []
        self.twiml: dict[str, str] = {}
        self._server = BackgroundServer(self._app())

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> Receiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        self.hooks.clear()
        self.twiml = {
            "bridge": twilio_voice.bridge_to_agent("agent_1", f"{self.url}/status"),
            "abandoned": twilio_voice.abandoned_message("RMC Claims", CALLER_ID),
        }

    def at(self, path: str) -> list[Hook]:
        return [h for h in self.hooks if h.path == path]

    async def wait_for(self, predicate: Callable[[list[Hook]], bool], within_s: float = 5.0) -> list[Hook]:
        deadline = time.monotonic() + within_s
        while not predicate(list(self.hooks)):
            if time.monotonic() > deadline:
                raise AssertionError(f"webhooks not as expected in {within_s}s: {[h.form for h in self.hooks]}")
            await asyncio.sleep(0.01)
        return list(self.hooks)

    def _app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

        @app.post("/{path:path}")
        async def hook(path: str, request: Request) -> Response:
            body = (await request.body()).decode()
            self.hooks.append(
                Hook(
                    path=f"/{path}",
                    url=str(request.url),
                    pairs=parse_qsl(body, keep_blank_values=True),
                    signature=request.headers.get("x-twilio-signature"),
                    idempotency_token=request.headers.get("i-twilio-idempotency-token"),
                )
            )
            if path.startswith("twiml/"):
                document = self.twiml.get(path.removeprefix("twiml/"))
                if document is None:
                    return Response(status_code=404)
                return Response(document, media_type="application/xml")
            return Response(status_code=204)

        return app
