"""Temporal's codec server: the Temporal UI (and ``temporal --codec-endpoint``) sends the payloads it
shows here to be decoded, so that a supervisor sees a call's notes while the history itself, and
anyone without the permission, holds only ciphertext (dialler.security.codec).

The protocol (docs.temporal.io, "Codec Server"): ``POST {endpoint}/decode`` and ``/encode`` with
``{"payloads": [{"metadata": {k: base64}, "data": base64}]}`` (proto3 JSON of Payloads), the
namespace in ``X-Namespace``, and — with the UI's "pass access token" — ``Authorization: Bearer``.
The token is the dialler's own access token: only roles holding ``payloads:decode`` (supervisors,
admins) get plaintext, each decode request leaves one audit row (counts and key ids, never
contents), an agent gets 403. The browser calls from the UI's origin: ``CodecCors`` below answers
its preflight for ``/codec/*`` only, and only for ``codec_cors_origins``.

A Temporal UI without single sign-on (the dev server's) has no token to pass. For it, the dialler's
supervisor screen posts its access token to ``POST /codec/session``, which sets it as an HttpOnly,
SameSite=Strict cookie scoped to ``/codec`` (expiring with the token); with the UI's Data Encoder
setting "Include cross-origin credentials" on, the UI's requests carry it and ``CodecCors`` turns it
into the Authorization header, so the same checks apply (a revoked sign-in stops at once).
"""

from __future__ import annotations

from typing import Annotated, Any

from cryptography.exceptions import InvalidTag
from fastapi import APIRouter, Depends, Header, Request, Response
from google.protobuf import json_format
from pydantic import BaseModel, Field
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payloads

from api.auth import PROTECTED_RESPONSES, audit_context, require
from api.deps import SessionDep, StoresDep
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission
from dialler.audit.service import AuditAction, record_ctx
from dialler.errors import Invalid
from dialler.security.codec import KEY_ID, codec
from dialler.security.keys import UnknownKey

PREFIX = "/codec"
SESSION_COOKIE = "dialler_codec"
SESSION_PATH = PREFIX + "/session"
router = APIRouter(prefix=PREFIX, tags=["codec"], responses=PROTECTED_RESPONSES)


class PayloadJson(BaseModel):
    metadata: dict[str, str] = Field(default_factory=dict, description="values base64")
    data: str = Field(default="", description="base64")


class PayloadsJson(BaseModel):
    payloads: list[PayloadJson] = Field(default_factory=list)


def _parse(body: PayloadsJson) -> Payloads:
    try:
        return json_format.ParseDict(body.model_dump(), Payloads())
    except json_format.ParseError:
        raise Invalid("payloads must be Temporal's JSON: metadata values and data in base64") from None


def _dump(payloads: Payloads) -> dict[str, Any]:
    found = json_format.MessageToDict(payloads)
    return {
        "payloads": [{"metadata": p.get("metadata", {}), "data": p.get("data", "")} for p in found.get("payloads", [])]
    }


@router.post("/decode", response_model=PayloadsJson)
async def decode(
    body: PayloadsJson,
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    agent: Annotated[Agent, Depends(require(Permission.PAYLOADS_DECODE))],
    x_namespace: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Decode payloads for the Temporal UI (codec server protocol). One audit row per request."""
    incoming = _parse(body)
    key_ids = sorted({p.metadata[KEY_ID].decode() for p in incoming.payloads if KEY_ID in p.metadata})
    await record_ctx(
        audit_context(request, agent),
        session=session,
        action=AuditAction.PAYLOADS_DECODED,
        subject_type="temporal_namespace",
        subject_id=x_namespace or stores.settings.temporal_namespace,
        details={"payloads": len(incoming.payloads), "key_ids": key_ids},
    )
    await session.commit()  # audited before anything is revealed
    try:
        decoded = await codec(stores.settings).decode(incoming.payloads)
    except UnknownKey as exc:
        raise Invalid(str(exc)) from None
    except InvalidTag:
        raise Invalid("a payload does not decrypt with its key: tampered or not ours") from None
    return _dump(Payloads(payloads=decoded))


@router.post("/encode", response_model=PayloadsJson)
async def encode(
    body: PayloadsJson,
    stores: StoresDep,
    _: Annotated[Agent, Depends(require(Permission.PAYLOADS_DECODE))],
) -> dict[str, Any]:
    """Encode payloads (the UI's signal/update input, ``temporal`` CLI arguments) with the current key."""
    encoded = await codec(stores.settings).encode(_parse(body).payloads)
    return _dump(Payloads(payloads=encoded))


@router.post("/session", status_code=204, response_class=Response)
async def open_session(
    request: Request,
    stores: StoresDep,
    _: Annotated[Agent, Depends(require(Permission.PAYLOADS_DECODE))],
) -> Response:
    """Hand this browser's access token to the Temporal UI's codec requests (an HttpOnly cookie for
    ``/codec`` only, expiring with the token)."""
    token = request.headers["authorization"].split(" ", 1)[1]
    response = Response(status_code=204)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=stores.settings.access_token_ttl_s,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=stores.settings.public_base_url.startswith("https://"),
    )
    return response


class CodecCors:
    """CORS for the codec routes only: the Temporal UI's origin may call ``/codec/*`` with credentials
    (its Authorization and X-Namespace headers); the rest of the API stays same-origin."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Namespace"],
            allow_credentials=True,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX + "/"):
            await self.cors(_cookie_as_bearer(scope), receive, send)
        else:
            await self.app(scope, receive, send)


def _cookie_as_bearer(scope: Scope) -> Scope:
    """The codec session cookie as ``Authorization: Bearer`` when the request has no such header."""
    headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
    if scope["path"] == SESSION_PATH or any(k == b"authorization" for k, _ in headers):
        return scope
    for key, value in headers:
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                name, _, token = part.strip().partition("=")
                if name == SESSION_COOKIE and token:
                    return {**scope, "headers": [*headers, (b"authorization", f"Bearer {token}".encode())]}
    return scope
