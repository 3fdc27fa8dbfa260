"""The API's edge: who the client really is behind a reverse proxy, and the security headers.

Plain ASGI middlewares (see api/request_id.py for why not BaseHTTPMiddleware).

Forwarded headers are believed only from a peer in ``trusted_proxies``: anyone else could write
``X-Forwarded-For: <someone else>`` and spread their login attempts over invented addresses, or plant
another address in the audit trail. From a trusted proxy, the client is the right-most address of the
chain that is not itself a trusted proxy (the left-most entries are whatever the client sent), and the
scheme and host the client used become the request's, so that the Twilio signature is checked on the
URL Twilio called. uvicorn's own proxy-header handling is off (api/__main__.py): this is the one home.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dialler.logs import bind_request, unbind_request

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# The API's own request metrics; in multiprocess mode the values live in PROMETHEUS_MULTIPROC_DIR.
HTTP_REGISTRY = None if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else CollectorRegistry()

_FORWARDED_PAIR = re.compile(r'(?i)\s*(for|proto|host|by)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)')


def _networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)


def _address(node: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP of a Forwarded ``for=`` node or an X-Forwarded-For entry (ports and brackets removed)."""
    node = node.strip().strip('"')
    if node.startswith("["):
        node = node[1 : node.find("]")] if "]" in node else node[1:]
    elif node.count(":") == 1:
        node = node.split(":", 1)[0]
    try:
        return ipaddress.ip_address(node)
    except ValueError:
        return None  # "unknown", an obfuscated identifier, or garbage


def _header(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope["headers"] if key == name]


def _forwarded(scope: Scope) -> tuple[list[str], str | None, str | None]:
    """(``for`` chain, the last hop's ``proto``, the last hop's ``host``) from RFC 7239 ``Forwarded``,
    else from ``X-Forwarded-For/-Proto/-Host``."""
    elements = [element for value in _header(scope, b"forwarded") for element in value.split(",")]
    if elements:
        chain: list[str] = []
        proto = host = None
        for element in elements:
            pairs = {k.lower(): v.strip('"') for k, v in _FORWARDED_PAIR.findall(element)}
            if "for" in pairs:
                chain.append(pairs["for"])
            proto = pairs.get("proto", proto)
            host = pairs.get("host", host)
        return chain, proto, host
    chain = [entry for value in _header(scope, b"x-forwarded-for") for entry in value.split(",") if entry.strip()]
    protos = [p.strip() for value in _header(scope, b"x-forwarded-proto") for p in value.split(",")]
    hosts = [h.strip() for value in _header(scope, b"x-forwarded-host") for h in value.split(",")]
    return chain, (protos[-1] if protos else None), (hosts[-1] if hosts else None)


class ProxyHeadersMiddleware:
    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[str]) -> None:
        self.app = app
        self.trusted = _networks(trusted_proxies)

    def _is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.trusted and scope.get("client"):
            peer = _address(scope["client"][0])
            if self._is_trusted(peer):
                self._apply(scope)
        await self.app(scope, receive, send)

    def _apply(self, scope: Scope) -> None:
        chain, proto, host = _forwarded(scope)
        client = None
        for node in reversed(chain):
            address = _address(node)
            if address is None:
                break  # an unparsable hop: stop at the last proxy we could read rather than guess
            client = address
            if not self._is_trusted(address):
                break
        if client is not None:
            scope["client"] = (str(client), 0)
        forwarded_scheme = proto is not None and proto.lower() in ("http", "https")
        if forwarded_scheme:
            scope["scheme"] = proto.lower()  # type: ignore[union-attr]
        forwarded_host = host is not None and re.fullmatch(_HOST, host) is not None
        if forwarded_host:
            headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
            scope["headers"] = [*headers, (b"host", host.encode("latin-1"))]  # type: ignore[union-attr]
        if forwarded_scheme or forwarded_host:
            # The origin the client called (Twilio signs the URL it called, not ours after the proxy).
            public_host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            scope.setdefault("state", {})["public_origin"] = f"{scope['scheme']}://{public_host}"


