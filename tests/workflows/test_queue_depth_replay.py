"""QueueDepthSampleWorkflow replays the history recorded by its first version (one sample activity,
named by the workflow's start minute): a change that would break runs in flight fails here first.

``queue-depth-sample.json`` was recorded by tests/workflows/test_queue_depth.py's worker (real Temporal
dev server, Redis and PostgreSQL) at the commit of this file."""

from __future__ import annotations

import json
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows.queue_depth import QueueDepthSampleWorkflow

HISTORY = Path(__file__).parent / "histories" / "queue-depth-sample.json"


def test_the_history_is_one_sample_then_done() -> None:
    kinds = [e["eventType"].removeprefix("EVENT_TYPE_") for e in json.loads(HISTORY.read_text())["events"]]
    assert kinds.count("ACTIVITY_TASK_COMPLETED") == 1
    assert kinds[-1] == "WORKFLOW_EXECUTION_COMPLETED"


async def test_recorded_history_replays() -> None:
    history = WorkflowHistory.from_json("queue-depth-sample", HISTORY.read_text())
    result = await Replayer(workflows=[QueueDepthSampleWorkflow]).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert result.replay_failure is None, result.replay_failure
