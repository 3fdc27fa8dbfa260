"""Call recordings for supervisors and compliance: listed per customer or session, and played through
the API, streamed from Twilio with the account's credentials (the browser never sees a Twilio URL).
``Range`` is passed through so that a player can seek. Each play is audited.

A browser's ``<audio>`` cannot send the bearer token, so the screen asks for a play link: a URL on this
API signed for this recording and this person, valid for :data:`LINK_TTL` (the play is audited when the
link is issued). The player then fetches ranges from it as it seeks."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from api.auth import PROTECTED_RESPONSES, audit_context, require
from api.deps import MAX_ID, SessionDep, SettingsDep, StoresDep
from api.errors import Forbidden, Unprocessable
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission
from dialler.audit.service import record_ctx
from dialler.config import Settings
from dialler.errors import DependencyUnavailable, Gone, NotFound
from dialler.integrations.twilio import recording_credentials, recording_media_url
from dialler.recordings import service
from dialler.recordings.models import CallRecording
from dialler.recordings.schemas import PlayLink, RecordingList, RecordingRead

router = APIRouter(prefix="/recordings", tags=["recordings"], responses=PROTECTED_RESPONSES)
Listener = Annotated[Agent, Depends(require(Permission.RECORDINGS_READ))]
RecordingSid = Annotated[str, Path(pattern=r"^RE[0-9a-fA-F]{32}$")]
_PASSED_BACK = ("content-type", "content-length", "content-range", "accept-ranges")
LINK_TTL_S = 300  # long enough to listen and seek through a call's start; a new link for more


def _read(r: CallRecording) -> RecordingRead:
    media = None if r.deleted_at is not None else f"/api/v1/recordings/{r.sid}/media"
    return RecordingRead.model_validate(
        {**{c: getattr(r, c) for c in RecordingRead.model_fields if c != "media_url"}, "media_url": media}
    )


@router.get("", response_model=RecordingList)
async def list_recordings(
    _: Listener,
    session: SessionDep,
    user_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    session_id: uuid.UUID | None = None,
) -> RecordingList:
    """A customer's or a session's recordings, newest first (one of the two is required)."""
    if user_id is None and session_id is None:
        raise Unprocessable("Give a customer (user_id) or a session (session_id).")
    found = await service.list_recordings(session, user_id=user_id, call_session_id=session_id)
    return RecordingList(items=[_read(r) for r in found])


_AUDIO = {
    200: {"description": "The recording (WAV)", "content": {"audio/x-wav": {"schema": {"type": "string"}}}},
    206: {"description": "The range asked for", "content": {"audio/x-wav": {"schema": {"type": "string"}}}},
}


@router.get("/{sid}/media", response_class=StreamingResponse, responses=_AUDIO)
async def play_recording(
    sid: RecordingSid, request: Request, agent: Listener, session: SessionDep, stores: StoresDep
) -> StreamingResponse:
    """The recording's audio, streamed from Twilio; send `Range` to seek. A play (a request from the
    start) is audited; the ranges a player asks for while seeking within it are not new plays."""
    recording = await _playable(session, sid)
    wanted = request.headers.get("range")
    response = await _stream(stores.settings, sid, wanted)
    if not wanted or wanted.replace(" ", "").startswith("bytes=0-"):
        await _audit_play(request, agent, session, recording, via="api")
    return response


@router.post("/{sid}/play-link", response_model=PlayLink)
async def play_link(
    sid: RecordingSid, request: Request, agent: Listener, session: SessionDep, settings: SettingsDep
) -> PlayLink:
    """A short-lived URL for the browser's `<audio>` player (which cannot send the bearer token),
    signed for this recording and this person. Issuing it is the audited play."""
    recording = await _playable(session, sid)
    expires = int(time.time()) + LINK_TTL_S
    signature = _sign(settings, sid, agent.id, expires)
    await _audit_play(request, agent, session, recording, via="player")
    return PlayLink(
        url=f"/api/v1/recordings/{sid}/stream?agent={agent.id}&expires={expires}&signature={signature}",
        expires_in_s=LINK_TTL_S,
    )


@router.get("/{sid}/stream", response_class=StreamingResponse, responses=_AUDIO, include_in_schema=True)
async def stream_by_link(
    sid: RecordingSid,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    agent: Annotated[int, Query(ge=1, le=MAX_ID)],
    expires: Annotated[int, Query(ge=0)],
    signature: Annotated[str, Query(max_length=64)],
) -> StreamingResponse:
    """The audio behind a play link (no bearer token: the link's signature and expiry are the
    authorisation). `Range` is passed through so that the player can seek."""
    # Bytes: a str with a non-ASCII character would make compare_digest raise (a 500) instead of refusing.
    if expires < time.time() or not hmac.compare_digest(
        signature.encode(), _sign(settings, sid, agent, expires).encode()
    ):
        raise Forbidden("This play link is not valid or has expired.")
    await _playable(session, sid)
    return await _stream(settings, sid, request.headers.get("range"))


def _sign(settings: Settings, sid: str, agent_id: int, expires: int) -> str:
    key = hashlib.sha256(b"recording-play-link:" + settings.jwt_secret.get_secret_value().encode()).digest()
    return hmac.new(key, f"{sid}:{agent_id}:{expires}".encode(), hashlib.sha256).hexdigest()


async def _playable(session: SessionDep, sid: str) -> CallRecording:
    recording = await session.get(CallRecording, sid)
    if recording is None:
        raise NotFound("No such recording.")
    if recording.deleted_at is not None:
        raise Gone("This recording was deleted after its retention period.")
    return recording


async def _audit_play(
    request: Request, agent: Agent, session: SessionDep, recording: CallRecording, *, via: str
) -> None:
    await record_ctx(
        audit_context(request, agent),
        session=session,
        action="recording.played",
        subject_type="recording",
        subject_id=recording.sid,
        details={"user_id": recording.user_id, "call_session_id": str(recording.call_session_id), "via": via},
    )
    await session.commit()


async def _stream(settings: Settings, sid: str, wanted: str | None) -> StreamingResponse:
    """The recording from Twilio, with the account's credentials, the range passed through."""
    client = httpx.AsyncClient(auth=recording_credentials(settings), timeout=httpx.Timeout(15, read=60))
    upstream_request = client.build_request(
        "GET", recording_media_url(settings, sid), headers={"Range": wanted} if wanted else {}
    )
    try:
        upstream = await client.send(upstream_request, stream=True)
    except httpx.HTTPError as exc:
        await client.aclose()
        raise DependencyUnavailable("Twilio could not be reached for the recording.") from exc
    if upstream.status_code not in (200, 206):
        status = upstream.status_code
        await upstream.aclose()
        await client.aclose()
        if status == 404:
            raise NotFound("Twilio no longer has this recording.")
        raise DependencyUnavailable(f"Twilio answered {status} for the recording.")

    async def close() -> None:
        await upstream.aclose()
        await client.aclose()

    headers = {k: v for k, v in upstream.headers.items() if k.lower() in _PASSED_BACK}
    headers.setdefault("accept-ranges", "bytes")
    headers["cache-control"] = "private, no-store"
    return StreamingResponse(
        upstream.aiter_raw(), status_code=upstream.status_code, headers=headers, background=BackgroundTask(close)
    )
