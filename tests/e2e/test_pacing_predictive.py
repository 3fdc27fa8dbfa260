"""Predictive pacing on the real stack: the real API serving Twilio's webhooks, the real worker on the
Temporal dev server, the product's ``twilio`` SDK against the Twilio emulator, three agents whose phones
the emulator plays, and a supervisor who starts the unsigned queue's pacer in predictive mode.

1. The pacer places more calls than there are ready agents (pooled calls, no agent held while they
   ring); the customers who answer are each put through to a ready agent claimed at the answer, a
   person on the line within 2 s of the answer (the emulator's timeline per call).
2. The emulator makes the agents slow to accept (3 s): answered calls are abandoned on the one
   abandoned-call path (the information message, nobody connected; the attempt recorded abandoned,
   which the 72 h cool-off reads); the 24 h rate climbs, and the governor first tapers the queue to
   progressive, then pauses it at the ceiling — seen in the workflow's query, its ``PacingMode``
   search attribute and the API.

The 24 h history is seeded so that the taper band is several calls wide: 1,000 calls put through and
20 abandoned (1.96 % of a 3 % ceiling: predictive; 75 % of the ceiling is 2.25 %).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import bindparam, text
from temporalio.client import Client
from temporalio.worker import Worker

from devstack.seed import seed_replica
from devstack.twilio_emulator.client import EmulatorClient
from dialler import clock, search_attributes
from dialler.config import Settings, TelephonyMode
from dialler.integrations.twilio import TwilioTelephony
from dialler.integrations.twilio_voice import agent_identity
from dialler.pacing.messages import pacing_workflow_id
from dialler.queues.phones import normalise_phone
from dialler.queues.rebuild import recompute
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.browser import agent_id
from tests.support.call_sessions import customer_legs, start_available
from tests.support.live_api import eventually
from tests.support.pacing import run_pacer, seed_calls
from workflows import pacing_client

pytestmark = pytest.mark.e2e

AGENTS = ("priya@rmc.example", "tom@rmc.example", "dan@rmc.example")  # all three work unsigned
ANSWERING = 2  # phase 1: this many of the queue's first customers answer, fewer than the agents


@pytest.fixture
def settings(settings: Settings, emulator: EmulatorClient) -> Settings:
    return settings.model_copy(
        update={
            "telephony_mode": TelephonyMode.TWILIO,
            "twilio_api_base_url": emulator.url,
            "pacing_tick_s": 0.5,
            "pacing_margin_start": 0.5,  # with three agents, a margin of 3 sd would place no extra call
        }
    )


@pytest_asyncio.fixture
async def telephony(stores: Stores) -> AsyncIterator[TwilioTelephony]:  # type: ignore[override]
    twilio = TwilioTelephony(stores.settings)
    yield twilio
    await twilio.aclose()


async def heartbeat(http: httpx.AsyncClient, agents: list[dict[str, str]], stop: asyncio.Event) -> None:
    """The agents' pages: each phone reports itself ready every few seconds while the test runs."""
    while not stop.is_set():
        for headers in agents:
            await http.post("/api/v1/voice/device-ready", headers=headers)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 3)


