"""The web UI: static pages and assets from ``web/``, served by the API itself (no second server).

Pages live at ``/`` (sign-in), ``/agent``, ``/supervisor``, ``/reports`` and ``/admin``; their scripts and styles
under ``/static``. They are public on purpose: they hold no data; every number and name on them
comes from ``/api/v1`` with the signed-in agent's token.

Nothing is built: plain HTML, ES modules and CSS, revalidated on every load (``no-cache`` + ETag) so
a deploy is picked up at once. A strict Content-Security-Policy allows scripts from this origin only;
Twilio's media and signalling hosts are allowed for the Voice SDK in ``twilio`` mode, and in
development the local Twilio emulator, which the browser phone then registers with instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from dialler.config import Settings
from dialler.integrations import twilio_voice

log = logging.getLogger("dialler.api.web")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
PAGES = {
    "/": "index.html",
    "/agent": "agent.html",
    "/supervisor": "supervisor.html",
    "/admin": "admin.html",
    "/reports": "reports.html",
    "/compliance": "compliance.html",
}
STATIC_PATH = "/static"

CONNECT_SRC = "connect-src 'self' https://*.twilio.com wss://*.twilio.com"


def csp(extra_connect: str | None = None) -> str:
    """The pages' policy; ``extra_connect``: one more origin their scripts may call (the local Twilio
    emulator's, for the browser phone, in development only)."""
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            CONNECT_SRC + (f" {extra_connect}" if extra_connect else ""),
            "media-src 'self' https://*.twilio.com https://sdk.twilio.com",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


CSP = csp()  # what production (and any stack without the emulator) serves


def page_headers(settings: Settings) -> dict[str, str]:
    emulator = twilio_voice.browser_phone_emulator_url(settings)
    origin = None
    if emulator:
        parts = urlsplit(emulator)
        origin = f"{parts.scheme}://{parts.netloc}"
    return {
        "Content-Security-Policy": csp(origin),
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
    }


class RevalidatedStatic(StaticFiles):
    """Static files that the browser revalidates on each load (cheap: ``304`` by ETag)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _page(file: Path, headers: dict[str, str]) -> Any:
    async def page() -> FileResponse:
        return FileResponse(file, media_type="text/html; charset=utf-8", headers=headers)

    page.__name__ = f"page_{file.stem}"
    return page


def install(app: FastAPI, settings: Settings) -> None:
    """Serves the pages and ``/static``. Call after the API routers (the mount must not shadow them)."""
    if not (WEB_DIR / "index.html").is_file():
        log.warning("web UI not found at %s: only the API is served", WEB_DIR)
        return
    headers = page_headers(settings)
    for path, name in PAGES.items():
        app.add_api_route(path, _page(WEB_DIR / name, headers), methods=["GET"], include_in_schema=False)
    app.mount(STATIC_PATH, RevalidatedStatic(directory=WEB_DIR / "static"), name="static")
