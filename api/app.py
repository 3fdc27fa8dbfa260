"""The FastAPI application: ``create_app(settings)`` builds it; the lifespan opens and closes the
process's clients (engines, Redis, exactly one Temporal client)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors, web
from api.auth import document_security
from api.middleware import (
    LogContextMiddleware,
    MetricsMiddleware,
    ProxyHeadersMiddleware,
    SecurityHeadersMiddleware,
)
from api.request_id import RequestIdMiddleware
from api.routes import (
    agents,
    audit,
    auth,
    callbacks,
    calls,
    cdc,
    codec,
    compliance,
    dashboard,
    health,
    pacing,
    personal_data,
    portal,
    presence,
    queues,
    recordings,
    reports,
    sms,
    ui_support,
    voice,
)
from dialler.config import Settings, get_settings
from dialler.customers.read_ahead import ContextReadAhead
from dialler.integrations.twilio import TwilioTelephony
from dialler.logs import configure_logging
from dialler.queues.keys import QUEUES
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores, TemporalConnector

log = logging.getLogger("dialler.api")
API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings)  # each API worker process is started afresh (spawn), without the parent's set-up
        app.state.settings = settings
        app.state.stores = Stores.open(settings)
        # One carrier client for the process: its connections are reused, so the 2-second guard's
        # requests (api/routes/voice.py) pay no new TLS handshake at the budget's end.
        app.state.telephony = TwilioTelephony(settings)
        # Temporal may be down at start-up: the API still serves health (503) and what needs no workflow,
        # and the connector connects on a later request once Temporal answers (no restart needed).
        # app.state.temporal mirrors the connected client (None until then) for code that only peeks.
        app.state.temporal = None
        app.state.temporal_connector = TemporalConnector(
            settings, on_connect=lambda client: setattr(app.state, "temporal", client)
        )
        await app.state.temporal_connector.get_or_none()
        app.state.read_ahead = ContextReadAhead(
            stores=app.state.stores, engine=queue_engine(app.state.stores), depth=settings.context_read_ahead
        )
        for queue in QUEUES:  # the first agents' customers are warm too
            app.state.read_ahead.after_take(queue)
        try:
            yield
        finally:
            await app.state.read_ahead.aclose()
            await app.state.telephony.aclose()
            await app.state.stores.close()

    app = FastAPI(
        title="RMC Dialler API",
        version="1.0",
        lifespan=lifespan,
        # The API's map is not published in production unless asked for (api_docs).
        openapi_url=f"{API_PREFIX}/openapi.json" if settings.api_docs_enabled else None,
        docs_url=f"{API_PREFIX}/docs" if settings.api_docs_enabled else None,
        redoc_url=f"{API_PREFIX}/redoc" if settings.api_docs_enabled else None,
    )
    errors.install(app)

    app.add_middleware(LogContextMiddleware)  # inside RequestIdMiddleware: the id is set when it runs
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(codec.CodecCors, origins=settings.codec_cors_origins)
    app.add_middleware(SecurityHeadersMiddleware, production=settings.is_production)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(ProxyHeadersMiddleware, trusted_proxies=settings.trusted_proxies)  # outermost: runs first

    app.include_router(health.router, prefix=API_PREFIX)
    app.include_router(auth.router, prefix=API_PREFIX)
    app.include_router(agents.router, prefix=API_PREFIX)
    app.include_router(presence.router, prefix=API_PREFIX)
    app.include_router(audit.router, prefix=API_PREFIX)
    app.include_router(queues.router, prefix=API_PREFIX)
    app.include_router(pacing.router, prefix=API_PREFIX)
    app.include_router(calls.router, prefix=API_PREFIX)
    app.include_router(voice.router, prefix=API_PREFIX)
    app.include_router(voice.webhooks, prefix=API_PREFIX)
    app.include_router(sms.router, prefix=API_PREFIX)
    app.include_router(sms.webhooks, prefix=API_PREFIX)
    app.include_router(portal.router, prefix=API_PREFIX)
    app.include_router(dashboard.router, prefix=API_PREFIX)
    app.include_router(ui_support.router, prefix=API_PREFIX)
    app.include_router(cdc.router, prefix=API_PREFIX)
    app.include_router(callbacks.router, prefix=API_PREFIX)
    app.include_router(reports.router, prefix=API_PREFIX)
    app.include_router(compliance.router, prefix=API_PREFIX)
    app.include_router(recordings.router, prefix=API_PREFIX)
    app.include_router(personal_data.router, prefix=API_PREFIX)
    app.include_router(cdc.scrape)
    app.include_router(codec.router)  # at /codec: the Temporal UI's codec endpoint is http://<api>/codec
    # Routers above this line; every route's required permission goes into its OpenAPI description.
    document_security(app)
    web.install(app, settings)  # the UI's pages and /static, after the API so that nothing shadows it
    return app
