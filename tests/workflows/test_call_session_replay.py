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

``call-session-new-kept-outcome-found.json`` and ``-signalled.json`` were recorded with
``RECEIVED_OUTCOME_PATCH`` by tests/e2e/test_outcome_durability.py (``RECORD_HISTORY_TO=<dir>``, payloads
then decoded with the development key): answered → hang-up → wrap-up → the worker SIGKILLed → the
agent's ``do_not_call`` kept by the API → the wrap-up limit passes → a worker comes back. "found": the
API could not reach Temporal either, and the session takes the kept outcome (the patch's marker and
its local activity) instead of closing as ``no_outcome``. "signalled": Temporal held the Update and
the ``outcome_received`` signal, and the Update is taken first. ``call-session-new-kept-outcome-told.json``
(same test file): reserved → an outcome kept → ``outcome_received`` → taken at once (the patch's branch
in the reserved wait) → closed ``wrong_number``.

``call-session-new-carrier-status-check.json`` was recorded with ``CARRIER_CHECK_PATCH`` by
tests/e2e/test_lost_status_callbacks.py (``RECORD_HISTORY_TO=<dir>``, payloads decoded by
tests/support/histories.py): dialled while the API was down, so no status callback ever came → the
check's time → ``check_call`` finds the call ``completed`` with a duration → answered, wrap-up →
outcome ``not_interested`` → closed.

``call-session-lean-answered.json`` was recorded with ``LEAN_SESSION_PATCH`` by tests/e2e/test_call_session.py
(``RECORD_HISTORY_TO=<dir>``, payloads decoded by tests/support/histories.py): next-call → dial → answered →
the agent hangs up → wrap-up → outcome ``docs_promised`` → closed, the upload link texted by a child
workflow.