_HOST = r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?"


def public_origin(scope_state: object) -> str | None:
    """The scheme and host a trusted proxy says the client used (``request.state``), or None."""
    return getattr(scope_state, "public_origin", None)


# JSON answers are never a document to render: nothing may load from or frame them. The UI's pages
# carry their own policy (api/web.py, the one a page's scripts and the Voice SDK satisfy); the API docs
# pages load Swagger UI from its CDN and are left without one (they are off in production).
API_CSP = "default-src 'none'; frame-ancestors 'none'"
_DOCS = frozenset({"/api/v1/docs", "/api/v1/redoc", "/api/v1/docs/oauth2-redirect"})
HSTS = "max-age=31536000; includeSubDomains"
# Responses that carry a credential: never stored by a browser or a shared cache.
TOKEN_PATHS = frozenset({"/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/voice/token"})


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, production: bool) -> None:
        self.app = app
        self.production = production

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        no_store = path in TOKEN_PATHS
        api_csp = path.startswith("/api/") and path not in _DOCS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                headers["X-Frame-Options"] = "DENY"
                if api_csp:
                    headers.setdefault("Content-Security-Policy", API_CSP)
                if self.production:
                    headers["Strict-Transport-Security"] = HSTS
                if no_store:
                    headers["Cache-Control"] = "no-store"
                    headers["Pragma"] = "no-cache"
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --- request metrics -------------------------------------------------------------------------------
#
# Labelled by the route *template* (/api/v1/callbacks/{user_id}), never the raw path: ids in a label
# would be personal data in Prometheus and one series per customer. With several API processes
# (api_workers > 1), api/__main__.py points PROMETHEUS_MULTIPROC_DIR at a directory they share and
# /metrics sums them (api/routes/cdc.py).
HTTP_REQUESTS = Counter(
    "dialler_http_requests", "API requests answered", ["method", "route", "status"], registry=HTTP_REGISTRY
)
HTTP_LATENCY = Histogram(
    "dialler_http_request_duration_seconds",
    "API request latency, to the last byte",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=HTTP_REGISTRY,
)
HTTP_FAMILIES = ("dialler_http_requests", "dialler_http_request_duration_seconds")


def route_template(scope: Scope, templates: dict[int, str]) -> str:
    route = scope.get("route")
    if route is None:
        return "<unmatched>"
    # FastAPI >= 0.16x routes an included router's route object as declared (path without the
    # prefix); the full template comes from the app's effective route table.
    path = templates.get(id(route)) or getattr(route, "path", None)
    return path if isinstance(path, str) and path else "<unmatched>"


def _templates(app: Any) -> dict[int, str]:
    try:
        from fastapi.routing import iter_route_contexts  # type: ignore[attr-defined]
    except ImportError:  # older FastAPI: route.path already carries the prefix
        return {}
    return {
        id(ctx.original_route): ctx.path_format
        for ctx in iter_route_contexts(app.routes)
        if getattr(ctx, "original_route", None) is not None
    }


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.templates: dict[int, str] | None = None  # built on the first request: routes are all in by then

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception escaping the app is a 500 to the client

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            if self.templates is None:
                self.templates = _templates(scope["app"]) if "app" in scope else {}
            route = route_template(scope, self.templates)
            HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)


def register_http_metrics(registry: CollectorRegistry) -> None:
    """Add the request metrics of this API (all its processes) to a scrape's registry."""
    if HTTP_REGISTRY is None:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(HTTP_REGISTRY)  # type: ignore[arg-type]


class LogContextMiddleware:
    """Binds the request's state (its request id, later its agent id) to the log lines of the task
    serving it (dialler/logs.py). Inside RequestIdMiddleware, which sets the id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = bind_request(scope.setdefault("state", {}))
        try:
            await self.app(scope, receive, send)
        finally:
            unbind_request(token)
