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
"""

from __future__ import annotations

from typing import Annotated, Any

from cryptography.exceptions import InvalidTag
from fastapi import APIRouter, Depends, Header, Request
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
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