``call-session-lean-refused-dial-wrap-up.json`` (recorded before ``UNPLACED_DIAL_PATCH``, from
tests/e2e/test_dial_refusal.py, cut while in wrap-up) and ``call-session-unplaced-dial-closed.json``
(with it, the same test): next-call → dial → the compliance gate refuses at the last moment → wrap-up
(before) or closed at once ``no_outcome`` (with the patch's marker).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from dialler.config import Settings
from dialler.security.codec import data_converter
from workflows.call_session import (
    CARRIER_CHECK_PATCH,
    COMPLETED_ANSWERED_PATCH,
    HANGUP_GRACE_PATCH,
    LEAN_SESSION_PATCH,
    LIVE_STATUS_PATCH,
    POOLED_CALL_PATCH,
    PREVIEW_LIMIT_PATCH,
    RECEIVED_OUTCOME_PATCH,
    UNPLACED_DIAL_PATCH,
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
    [
        "call-session-new-carrier-leg-gone",
        "call-session-new-completed-answered",
        "call-session-new-preview-expired",
        "call-session-new-kept-outcome-found",
        "call-session-new-kept-outcome-signalled",
        "call-session-new-kept-outcome-told",
        "call-session-new-carrier-status-check",
        "call-session-lean-answered",
        "call-session-lean-refused-dial-wrap-up",
        "call-session-unplaced-dial-closed",
    ],
)
async def test_the_patched_histories_replay(name: str) -> None:
    assert COMPLETED_ANSWERED_PATCH == "completed-with-duration-answered"  # never rename
    assert PREVIEW_LIMIT_PATCH == "preview-limit"
    text = (HISTORIES / f"{name}.json").read_text()
    history = WorkflowHistory.from_json(name, text)
    result = await Replayer(workflows=[CallSessionWorkflow]).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def test_the_kept_outcome_generation_is_recorded() -> None:
    """The "found" history took the kept outcome past the wrap-up limit (the patched branch), and
    closed with it: do_not_call, not no_outcome."""
    assert RECEIVED_OUTCOME_PATCH == "outcome-kept-by-api"  # part of recorded histories: never rename
    events = json.loads((HISTORIES / "call-session-new-kept-outcome-found.json").read_text())["events"]
    patches = [
        json.loads(base64.b64decode(e["markerRecordedEventAttributes"]["details"]["patch-data"]["payloads"][0]["data"]))
        for e in events
        if e.get("markerRecordedEventAttributes", {}).get("markerName") == "core_patch"
    ]
    assert RECEIVED_OUTCOME_PATCH in [p["id"] for p in patches]
    assert "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED" not in [e["eventType"] for e in events]  # none came
    dispositions = [
        json.loads(base64.b64decode(f["Disposition"]["data"]))
        for e in events
        if "upsertWorkflowSearchAttributesEventAttributes" in e
        for f in [e["upsertWorkflowSearchAttributesEventAttributes"]["searchAttributes"]["indexedFields"]]
        if "Disposition" in f
    ]
    assert dispositions == ["do_not_call"]
    assert call_statuses("call-session-new-kept-outcome-found")[-2:] == ["wrap_up", "closed"]


def test_the_carrier_check_generation_is_recorded() -> None:
    """No status callback reached the session: the carrier's answer to its check ended the call."""
    assert CARRIER_CHECK_PATCH == "carrier-status-check"  # part of recorded histories: never rename
    name = "call-session-new-carrier-status-check"
    events = json.loads((HISTORIES / f"{name}.json").read_text())["events"]
    patches = [
        json.loads(base64.b64decode(e["markerRecordedEventAttributes"]["details"]["patch-data"]["payloads"][0]["data"]))
        for e in events
        if e.get("markerRecordedEventAttributes", {}).get("markerName") == "core_patch"
    ]
    assert CARRIER_CHECK_PATCH in [p["id"] for p in patches]
    activities = [
        e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
        for e in events
        if "activityTaskScheduledEventAttributes" in e
    ]
    assert activities == ["place_call", "check_call"]
    signals = [
        e["workflowExecutionSignaledEventAttributes"]["signalName"]
        for e in events
        if "workflowExecutionSignaledEventAttributes" in e
    ]
    assert signals == ["dial"]  # no call_status: every callback was lost
    assert call_statuses(name) == ["reserved", "dialing", "wrap_up", "closed"]


def test_the_pooled_call_generation_is_recorded() -> None:
    """``call-session-new-pooled-answered.json``, recorded with ``POOLED_CALL_PATCH`` by
    tests/e2e/test_pacing_predictive.py (``RECORD_HISTORY_TO``; payloads encrypted with the development
    key): a predictive call the pacer placed with no agent → answered → ``agent_claimed`` → filed
    under the agent (AgentId upserted only then) → wrap-up → the agent's outcome → closed."""
    assert POOLED_CALL_PATCH == "pooled-call-claimed-at-answer"  # part of recorded histories: never rename
    events = json.loads((HISTORIES / "call-session-new-pooled-answered.json").read_text())["events"]
    signals = [
        e["workflowExecutionSignaledEventAttributes"]["signalName"]
        for e in events
        if "workflowExecutionSignaledEventAttributes" in e
    ]
    assert "agent_claimed" in signals
    upserted = [
        set(e["upsertWorkflowSearchAttributesEventAttributes"]["searchAttributes"]["indexedFields"])
        for e in events
        if "upsertWorkflowSearchAttributesEventAttributes" in e
    ]
    first_agent = next(i for i, fields in enumerate(upserted) if "AgentId" in fields)
    assert first_agent > 2  # not at the start: the call had no agent while it rang
    assert call_statuses("call-session-new-pooled-answered")[-3:] == ["in_progress", "wrap_up", "closed"]


async def test_the_pooled_call_history_replays() -> None:
    text = (HISTORIES / "call-session-new-pooled-answered.json").read_text()
    history = WorkflowHistory.from_json("call-pooled", text)
    replayer = Replayer(
        workflows=[CallSessionWorkflow],
        data_converter=data_converter(Settings(_env_file=None)),  # type: ignore[call-arg]
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def test_the_lean_generation_is_recorded() -> None:
    """A lean session: one patch marker (the earlier patches' code runs without theirs), filed for
    supervisors at its start rather than by an upsert, the call's end
    written with the wrap-up, Disposition and CallStatus ``closed`` in one upsert, and no status of
    the agent's leg (only the customer's call reports to the session)."""
    assert LEAN_SESSION_PATCH == "lean-session"  # part of recorded histories: never rename
    name = "call-session-lean-answered"
    events = json.loads((HISTORIES / f"{name}.json").read_text())["events"]
    markers = [e["markerRecordedEventAttributes"] for e in events if "markerRecordedEventAttributes" in e]
    patches = [
        json.loads(base64.b64decode(m["details"]["patch-data"]["payloads"][0]["data"]))["id"]
        for m in markers
        if m["markerName"] == "core_patch"
    ]
    assert patches == [LEAN_SESSION_PATCH]
    started = events[0]["workflowExecutionStartedEventAttributes"]["searchAttributes"]["indexedFields"]
    assert sorted(started) == ["AgentId", "CallStatus", "QueueType", "UserId"]
    assert json.loads(base64.b64decode(started["CallStatus"]["data"])) == "reserved"
    upserted = [
        sorted(set(e["upsertWorkflowSearchAttributesEventAttributes"]["searchAttributes"]["indexedFields"]))
        for e in events
        if "upsertWorkflowSearchAttributesEventAttributes" in e
    ]
    assert upserted == [["TemporalChangeVersion"]] + [["CallStatus"]] * 3 + [["CallStatus", "Disposition"]]
    assert call_statuses(name) == ["dialing", "in_progress", "wrap_up", "closed"]
    local = [
        json.loads(base64.b64decode(m["details"]["data"]["payloads"][0]["data"]))["activity_type"]
        for m in markers
        if m["markerName"] == "core_local_activity"
    ]
    # Four progress writes: dialing, ringing, in_progress, and wrap_up with the end.
    assert local == ["open_session"] + ["record_progress"] * 4 + ["finish_session", "plan_follow_up"]
    scheduled = [
        e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
        for e in events
        if "activityTaskScheduledEventAttributes" in e
    ]
    assert scheduled == ["place_call", "hangup"]  # the dial's refusal must reach the session (see _dial)
    statuses = [
        json.loads(base64.b64decode(e["workflowExecutionSignaledEventAttributes"]["input"]["payloads"][0]["data"]))
        for e in events
        if e.get("workflowExecutionSignaledEventAttributes", {}).get("signalName") == "call_status"
    ]
    assert len({s["call_sid"] for s in statuses}) == 1, statuses  # the customer's call only


def test_the_unplaced_dial_generation_is_recorded() -> None:
    """Before the patch a refused dial went to wrap-up; with it, the session closed at once."""
    assert UNPLACED_DIAL_PATCH == "unplaced-dial-closes"  # part of recorded histories: never rename
    assert call_statuses("call-session-lean-refused-dial-wrap-up")[-1] == "wrap_up"
    closed = json.loads((HISTORIES / "call-session-unplaced-dial-closed.json").read_text())["events"]
    markers = [e for e in closed if e.get("markerRecordedEventAttributes", {}).get("markerName") == "core_patch"]
    assert len(markers) == 2  # lean-session, then unplaced-dial-closes
    assert "wrap_up" not in call_statuses("call-session-unplaced-dial-closed")
