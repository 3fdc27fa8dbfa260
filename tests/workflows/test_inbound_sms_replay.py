"""InboundSmsWorkflow replays the histories recorded by its first version without non-determinism:
a later change that would break fan-outs in flight fails here first (put it behind
``workflow.patched`` and record a new history beside these).

Both recorded by the end-to-end stack (real API, worker, the in-worker simulated carrier of the time,
commit of this file): ``inbound-sms-stop.json``: STOP from a number shared by two customers, one
queued and one with a live callback (out of the queues, one callback signal that finds no workflow
and one that cancels, the confirmation as a child); ``inbound-sms-start.json``: START that lifts the
opt-out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows.inbound_sms import InboundSmsWorkflow

HISTORIES = Path(__file__).parent / "histories"


def event_types(name: str) -> list[str]:
    events = json.loads((HISTORIES / f"{name}.json").read_text())["events"]
    return [e["eventType"].removeprefix("EVENT_TYPE_") for e in events]


def test_the_stop_history_covers_every_step() -> None:
    kinds = event_types("inbound-sms-stop")
    assert "ACTIVITY_TASK_COMPLETED" in kinds
    assert "SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED" in kinds  # no callback: nothing to cancel
    assert "EXTERNAL_WORKFLOW_EXECUTION_SIGNALED" in kinds
    assert "CHILD_WORKFLOW_EXECUTION_STARTED" in kinds
    assert kinds[-1] == "WORKFLOW_EXECUTION_COMPLETED"


@pytest.mark.parametrize("name", ["inbound-sms-stop", "inbound-sms-start"])
async def test_recorded_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text())
    result = await Replayer(workflows=[InboundSmsWorkflow]).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
