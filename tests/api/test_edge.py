"""The API's edge: forwarded headers believed only from trusted proxies, security headers, the
OpenAPI docs in production, and what the anonymous health check tells an outsider."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.middleware import API_CSP
from api.web import CSP, page_headers
from dialler.agents.ratelimit import address_limit
from dialler.audit.service import AuditAction
from dialler.config import Environment, Settings
from dialler.integrations.sqs import ensure_cdc_queues
from dialler.integrations.twilio_voice import sign
from dialler.runtime import Stores
from tests.support.api_agents import DEFAULT_PASSWORD, MakeAgent
from tests.support.audit import audit_rows

PROXY = "10.0.3.7"  # the load balancer, inside trusted_proxies
OUTSIDER = "198.51.100.23"  # a client reaching the API directly
LOGIN = "/api/v1/auth/login"

Connect = Callable[[str], "AsyncIterator[httpx.AsyncClient]"]


@pytest.fixture
async def behind_proxy(settings: Settings, stores: Stores) -> AsyncIterator[FastAPI]:
    ensure_cdc_queues(settings)
    app = create_app(settings.model_copy(update={"trusted_proxies": ["10.0.0.0/8", "fd00::/8"]}))
    async with app.router.lifespan_context(app):
        yield app


def from_peer(app: FastAPI, peer: str) -> httpx.AsyncClient:
    """A client whose TCP peer address, as the API sees it, is ``peer``."""
    transport = httpx.ASGITransport(app=app, client=(peer, 41234))
    return httpx.AsyncClient(transport=transport, base_url="http://api.internal:8000")


async def login_ips(stores: Stores, action: str) -> list[str | None]:
    rows = sorted(await audit_rows(stores, action), key=lambda row: row.id)
    return [None if row.client_ip is None else str(row.client_ip) for row in rows]


async def test_behind_a_trusted_proxy_the_audit_records_the_client_not_the_proxy(
    behind_proxy: FastAPI, make_agent: MakeAgent, stores: Stores
) -> None:
    await make_agent(email="ada@rmc.example")
    async with from_peer(behind_proxy, PROXY) as http:
        # The client's own claim (left) is not believed over what the proxy saw (right-most).
        forwarded = {"X-Forwarded-For": "1.2.3.4, 203.0.113.50", "X-Forwarded-Proto": "https"}
        ok = await http.post(LOGIN, json={"email": "ada@rmc.example", "password": DEFAULT_PASSWORD}, headers=forwarded)
        rfc = {"Forwarded": 'for="[2001:db8::17]:4711";proto=https;host=dialler.example.co.uk'}
        again = await http.post(LOGIN, json={"email": "ada@rmc.example", "password": DEFAULT_PASSWORD}, headers=rfc)

    assert (ok.status_code, again.status_code) == (200, 200)
    assert await login_ips(stores, AuditAction.LOGIN) == ["203.0.113.50", "2001:db8::17"]


async def test_a_chain_of_trusted_proxies_is_skipped(
    behind_proxy: FastAPI, make_agent: MakeAgent, stores: Stores
) -> None:
    await make_agent(email="ada@rmc.example")
    async with from_peer(behind_proxy, PROXY) as http:
        headers = {"X-Forwarded-For": "203.0.113.50, 10.9.9.9"}  # CDN → internal LB → us
        await http.post(LOGIN, json={"email": "ada@rmc.example", "password": DEFAULT_PASSWORD}, headers=headers)

    assert await login_ips(stores, AuditAction.LOGIN) == ["203.0.113.50"]


async def test_from_an_untrusted_peer_forwarded_headers_are_ignored(
    behind_proxy: FastAPI, make_agent: MakeAgent, stores: Stores
) -> None:
    await make_agent(email="ada@rmc.example")
    async with from_peer(behind_proxy, OUTSIDER) as http:
        forged = {"X-Forwarded-For": "10.0.0.1", "Forwarded": "for=192.0.2.1"}
        await http.post(LOGIN, json={"email": "ada@rmc.example", "password": DEFAULT_PASSWORD}, headers=forged)

    assert await login_ips(stores, AuditAction.LOGIN) == [OUTSIDER]


async def test_the_login_limit_counts_each_client_behind_the_proxy_separately(
    behind_proxy: FastAPI, make_agent: MakeAgent, settings: Settings
) -> None:
    await make_agent(email="victim@rmc.example")
    async with from_peer(behind_proxy, PROXY) as http:
        sprayer = {"X-Forwarded-For": "203.0.113.66"}
        for n in range(address_limit(settings)):
            await http.post(LOGIN, json={"email": f"spray{n}@rmc.example", "password": "guess-guess"}, headers=sprayer)
        blocked = await http.post(
            LOGIN, json={"email": "victim@rmc.example", "password": DEFAULT_PASSWORD}, headers=sprayer
        )
        colleague = await http.post(
            LOGIN,
            json={"email": "victim@rmc.example", "password": DEFAULT_PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.77"},
        )

    assert blocked.status_code == 429
    assert colleague.status_code == 200  # the balancer's address is not one shared bucket


async def test_an_untrusted_client_cannot_escape_the_limit_by_inventing_addresses(
    behind_proxy: FastAPI, make_agent: MakeAgent, settings: Settings
) -> None:
    await make_agent(email="victim@rmc.example")
    async with from_peer(behind_proxy, OUTSIDER) as http:
        for n in range(address_limit(settings)):
            await http.post(
                LOGIN,
                json={"email": f"spray{n}@rmc.example", "password": "guess-guess"},
                headers={"X-Forwarded-For": f"192.0.2.{n}"},
            )
        blocked = await http.post(
            LOGIN,
            json={"email": "victim@rmc.example", "password": DEFAULT_PASSWORD},
            headers={"X-Forwarded-For": "192.0.2.250"},
        )

    assert blocked.status_code == 429


SMS_STATUS = "/api/v1/webhooks/twilio/sms-status?m=1"


async def test_twilio_signature_is_checked_on_the_url_twilio_called_through_a_trusted_proxy(
    behind_proxy: FastAPI, settings: Settings
) -> None:
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    called = "https://hooks.rmc.example" + SMS_STATUS
    signed = {"X-Twilio-Signature": sign(settings, called, form)}
    via_proxy = signed | {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.rmc.example"}

    async with from_peer(behind_proxy, PROXY) as http:
        accepted = await http.post(SMS_STATUS, data=form, headers=via_proxy)
    async with from_peer(behind_proxy, OUTSIDER) as http:
        # The same headers from anyone else: the URL is ours (public_base_url), the signature fails.
        refused = await http.post(SMS_STATUS, data=form, headers=via_proxy)
        direct = await http.post(
            SMS_STATUS,
            data=form,
            headers={"X-Twilio-Signature": sign(settings, settings.public_base_url + SMS_STATUS, form)},
        )

    assert accepted.status_code == 204
    assert refused.status_code == 403
    assert direct.status_code == 204


# Security headers and docs ------------------------------------------------------------------------


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_every_response_has_the_security_headers_and_tokens_are_not_stored(
    client: httpx.AsyncClient, make_agent: MakeAgent, settings: Settings
) -> None:
    await make_agent(email="ada@rmc.example")
    page = await client.get("/")
    login = await client.post(LOGIN, json={"email": "ada@rmc.example", "password": DEFAULT_PASSWORD})
    failed = await client.post(LOGIN, json={"email": "ada@rmc.example", "password": "wrong-wrong"})

    for response in (page, login, failed):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "Strict-Transport-Security" not in response.headers  # development serves plain HTTP
    # the one the UI is tested against (e2e), widened only to the local Twilio emulator the tests run
    assert page.headers["Content-Security-Policy"] == page_headers(settings)["Content-Security-Policy"]
    assert login.headers["Content-Security-Policy"] == API_CSP
    assert login.status_code == 200
    assert login.headers["Cache-Control"] == "no-store"
    assert page.headers["Cache-Control"] == "no-cache"  # pages revalidate; only credentials are never stored


async def test_production_sends_hsts_and_hides_the_api_docs(settings: Settings) -> None:
    production = settings.model_copy(update={"environment": Environment.PRODUCTION})
    async with app_client(production) as http:
        page = await http.get("/")
        docs = [(await http.get(f"/api/v1/{path}")).status_code for path in ("openapi.json", "docs", "redoc")]
    async with app_client(production.model_copy(update={"api_docs": True})) as http:
        enabled = (await http.get("/api/v1/openapi.json")).status_code
    async with app_client(settings) as http:
        development = (await http.get("/api/v1/openapi.json")).status_code

    assert page.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert docs == [404, 404, 404]
    assert (enabled, development) == (200, 200)


async def test_pages_may_connect_to_the_twilio_emulator_in_development_only(settings: Settings) -> None:
    """The browser phone registers with the local emulator in development (emulator_device.js): the
    pages may call its origin then, and never in production, whatever the settings say."""
    emulated = settings.model_copy(update={"twilio_api_base_url": "http://127.0.0.1:4010/"})
    async with app_client(emulated) as http:
        development = (await http.get("/agent")).headers["Content-Security-Policy"]
    async with app_client(emulated.model_copy(update={"environment": Environment.PRODUCTION})) as http:
        production = (await http.get("/agent")).headers["Content-Security-Policy"]

    connect = next(d for d in development.split("; ") if d.startswith("connect-src"))
    assert connect.split() == [
        "connect-src",
        "'self'",
        "https://*.twilio.com",
        "wss://*.twilio.com",
        "http://127.0.0.1:4010",
    ]
    assert development.replace(" http://127.0.0.1:4010", "") == CSP  # nothing else widened
    assert production == CSP


# Health -------------------------------------------------------------------------------------------


async def test_anonymous_health_says_up_or_down_and_nothing_else(client: httpx.AsyncClient, replica_url: str) -> None:
    response = await client.get("/api/v1/health")

    assert response.status_code == 200
    assert response.json() == {"status": "up"}


async def test_health_details_need_the_monitoring_key(
    client: httpx.AsyncClient, settings: Settings, replica_url: str
) -> None:
    wrong = await client.get("/api/v1/health", headers={"Authorization": "Bearer guess"})
    right = await client.get(
        "/api/v1/health", headers={"Authorization": f"Bearer {settings.metrics_token.get_secret_value()}"}
    )

    assert wrong.json() == {"status": "up"}
    assert {d["name"] for d in right.json()["dependencies"]} == {"postgres", "replica", "redis", "temporal", "sqs"}
