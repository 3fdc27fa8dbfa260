"""InboundCallWorkflow replays the histories recorded by its first version without non-determinism:
a later change that would break returned calls in flight fails here first (put it behind
``workflow.patched`` and record a new history beside these).

Recorded by tests/workflows/test_inbound_call.py (stub activities, the processes' data converter,
so the payloads are encrypted with the development key as in any stack): ``inbound-call-rang-out``
(nobody answered), ``inbound-call-answered-outcome`` (answered, hung up by the agent, a late and a
foreign status, two refused outcomes and one accepted), ``inbound-call-wrap-up-timeout``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from dialler.config import Settings
from dialler.security.codec import data_converter
from workflows.inbound_call import InboundCallWorkflow

HISTORIES = Path(__file__).parent / "histories"
NAMES = ["inbound-call-rang-out", "inbound-call-answered-outcome", "inbound-call-wrap-up-timeout"]


def event_types(name: str) -> list[str]:
    events = json.loads((HISTORIES / f"{name}.json").read_text())["events"]
    return [e["eventType"].removeprefix("EVENT_TYPE_") for e in events]


def test_the_answered_history_covers_signals_updates_and_the_hang_up() -> None:
    kinds = event_types("inbound-call-answered-outcome")
    assert kinds.count("WORKFLOW_EXECUTION_SIGNALED") >= 5
    assert "WORKFLOW_EXECUTION_UPDATE_ACCEPTED" in kinds and "ACTIVITY_TASK_COMPLETED" in kinds  # the hang-up
    assert kinds[-1] == "WORKFLOW_EXECUTION_COMPLETED"


@pytest.mark.parametrize("name", NAMES)
async def test_recorded_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text())
    replayer = Replayer(
        workflows=[InboundCallWorkflow],
        data_converter=data_converter(Settings(_env_file=None)),  # type: ignore[call-arg]
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
