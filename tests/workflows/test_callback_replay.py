"""CallbackWorkflow replays the histories recorded by earlier versions of its code without
non-determinism: a change that would break callbacks in flight fails here first.

``histories/callback-old-*.json`` were recorded with the code before ``PREPARE_PATCH`` (check,
mirror and requeue at the due time, commit b2a4dc7), ``callback-new-*.json`` with the code that
prepares the callback ahead of its time (``prepare`` and ``transition`` as local activities); both
on the time-skipping test server, with same-named stub
activities (``prepare``/``check_due`` answering "proceed") and a stub ``SendSmsWorkflow``:
``missed`` is booked → reminded → due → open → missed, ``rescheduled-cancelled`` is booked 200 s
ahead (inside the prepare window for the new code), rescheduled to the next day, then cancelled.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows.callback import PREPARE_PATCH, CallbackWorkflow

HISTORIES = Path(__file__).parent / "histories"
NAMES = sorted(p.stem for p in HISTORIES.glob("callback-*.json"))
# The workflow ids they were recorded under (the ids of the child SMS workflows derive from them).
WORKFLOW_IDS = {"missed": "callback-1", "rescheduled-cancelled": "callback-2"}


def activities(name: str) -> list[str]:
    """Activity types in a recorded history, local activities (markers) included."""
    names = []
    for e in json.loads((HISTORIES / f"{name}.json").read_text())["events"]:
        if "activityTaskScheduledEventAttributes" in e:
            names.append(e["activityTaskScheduledEventAttributes"]["activityType"]["name"])
        elif e.get("markerRecordedEventAttributes", {}).get("markerName") == "core_local_activity":
            data = e["markerRecordedEventAttributes"]["details"]["data"]["payloads"][0]["data"]
            names.append(json.loads(base64.b64decode(data))["activity_type"])
    return names


def test_both_generations_are_recorded() -> None:
    assert {n.split("-")[1] for n in NAMES} == {"old", "new"}
    assert activities("callback-old-missed").count("check_due") == 1
    assert activities("callback-new-missed").count("prepare") == 1
    assert not {"check_due", "mirror", "requeue"} & set(activities("callback-new-missed"))
    assert PREPARE_PATCH == "callback-prepare"  # the marker name is part of recorded histories: never rename


@pytest.mark.parametrize("name", NAMES)
async def test_recorded_history_replays(name: str) -> None:
    workflow_id = WORKFLOW_IDS[name.split("-", 2)[2]]
    history = WorkflowHistory.from_json(workflow_id, (HISTORIES / f"{name}.json").read_text())
    result = await Replayer(workflows=[CallbackWorkflow]).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
