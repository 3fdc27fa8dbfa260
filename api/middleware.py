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
import re
from collections.abc import Iterable, Sequence

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

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
