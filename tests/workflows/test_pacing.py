"""PacingWorkflow's decisions, with its two activities replaced by same-named stubs: the floor each
tick is scripted, and what the workflow asked to place is recorded (the activities themselves run end
to end in tests/e2e/test_pacing_predictive.py). Predictive places pooled calls beyond the ready
agents, as ``plan_calls`` says; near the ceiling the governor tapers to progressive (one call reserved
per ready agent); at it the queue pauses and nothing is placed; the decision is the ``status`` query
and the ``PacingMode`` search attribute; stop ends it; it continues as new carrying its margin; and its
history replays."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from dialler.config import Settings
from dialler.pacing.messages import (
    PacingInput,
    PacingSnapshot,
    PacingStatus,
    PlaceCallsInput,
    PlaceCallsResult,
    SnapshotInput,
    pacing_workflow_id,
)
from dialler.pacing.predictive import Estimates, Floor, PacingMode, plan_calls
from dialler.security.codec import data_converter
from tests.support.live_api import eventually
from tests.support.stubbed_worker import stubbed_worker
from workflows import pacing_client
from workflows.pacing import PacingWorkflow

HISTORIES = Path(__file__).parent / "histories"
ESTIMATES = Estimates(answer_probability=0.25, ring_s=10.0, talk_s=240.0, wrap_s=25.0)


def floor_at(*, mode: str = "predictive", ready: tuple[int, ...] = (11, 12, 13), rate: float | None = 0.0,
             abandoned: int = 0, ceiling: float = 0.01, in_flight: int = 0) -> PacingSnapshot:  # fmt: skip
    return PacingSnapshot(
        queue="unsigned",
        at=datetime.now(UTC),
        mode=mode,
        max_ratio=3.0,
        ceiling=ceiling,
        rate=rate,
        abandoned=abandoned,
        live_answered=100,
        ready_agents=ready,
        in_flight=in_flight,
        ringing_for_s=(2.0,) * in_flight,
        estimates=ESTIMATES,
    )


@dataclass
class Floors:
    """The floors the snapshot stub returns in turn (the last one from then on), and what was placed."""

    floors: list[PacingSnapshot]
    failing: int = 0  # this many reads fail first (a store down), without retry
    taken: int = 0
    placed: list[PlaceCallsInput] = field(default_factory=list)

    def next(self) -> PacingSnapshot:
        found = self.floors[min(self.taken, len(self.floors) - 1)]
        self.taken += 1
        return found


def stubs(script: Floors) -> list[Any]:
    @activity.defn(name="pacing_snapshot")
    async def pacing_snapshot(input: SnapshotInput) -> PacingSnapshot:
        if script.failing > 0:
            script.failing -= 1
            raise ApplicationError("PostgreSQL is not answering", non_retryable=True)
        return script.next()

    @activity.defn(name="place_paced_calls")
    async def place_paced_calls(input: PlaceCallsInput) -> PlaceCallsResult:
        script.placed.append(input)
        return PlaceCallsResult(placed_for=input.agent_ids, pooled=input.pooled)

    return [pacing_snapshot, place_paced_calls]


@pytest.fixture
def script() -> Floors:
    return Floors([floor_at()])


@pytest_asyncio.fixture
async def task_queue(temporal_client: Client, script: Floors) -> AsyncIterator[str]:
    async with stubbed_worker(temporal_client, PacingWorkflow, stubs(script), name="pacing") as queue:
        yield queue


async def start(client: Client, task_queue: str, **fields: Any) -> WorkflowHandle:
    values: dict[str, Any] = {"queue": "unsigned", "tick_s": 0.2, "activity_timeout_s": 5, "margin": 1.0, **fields}
    return await client.start_workflow(
        PacingWorkflow.run,
        PacingInput(**values),
        id=f"{pacing_workflow_id('unsigned')}-{uuid.uuid4().hex[:6]}",
        task_queue=task_queue,
    )


async def modes_shown(handle: WorkflowHandle) -> list[str]:
    """The PacingMode values the workflow upserted, in order (one per change)."""
    found: list[str] = []
    async for event in handle.fetch_history_events():
        if event.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            if "PacingMode" in fields:
                found.append(json.loads(fields["PacingMode"].data))
    return found


async def test_predictive_places_pooled_calls_beyond_the_ready_agents(
    temporal_client: Client, task_queue: str, script: Floors
) -> None:
    script.floors = [floor_at()]
    handle = await start(temporal_client, task_queue)
    await eventually(lambda: _placed(script, 1), within=15)
    status = await handle.query(PacingWorkflow.status)
    decision = status.decision
    assert decision is not None
    expected = plan_calls(
        mode=PacingMode.PREDICTIVE, floor=Floor(ready=3, in_flight=0), estimates=ESTIMATES, margin=1.0, max_ratio=3.0
    )
    assert (decision.requested, decision.governed, decision.paused) == ("predictive", "predictive", False)
    assert decision.pooled == expected.calls > 3  # more calls than ready agents, as the pure function says
    assert decision.reserved_for == ()
    assert decision.ratio == round(expected.ratio, 3) and decision.margin == 1.0
    assert decision.reason == "predictive: abandoned 0.00% in 24 h, ceiling 1.00%"
    first = script.placed[0]
    assert (first.queue, first.pooled, first.agent_ids) == ("unsigned", expected.calls, ())
    assert first.key.startswith(f"{handle.id}:")
    await handle.signal(PacingWorkflow.stop)
    result = await handle.result()
    assert result.running is False
    assert await modes_shown(handle) == ["predictive", "stopped"]


async def test_the_governor_tapers_near_the_ceiling_then_pauses_at_it(
    temporal_client: Client, task_queue: str, script: Floors
) -> None:
    script.floors = [
        floor_at(rate=0.004, abandoned=1),  # 0.4 % of a 1 % ceiling: predictive
        floor_at(rate=0.008, abandoned=2),  # 0.8 % ≥ 75 % of the ceiling: tapered to progressive
        floor_at(rate=0.011, abandoned=3),  # at the ceiling: paused
    ]
    handle = await start(temporal_client, task_queue)

    async def paused() -> bool:
        status = await handle.query(PacingWorkflow.status)
        return bool(status.decision and status.decision.paused and script.taken >= 4)

    await eventually(paused, within=20)
    status = await handle.query(PacingWorkflow.status)
    assert status.decision is not None
    assert status.decision.reason == "paused: abandoned 1.10% in 24 h reached the ceiling 1.00%"
    assert status.decision.calls == 0 and status.ticks >= 4
    # Ticks 1 and 2 placed calls; none at the ceiling, however long it stays there.
    assert [(p.pooled > 3, p.agent_ids) for p in script.placed] == [(True, ()), (False, (11, 12, 13))]
    assert script.placed[1].pooled == 0  # progressive: one reserved call per ready agent, nothing pooled
    assert await modes_shown(handle) == ["predictive", "progressive", "paused"]
    described = await handle.describe()
    assert described.typed_search_attributes is not None
    await handle.signal(PacingWorkflow.stop)
    await handle.result()
    if target := os.environ.get("RECORD_HISTORY_TO"):  # how histories/pacing-governor.json was made
        recorded = (await handle.fetch_history()).to_json()
        await asyncio.to_thread(Path(target).write_text, recorded)


async def test_progressive_covers_only_the_agents_no_call_is_ringing_for(
    temporal_client: Client, task_queue: str, script: Floors
) -> None:
    script.floors = [floor_at(mode="progressive", ready=(11, 12, 13), in_flight=1)]
    handle = await start(temporal_client, task_queue)
    await eventually(lambda: _placed(script, 1), within=15)
    await handle.signal(PacingWorkflow.stop)
    await handle.result()
    assert script.placed[0].agent_ids == (11, 12)  # a pooled call still ringing may take the third
    assert await modes_shown(handle) == ["progressive", "stopped"]


async def test_preview_places_nothing(temporal_client: Client, task_queue: str, script: Floors) -> None:
    script.floors = [floor_at(mode="preview")]
    handle = await start(temporal_client, task_queue)
    await eventually(lambda: _taken(script, 3), within=15)
    status = await handle.query(PacingWorkflow.status)
    assert status.decision is not None and status.decision.reason == "preview: agents dial"
    await handle.signal(PacingWorkflow.stop)
    await handle.result()
    assert script.placed == []


async def test_it_continues_as_new_carrying_its_margin(
    temporal_client: Client, task_queue: str, script: Floors
) -> None:
    # A last hour with 60 answers and 3 abandoned (5 %, far over half the 1 % ceiling): the margin rises.
    hot = PacingSnapshot(**{**floor_at().__dict__, "recent_rate": 0.05, "recent_answered": 60})
    script.floors = [hot]
    handle = await start(temporal_client, task_queue, ticks_per_run=2, margin_every_s=0)
    first_run = (await handle.describe()).run_id

    async def continued() -> bool:
        return (await handle.describe()).run_id != first_run

    await eventually(continued, within=20)
    later = temporal_client.get_workflow_handle(handle.id)

    async def decided() -> PacingStatus | None:  # the new run's first tick may not have come yet
        status: PacingStatus = await later.query(PacingWorkflow.status)
        return status if status.decision is not None else None

    status = await eventually(decided, within=20)
    assert status.decision is not None and status.decision.margin > 1.0
    await later.signal(PacingWorkflow.stop)
    await later.result()


async def test_the_margin_loosens_when_the_last_hour_abandoned_under_the_target(
    temporal_client: Client, task_queue: str, script: Floors
) -> None:
    """0.4 % in the last hour against a target of 0.5 % (half the 1 % ceiling): under it, so the margin
    loosens (before MARGIN_LOOSENS_UNDER_TARGET_PATCH it held until the rate fell under 0.25 %)."""
    script.floors = [PacingSnapshot(**{**floor_at().__dict__, "recent_rate": 0.004, "recent_answered": 500})]
    handle = await start(temporal_client, task_queue, margin=2.0, margin_every_s=0)

    async def loosened() -> PacingStatus | None:
        status: PacingStatus = await handle.query(PacingWorkflow.status)
        return status if status.decision is not None and status.decision.margin < 2.0 else None

    await eventually(loosened, within=20)
    await handle.signal(PacingWorkflow.stop)
    await handle.result()
    markers = [
        event.marker_recorded_event_attributes.details["patch_data"]
        async for event in handle.fetch_history_events()
        if event.HasField("marker_recorded_event_attributes")
    ]
    assert markers  # the patch's marker is in the new history
    if target := os.environ.get("RECORD_MARGIN_HISTORY_TO"):  # how histories/pacing-margin.json was made
        recorded = (await handle.fetch_history()).to_json()
        await asyncio.to_thread(Path(target).write_text, recorded)


async def test_a_tick_whose_floor_cannot_be_read_places_nothing_and_the_pacer_goes_on(
    temporal_client: Client, task_queue: str, script: Floors
) -> None:
    script.floors, script.failing = [floor_at()], 2
    handle = await start(temporal_client, task_queue)
    await eventually(lambda: _placed(script, 1), within=15)
    status = await handle.query(PacingWorkflow.status)
    assert status.running and status.ticks >= 2  # two ticks skipped, then it dialled
    await handle.signal(PacingWorkflow.stop)
    await handle.result()


def test_the_client_names_what_the_workflow_registers() -> None:
    definition = workflow._Definition.must_from_class(PacingWorkflow)
    assert definition.name == pacing_client.WORKFLOW
    assert {pacing_client.STOP_SIGNAL, pacing_client.SETTINGS_CHANGED_SIGNAL} <= set(definition.signals)
    assert pacing_client.STATUS_QUERY in definition.queries


@pytest.mark.parametrize("name", ["pacing-governor.json", "pacing-margin.json"])
async def test_the_recorded_history_replays(name: str) -> None:
    """``histories/pacing-governor.json``: the governor test's run (predictive → tapered → paused →
    stopped), recorded with ``RECORD_HISTORY_TO`` at this file's commit; ``pacing-margin.json``: the
    margin-loosening test's run, with the ``margin-loosens-under-target`` marker, recorded with
    ``RECORD_MARGIN_HISTORY_TO``. Payloads are encrypted with the development key, as on the test server."""
    text = (HISTORIES / name).read_text()
    kinds = [e["eventType"] for e in json.loads(text)["events"]]
    assert kinds[-1] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"
    replayer = Replayer(workflows=[PacingWorkflow], data_converter=data_converter(Settings(_env_file=None)))  # type: ignore[call-arg]
    history = WorkflowHistory.from_json("pacing-unsigned", text)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


async def _placed(script: Floors, count: int) -> bool:
    return len(script.placed) >= count


async def _taken(script: Floors, count: int) -> bool:
    return script.taken >= count
