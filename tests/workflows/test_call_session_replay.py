"""CallSessionWorkflow replays the histories recorded by earlier versions of its code without
non-determinism: a change that would break calls in flight fails here first.

``histories/call-session-old-answered.json`` was recorded by the code before ``LIVE_STATUS_PATCH``
(commit 0842d96), ``call-session-new-answered.json`` by the code with it; both by the end-to-end
stack (real API, worker and the in-worker simulated carrier of the time, since removed): next-call →
dial → answered → agent hangs up → outcome ``busy`` → closed.

``call-session-new-carrier-leg-gone.json`` was recorded with ``HANGUP_GRACE_PATCH`` (Twilio mode against
the emulator, tests/e2e/test_twilio_lines.py): answered → the carrier loses the leg → a supervisor ends
the call → no final status, ended after the grace → outcome → closed. The old histories have no
hang-up without a final status, so they replay the unpatched branch.

``call-session-new-completed-answered.json`` was recorded with ``COMPLETED_ANSWERED_PATCH``
(tests/e2e/test_voice.py): dialled → a final ``completed`` with ``CallDuration`` 42 and no in-progress
before it → answered → outcome ``not_interested`` → closed.

``call-session-new-preview-expired.json`` was recorded with ``PREVIEW_LIMIT_PATCH``
(tests/e2e/test_call_session.py): reserved → not dialled within the preview limit → closed, no outcome.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows.call_session import (
    COMPLETED_ANSWERED_PATCH,
    HANGUP_GRACE_PATCH,
    LIVE_STATUS_PATCH,
    PREVIEW_LIMIT_PATCH,
    CallSessionWorkflow,
)

HISTORIES = Path(__file__).parent / "histories"


def call_statuses(name: str) -> list[str]:
    """The CallStatus values a supervisor's filter saw, in order."""
    events = json.loads((HISTORIES / f"{name}.json").read_text())["events"]
    fields = [
        e["upsertWorkflowSearchAttributesEventAttributes"]["searchAttributes"]["indexedFields"]
        for e in events
        if "upsertWorkflowSearchAttributesEventAttributes" in e
    ]
    return [json.loads(base64.b64decode(f["CallStatus"]["data"])) for f in fields if "CallStatus" in f]


def test_both_generations_are_recorded() -> None:
    assert call_statuses("call-session-old-answered") == ["reserved", "dialing", "ended", "wrap_up", "closed"]
    assert call_statuses("call-session-new-answered") == ["reserved", "dialing", "in_progress", "wrap_up", "closed"]
    assert LIVE_STATUS_PATCH == "call-status-in-progress"  # the marker name is part of recorded histories: never rename


@pytest.mark.parametrize("generation", ["old", "new"])
async def test_recorded_history_replays(generation: str) -> None:
    text = (HISTORIES / f"call-session-{generation}-answered.json").read_text()
    history = WorkflowHistory.from_json("call-34", text)
    result = await Replayer(workflows=[CallSessionWorkflow]).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def test_the_hangup_grace_generation_is_recorded() -> None:
    assert call_statuses("call-session-new-carrier-leg-gone") == [
        "reserved",
        "dialing",
        "in_progress",
        "wrap_up",
        "closed",
    ]
    assert HANGUP_GRACE_PATCH == "end-call-after-hangup-grace"  # part of recorded histories: never rename


@pytest.mark.parametrize(
    "name",
    ["call-session-new-carrier-leg-gone", "call-session-new-completed-answered", "call-session-new-preview-expired"],
)
async def test_the_patched_histories_replay(name: str) -> None:
    assert COMPLETED_ANSWERED_PATCH == "completed-with-duration-answered"  # never rename
    assert PREVIEW_LIMIT_PATCH == "preview-limit"
    text = (HISTORIES / f"{name}.json").read_text()
    history = WorkflowHistory.from_json(name, text)
    result = await Replayer(workflows=[CallSessionWorkflow]).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