async def test_predictive_bridges_within_2_s_then_the_governor_tapers_and_pauses(
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_url: str,
    emulator: EmulatorClient,
    temporal_client: Client,
) -> None:
    await seed_replica(replica_url, users=150, seed=23)
    engine = queue_engine(stores)
    await recompute(stores, engine, list(range(1, 151)))
    assert (await engine.depths())["unsigned"] >= 40
    await seed_calls(stores, queue="unsigned", at=clock.instant() - timedelta(hours=2), live=1000, abandoned=20)

    # Phase 1: nobody answers but the first two customers of the queue; the agents pick up at once.
    emulator.script("*", behaviour="no-answer", answer_after_s=6.0)
    head = [u for u, _ in await engine.page("unsigned", offset=0, limit=ANSWERING)]
    async with stores.replica.connect() as conn:
        phones = {
            int(r.id): normalise_phone(r.phone_number).e164
            for r in await conn.execute(
                text("SELECT id, phone_number FROM users WHERE id IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"ids": head},
            )
        }
    for phone in phones.values():
        emulator.script(phone, behaviour="answer", answer_after_s=1.0, hangup_after_s=4.0)
    agents = [await start_available(http, email) for email in AGENTS]
    ids = [await agent_id(stores, email) for email in AGENTS]
    for a in ids:
        emulator.device(agent_identity(a), action="accept", accept_after_s=0.3)
    stop = asyncio.Event()
    beating = asyncio.create_task(heartbeat(http, agents, stop))
    try:
        await run_pacer(str(http.base_url), "unsigned", mode="predictive", ceiling=0.03, max_ratio=3)
        handle = temporal_client.get_workflow_handle(pacing_workflow_id("unsigned"))

        # More calls ringing than agents ready, and no agent held by them.
        async def over_dialled() -> list[dict[str, Any]] | None:
            calls = await customer_legs(emulator)
            return calls if len(calls) > len(AGENTS) else None

        placed = await eventually(over_dialled, within=20)
        status = await pacing_client.pacing_status(temporal_client, "unsigned")
        assert status is not None and status.decision is not None
        assert status.decision.requested == "predictive"

        # Both answering customers are rung (the first snapshot may have caught only one of them); each
        # heard a person within 2 s of the answer, and nothing before.
        async def answering_rung() -> list[str] | None:
            legs = [c for c in await customer_legs(emulator) if c["to"] in phones.values()]
            return [c["sid"] for c in legs] if {c["to"] for c in legs} == set(phones.values()) else None

        answered = await eventually(answering_rung, within=30)
        for sid in answered:
            heard = await asyncio.to_thread(emulator.wait_for, sid, "person_connected", 20.0)
            seconds = heard.seconds_to_person_or_speech()
            assert seconds is not None and seconds <= 2.0, heard.events
            assert heard.speech_before_person() == [], heard.events

        # The agents record the outcomes of the calls put through to them.
        async def wrapped_up(headers: dict[str, str]) -> dict[str, Any] | None:
            got = await http.get("/api/v1/calls/current", headers=headers)
            return got.json() if got.status_code == 200 and got.json()["state"] == "wrap_up" else None

        taken = 0
        for headers in agents:
            current = await http.get("/api/v1/calls/current", headers=headers)
            if current.status_code != 200:
                continue
            call = await eventually(lambda h=headers: wrapped_up(h), within=20)
            saved = await http.post(
                f"/api/v1/calls/{call['session_id']}/outcome", json={"disposition": "docs_promised"}, headers=headers
            )
            assert saved.status_code == 200, saved.text
            taken += 1
        assert taken == len(answered) >= 1
        if target := os.environ.get("RECORD_HISTORY_TO"):  # histories/call-session-new-pooled-answered.json
            [user_id, *_] = [u for u, phone in phones.items() if any(c["to"] == phone for c in placed)]
            session = temporal_client.get_workflow_handle(f"call-{user_id}")
            await asyncio.wait_for(session.result(), 30)
            recorded = (await session.fetch_history()).to_json()
            await asyncio.to_thread(Path(target).write_text, recorded)

        # Phase 2: every customer answers, and the agents are slow to pick up (past the 2 s).
        for a in ids:
            emulator.device(agent_identity(a), action="accept", accept_after_s=3.0)
        emulator.script("*", behaviour="answer", answer_after_s=0.5, hangup_after_s=30.0)
        for phone in phones.values():
            emulator.script(phone, behaviour="answer", answer_after_s=0.5, hangup_after_s=30.0)

        seen: list[tuple[str, bool, str]] = []

        async def paused() -> bool:
            found = await pacing_client.pacing_status(temporal_client, "unsigned")
            if found is None or found.decision is None:
                return False
            d = found.decision
            if not seen or seen[-1][:2] != (d.governed, d.paused):
                seen.append((d.governed, d.paused, d.reason))
            return d.paused

        await eventually(paused, within=120, every=0.2)
        modes = [(governed, is_paused) for governed, is_paused, _ in seen]
        assert ("progressive", False) in modes, seen  # tapered before pausing
        assert modes.index(("progressive", False)) < modes.index(modes[-1])
        tapered = next(reason for governed, p, reason in seen if governed == "progressive" and not p)
        assert tapered.startswith("tapered to progressive: abandoned ") and "near the ceiling 3.00%" in tapered
        assert seen[-1][2].startswith("paused: abandoned ") and seen[-1][2].endswith("reached the ceiling 3.00%")

        described = await handle.describe()
        assert described.typed_search_attributes.get(search_attributes.PACING_MODE) == "paused"

        # Every abandoned call: the information message, no person, and the attempt recorded abandoned.
        async with stores.postgres.connect() as conn:
            dropped = (
                await conn.execute(
                    text(
                        "SELECT s.twilio_call_sid FROM contact_attempts a JOIN call_sessions s"
                        " ON s.id = a.call_session_id WHERE a.abandoned AND s.twilio_call_sid IS NOT NULL"
                    )
                )
            ).all()
        assert len(dropped) >= 3
        for row in dropped:
            heard = await asyncio.to_thread(emulator.wait_ended, row.twilio_call_sid, 30.0)
            assert "person_connected" not in heard.kinds(), heard.events
            assert any("none of our advisers is free" in said for said in heard.said()), heard.events

        # Paused: no call is placed any more, however long it stays so.
        before = len(await customer_legs(emulator))
        await asyncio.sleep(3)
        assert len(await customer_legs(emulator)) == before
    finally:
        stop.set()
        await beating
