"""Recordings end to end on the Twilio emulator: a recorded call's signed recording callback stores the
recording, supervisors play it through the API with Range (agents are refused), each play is audited,
and the retention workflow deletes it at Twilio only once its claims have been closed long enough."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker
from twilio.base.exceptions import TwilioRestException

from devstack.seed import seed_replica
from devstack.twilio_emulator.client import EmulatorClient
from dialler.config import Settings
from dialler.integrations.twilio import twilio_client
from dialler.recordings.messages import PurgeInput
from dialler.recordings.service import months_before
from dialler.runtime import Stores
from tests.support.live_api import eventually, login
from tests.support.recordings import recorded_call
from workflows.recording_retention import RecordingRetentionWorkflow

pytestmark = pytest.mark.e2e


@pytest.fixture
def settings(settings: Settings, twilio_emulator: EmulatorClient, emulator: EmulatorClient) -> Settings:
    """This test's settings with the product's Twilio client pointed at the emulator."""
    return settings.model_copy(update={"twilio_api_base_url": twilio_emulator.url})


async def test_a_recording_is_stored_played_with_range_by_supervisors_only_and_kept_until_its_claims_end(
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_url: str,
    replica_writer: AsyncEngine,
    temporal_client: Client,
    emulator: EmulatorClient,
) -> None:
    await seed_replica(replica_url, users=20, seed=5)
    user_id = 3
    async with replica_writer.begin() as conn:
        await conn.execute(
            text("UPDATE claims SET status = 'in_progress', deleted_at = NULL WHERE user_id = :u"), {"u": user_id}
        )
        claim_ids = sorted(
            (await conn.execute(text("SELECT id FROM claims WHERE user_id = :u"), {"u": user_id})).scalars()
        )
    session_id, call_sid = await recorded_call(stores, user_id)

    async def stored() -> dict | None:
        async with stores.postgres.connect() as conn:
            row = (await conn.execute(text("SELECT * FROM call_recordings"))).mappings().one_or_none()
        return dict(row) if row else None

    row = await eventually(stored, within=20)
    assert (row["call_sid"], row["call_session_id"], row["user_id"], row["status"]) == (
        call_sid,
        session_id,
        user_id,
        "completed",
    )
    assert sorted(row["claim_ids"]) == claim_ids and row["channels"] == 2 and row["duration_s"] >= 1
    sid = row["sid"]

    sam, cora = await login(http, "sam@rmc.example"), await login(http, "cora@rmc.example")
    priya = await login(http, "priya@rmc.example")
    by_customer = await http.get("/api/v1/recordings", params={"user_id": user_id}, headers=sam)
    by_session = await http.get("/api/v1/recordings", params={"session_id": str(session_id)}, headers=cora)
    assert [r["sid"] for r in by_customer.json()["items"]] == [sid] == [r["sid"] for r in by_session.json()["items"]]
    media = by_customer.json()["items"][0]["media_url"]
    assert media == f"/api/v1/recordings/{sid}/media" and "twilio" not in str(by_customer.json())
    assert (await http.get("/api/v1/recordings", params={"user_id": user_id}, headers=priya)).status_code == 403
    assert (await http.get(media, headers=priya)).status_code == 403

    whole = await http.get(media, headers=sam)
    assert whole.status_code == 200 and whole.content[:4] == b"RIFF" and whole.headers["accept-ranges"] == "bytes"
    middle = len(whole.content) // 2
    part = await http.get(media, headers={**sam, "Range": f"bytes={middle}-"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes {middle}-{len(whole.content) - 1}/{len(whole.content)}"
    assert part.content == whole.content[middle:]
    # The browser's <audio> cannot send the token: a short-lived link signed for this recording and person.
    assert (await http.post(f"/api/v1/recordings/{sid}/play-link", headers=priya)).status_code == 403
    link = (await http.post(f"/api/v1/recordings/{sid}/play-link", headers=cora)).json()["url"]
    seek = await http.get(link, headers={"Range": f"bytes={middle}-"})
    assert seek.status_code == 206 and seek.content == whole.content[middle:]
    forged = link[:-1] + ("0" if link[-1] != "0" else "1")
    assert (await http.get(forged)).status_code == 403
    assert (await http.get(link.replace(f"/{sid}/", f"/RE{'0' * 32}/"))).status_code == 403
    async with stores.postgres.connect() as conn:
        plays = (
            await conn.execute(
                text("SELECT subject_id, details->>'via' AS via FROM audit_log WHERE action = 'recording.played'")
            )
        ).all()
    assert [(p.subject_id, p.via) for p in plays] == [(sid, "api"), (sid, "player")]  # plays, not each seek

    # Retention: never below 12 months; nothing goes while a claim is open or ended less than the period ago.
    with pytest.raises(ValidationError):
        Settings(_env_file=None, recording_retention_months=11)  # type: ignore[call-arg]

    async def purge() -> int:
        return await temporal_client.execute_workflow(
            RecordingRetentionWorkflow.run,
            PurgeInput(),
            id=f"retention-{uuid.uuid4().hex[:8]}",
            task_queue=stores.settings.temporal_task_queue,
        )

    async def close_claims(months_ago: int, *, all_of_them: bool = True) -> None:
        ended = months_before(datetime.now(UTC), months_ago) - timedelta(days=1)
        async with replica_writer.begin() as conn:
            await conn.execute(
                text("UPDATE claims SET status = 'withdrawn', updated_at = :at WHERE user_id = :u"),
                {"at": ended.replace(tzinfo=None), "u": user_id},
            )
            if not all_of_them:
                await conn.execute(text("UPDATE claims SET status = 'in_progress' WHERE id = :c"), {"c": claim_ids[0]})

    assert await purge() == 0  # claims open
    await close_claims(13, all_of_them=False)
    assert await purge() == 0  # one claim still open
    await close_claims(11)
    assert await purge() == 0  # closed, but not 12 months ago
    assert (await http.get(media, headers=sam)).status_code == 200
    await close_claims(13)
    assert await purge() == 1
    with pytest.raises(TwilioRestException):  # gone at Twilio
        await asyncio.to_thread(lambda: twilio_client(stores.settings).recordings(sid).fetch())
    assert (await stored())["deleted_at"] is not None  # type: ignore[index]
    assert (await http.get(media, headers=sam)).status_code == 410
    assert await purge() == 0
