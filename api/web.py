"""The web UI: static pages and assets from ``web/``, served by the API itself (no second server).

Pages live at ``/`` (sign-in), ``/agent``, ``/supervisor``, ``/reports`` and ``/admin``; their scripts and styles
under ``/static``. They are public on purpose: they hold no data; every number and name on them
comes from ``/api/v1`` with the signed-in agent's token.

Nothing is built: plain HTML, ES modules and CSS, revalidated on every load (``no-cache`` + ETag) so
a deploy is picked up at once. A strict Content-Security-Policy allows scripts from this origin only;
Twilio's media and signalling hosts are allowed for the Voice SDK in ``twilio`` mode.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

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

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self' https://*.twilio.com wss://*.twilio.com",
        "media-src 'self' https://*.twilio.com https://sdk.twilio.com",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
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


def _page(file: Path) -> Any:
    async def page() -> FileResponse:
        return FileResponse(file, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    page.__name__ = f"page_{file.stem}"
    return page


def install(app: FastAPI) -> None:
    """Serves the pages and ``/static``. Call after the API routers (the mount must not shadow them)."""
    if not (WEB_DIR / "index.html").is_file():
        log.warning("web UI not found at %s: only the API is served", WEB_DIR)
        return
    for path, name in PAGES.items():
        app.add_api_route(path, _page(WEB_DIR / name), methods=["GET"], include_in_schema=False)
    app.mount(STATIC_PATH, RevalidatedStatic(directory=WEB_DIR / "static"), name="static")
