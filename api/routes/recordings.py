"""Call recordings for supervisors and compliance: listed per customer or session, and played through
the API, streamed from Twilio with the account's credentials (the browser never sees a Twilio URL).
``Range`` is passed through so that a player can seek. Each play is audited."""

from __future__ import annotations

import uuid
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from api.auth import PROTECTED_RESPONSES, audit_context, require
from api.deps import MAX_ID, SessionDep, StoresDep
from api.errors import Unprocessable
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission
from dialler.audit.service import record_ctx
from dialler.errors import DependencyUnavailable, Gone, NotFound
from dialler.integrations.twilio import recording_credentials, recording_media_url
from dialler.recordings import service
from dialler.recordings.models import CallRecording
from dialler.recordings.schemas import RecordingList, RecordingRead

router = APIRouter(prefix="/recordings", tags=["recordings"], responses=PROTECTED_RESPONSES)
Listener = Annotated[Agent, Depends(require(Permission.RECORDINGS_READ))]
RecordingSid = Annotated[str, Path(pattern=r"^RE[0-9a-fA-F]{32}$")]
_PASSED_BACK = ("content-type", "content-length", "content-range", "accept-ranges")


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


@router.get(
    "/{sid}/media",
    response_class=StreamingResponse,
    responses={
        200: {"description": "The recording (WAV)", "content": {"audio/x-wav": {"schema": {"type": "string"}}}},
        206: {"description": "The range asked for", "content": {"audio/x-wav": {"schema": {"type": "string"}}}},
    },
)
async def play_recording(
    sid: RecordingSid, request: Request, agent: Listener, session: SessionDep, stores: StoresDep
) -> StreamingResponse:
    """The recording's audio, streamed from Twilio; send `Range` to seek. A play (a request from the
    start) is audited; the ranges a player asks for while seeking within it are not new plays."""
    recording = await session.get(CallRecording, sid)
    if recording is None:
        raise NotFound("No such recording.")
    if recording.deleted_at is not None:
        raise Gone("This recording was deleted after its retention period.")
    wanted = request.headers.get("range")
    settings = stores.settings
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
    if not wanted or wanted.replace(" ", "").startswith("bytes=0-"):
        await record_ctx(
            audit_context(request, agent),
            session=session,
            action="recording.played",
            subject_type="recording",
            subject_id=sid,
            details={"user_id": recording.user_id, "call_session_id": str(recording.call_session_id)},
        )
        await session.commit()

    async def close() -> None:
        await upstream.aclose()
        await client.aclose()

    headers = {k: v for k, v in upstream.headers.items() if k.lower() in _PASSED_BACK}
    headers.setdefault("accept-ranges", "bytes")
    headers["cache-control"] = "private, no-store"
    return StreamingResponse(
        upstream.aiter_raw(), status_code=upstream.status_code, headers=headers, background=BackgroundTask(close)
    )
