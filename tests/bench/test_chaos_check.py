"""The chaos checker (bench/chaos_check.py) on synthetic logs: a clean run passes, and a log that breaks
each invariant is reported under that invariant, with the session or customer named."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench.chaos_check import check, main

CB_AT = "2026-12-09T11:05:00+00:00"
END_WALL = 1_900_000_000.0  # the run ended long after the callback was due


def _call(to: str, start: str, end: str | None, sid: str) -> dict[str, Any]:
    return {"sid": sid, "to": to, "direction": "outbound-api", "start_time": start, "end_time": end}


def clean_log() -> list[dict[str, Any]]:
    """Two agents, three customers: a docs_promised call, a do-not-call, a callback that became due and
    was prepared, one fault with its recovery."""
    return [
        {"ev": "next_call", "t": 1.0, "agent": 0, "status": 200, "session_id": "s1", "user_id": 10,
         "queue": "unsigned"},
        {"ev": "dial", "t": 1.5, "sent": 1.2, "agent": 0, "status": 202, "session_id": "s1", "user_id": 10},
        {"ev": "outcome", "t": 5.0, "sent": 4.8, "agent": 0, "status": 200, "session_id": "s1", "user_id": 10,
         "disposition": "docs_promised", "callback_at": None},
        {"ev": "next_call", "t": 2.0, "agent": 1, "status": 200, "session_id": "s2", "user_id": 11,
         "queue": "unsigned"},
        {"ev": "outcome", "t": 6.0, "sent": 5.9, "agent": 1, "status": 200, "session_id": "s2", "user_id": 11,
         "disposition": "do_not_call", "callback_at": None},
        {"ev": "fault_start", "t": 6.5, "kind": "kill_api"},
        {"ev": "fault_end", "t": 7.0, "kind": "kill_api", "started": 6.5},
        # Customer 10 again, to agent 1, after agent 0 let go: a hand-over, not two holders.
        {"ev": "next_call", "t": 9.0, "agent": 1, "status": 200, "session_id": "s3", "user_id": 10,
         "queue": "unsigned"},
        {"ev": "outcome", "t": 12.0, "sent": 11.9, "agent": 1, "status": 200, "session_id": "s3", "user_id": 10,
         "disposition": "callback_requested", "callback_at": CB_AT},
        {"ev": "next_call", "t": 20.0, "agent": 0, "status": 200, "session_id": "s4", "user_id": 10,
         "queue": "callbacks"},
        {"ev": "outcome", "t": 22.0, "sent": 21.9, "agent": 0, "status": 200, "session_id": "s4", "user_id": 10,
         "disposition": "not_interested", "callback_at": None},
        {
            "ev": "final",
            "t": 30.0,
            "wall": END_WALL,
            "call_outcomes": [
                {"call_session_id": "s1", "user_id": 10, "disposition": "docs_promised"},
                {"call_session_id": "s2", "user_id": 11, "disposition": "do_not_call"},
                {"call_session_id": "s3", "user_id": 10, "disposition": "callback_requested"},
                {"call_session_id": "s4", "user_id": 10, "disposition": "not_interested"},
            ],
            "call_sessions": [
                {"id": "s1", "phone_e164": "+447700900110", "dialled": True},
                {"id": "s2", "phone_e164": "+447700900111", "dialled": True},
                {"id": "s3", "phone_e164": "+447700900110", "dialled": True},
                {"id": "s4", "phone_e164": "+447700900110", "dialled": True},
            ],
            "callbacks": [{"user_id": 10, "status": "completed", "due_at": CB_AT, "source": "call"}],
            "do_not_call": [{"user_id": 11, "source": "agent"}],
            "drift_total": 0,
            "drift": {},
            "dlq_messages": 0,
            "agents": [
                {"agent": 0, "presence": "available", "lease": False, "session": False},
                {"agent": 1, "presence": "available", "lease": False, "session": False},
            ],
            "emulator_calls": [
                _call("+447700900110", "Wed, 09 Dec 2026 11:00:01 +0000", "Wed, 09 Dec 2026 11:00:04 +0000", "CA1"),
                _call("+447700900111", "Wed, 09 Dec 2026 11:00:02 +0000", "Wed, 09 Dec 2026 11:00:05 +0000", "CA2"),
                _call("+447700900110", "Wed, 09 Dec 2026 11:00:09 +0000", "Wed, 09 Dec 2026 11:00:11 +0000", "CA3"),
                _call("+447700900110", "Wed, 09 Dec 2026 11:05:01 +0000", "Wed, 09 Dec 2026 11:05:03 +0000", "CA4"),
                # The agent's leg of a bridge is not a call to a customer.
                {"sid": "CA5", "to": "client:agent_1", "direction": "outbound-dial",
                 "start_time": "Wed, 09 Dec 2026 11:00:02 +0000", "end_time": None},
            ],
        },
    ]  # fmt: skip


def final(log: list[dict[str, Any]]) -> dict[str, Any]:
    return log[-1]


def violations(log: list[dict[str, Any]]) -> dict[str, list[str]]:
    report = check(log)
    found: dict[str, list[str]] = {}
    for v in report.violations:
        found.setdefault(v.invariant, []).append(v.what)
    return found


def test_a_clean_run_has_no_violation_and_counts_what_happened() -> None:
    report = check(clean_log())
    assert report.violations == []
    assert report.assignments == 4
    assert report.outcomes_2xx == 4
    assert report.callbacks_booked == 1
    (recovery,) = report.recoveries
    assert recovery.kind == "kill_api"
    assert recovery.seconds == 2.0  # fault over at 7.0, next customer offered at 9.0


def test_two_agents_holding_one_customer_is_a_violation_of_a() -> None:
    log = clean_log()
    # Agent 1 is offered customer 10 while agent 0 still acts on its session (outcome sent at 4.8).
    log.insert(1, {"ev": "next_call", "t": 3.0, "agent": 1, "status": 200, "session_id": "s9", "user_id": 10})
    found = violations(log)
    assert list(found) == ["a"]
    assert "customer 10 held by agents 0 and 1" in found["a"][0]


def test_two_live_calls_to_one_number_is_a_violation_of_a() -> None:
    log = clean_log()
    calls = final(log)["emulator_calls"]
    calls[2]["start_time"] = "Wed, 09 Dec 2026 11:00:03 +0000"  # while CA1 still rings
    final(log)["call_sessions"].append({"id": "s5", "phone_e164": "+447700900110", "dialled": True})
    found = violations(log)
    assert list(found) == ["a"]
    assert "two live calls to …110" in found["a"][0]


def test_an_accepted_outcome_missing_from_call_outcomes_is_a_violation_of_b() -> None:
    log = clean_log()
    final(log)["call_outcomes"] = [r for r in final(log)["call_outcomes"] if r["call_session_id"] != "s1"]
    assert violations(log) == {"b": ["outcome of session s1 answered 200 but in call_outcomes 0×"]}


def test_an_outcome_recorded_with_another_disposition_is_a_violation_of_b() -> None:
    log = clean_log()
    final(log)["call_outcomes"][0]["disposition"] = "no_answer"
    assert list(violations(log)) == ["b"]


def test_a_do_not_call_without_its_entry_is_a_violation_of_b() -> None:
    log = clean_log()
    final(log)["do_not_call"] = []
    found = violations(log)
    assert list(found) == ["b"]
    assert "do-not-call has customer 0×" in found["b"][0]


def test_a_callback_booked_twice_is_a_violation_of_b() -> None:
    log = clean_log()
    final(log)["callbacks"].append({"user_id": 10, "status": "cancelled", "due_at": CB_AT, "source": "call"})
    found = violations(log)
    assert "b" in found
    assert "in callbacks 2×" in found["b"][0]


def test_a_refused_outcome_needs_no_row() -> None:
    log = clean_log()
    log.insert(3, {"ev": "outcome", "t": 5.5, "sent": 5.4, "agent": 0, "status": 409, "session_id": "s7",
                   "user_id": 12, "disposition": "docs_promised", "callback_at": None})  # fmt: skip
    assert violations(log) == {}


def test_a_due_callback_never_prepared_is_a_violation_of_c() -> None:
    log = clean_log()
    final(log)["callbacks"][0]["status"] = "scheduled"
    found = violations(log)
    assert list(found) == ["c"]
    assert "still scheduled" in found["c"][0]


def test_a_callback_rung_twice_is_a_violation_of_c() -> None:
    """The chaos run's finding 8: the callback's call closed, and the customer was offered and rung
    from the callbacks queue again before the callback was settled."""
    log = clean_log()
    log.insert(-1, {"ev": "next_call", "t": 25.0, "agent": 1, "status": 200, "session_id": "s8", "user_id": 10,
                    "queue": "callbacks"})  # fmt: skip
    final(log)["call_sessions"].append({"id": "s8", "phone_e164": "+447700900110", "dialled": True})
    found = violations(log)
    assert list(found) == ["c"]
    assert "rung from the callbacks queue 2× for 1 booked" in found["c"][0]


def test_a_callback_offered_again_after_an_offer_that_placed_no_call_is_not_a_violation() -> None:
    log = clean_log()
    log.insert(-1, {"ev": "next_call", "t": 19.0, "agent": 1, "status": 200, "session_id": "s8", "user_id": 10,
                    "queue": "callbacks"})  # fmt: skip
    final(log)["call_sessions"].append({"id": "s8", "phone_e164": "+447700900110", "dialled": False})
    assert violations(log) == {}


def test_a_callback_not_yet_due_at_the_end_is_not_judged() -> None:
    log = clean_log()
    final(log)["wall"] = 1_765_278_000.0  # 2025: long before the callback's time
    final(log)["callbacks"][0]["status"] = "scheduled"
    assert violations(log) == {}


def test_drift_or_a_dead_letter_is_a_violation_of_d() -> None:
    log = clean_log()
    final(log)["drift_total"] = 3
    final(log)["dlq_messages"] = 1
    found = violations(log)
    assert list(found) == ["d"]
    assert len(found["d"]) == 2


def test_no_final_rebuild_is_a_violation_of_d() -> None:
    log = clean_log()
    final(log)["drift_total"] = None
    assert list(violations(log)) == ["d"]
    assert list(violations(log[:-1])) == ["d"]  # no final state at all


def test_an_agent_busy_without_a_lease_is_a_violation_of_e() -> None:
    log = clean_log()
    final(log)["agents"][1] = {"agent": 1, "presence": "wrap_up", "lease": False, "session": False}
    assert violations(log) == {"e": ["agent 1 is wrap_up without a lease or session"]}


def test_an_agent_still_holding_after_the_run_is_a_violation_of_e() -> None:
    log = clean_log()
    log.insert(-1, {"ev": "agent_stuck", "t": 29.0, "agent": 0, "why": "still holding"})
    assert list(violations(log)) == ["e"]


def test_a_number_rung_twice_for_one_session_is_a_violation_of_f() -> None:
    log = clean_log()
    final(log)["emulator_calls"].append(
        _call("+447700900111", "Wed, 09 Dec 2026 11:01:00 +0000", "Wed, 09 Dec 2026 11:01:02 +0000", "CA9")
    )
    assert violations(log) == {"f": ["…111 rung 2× for 1 dialled session(s)"]}


def test_a_fault_never_recovered_from_is_reported() -> None:
    log = clean_log()
    log = [e for e in log if not (e["ev"] in ("next_call", "outcome") and e["t"] > 7.0)]
    final_state = copy.deepcopy(final(clean_log()))
    final_state["call_outcomes"] = final_state["call_outcomes"][:2]
    final_state["callbacks"] = []
    log[-1] = final_state
    report = check(log)
    assert report.violations == []
    (recovery,) = report.recoveries
    assert recovery.seconds is None
    assert report.to_json()["recovery"]["kill_api"]["never_recovered"] == 1


def _rebuild(t: float, run_id: str, drift_total: int, trigger: str = "schedule") -> dict[str, Any]:
    return {"ev": "rebuild_report", "t": t, "run_id": run_id, "trigger": trigger, "drift_total": drift_total}


def test_a_rebuild_after_the_run_that_corrects_the_queues_is_a_violation_of_d() -> None:
    log = clean_log()
    log.insert(-1, {"ev": "stopping", "t": 14.0})
    log.insert(-1, _rebuild(15.0, "r1", 2, trigger="supervisor"))
    log.insert(-1, _rebuild(16.0, "r1", 2, trigger="supervisor"))  # the same report seen twice is one rebuild
    found = violations(log)
    assert list(found) == ["d"]
    assert found["d"] == ["rebuild r1 after the run drift 2: None"]


def test_drift_during_the_run_is_reported_not_judged() -> None:
    log = clean_log()
    log.insert(-1, _rebuild(8.0, "r0", 3))  # CDC held back by a fault: lag and loss look alike here
    report = check(log)
    assert report.violations == []
    assert report.drift_during_run == [{"run_id": "r0", "t": 8.0, "drift_total": 3}]


def test_the_first_rebuild_after_a_redis_flush_refills_and_is_not_drift() -> None:
    log = clean_log()
    log.insert(-1, {"ev": "fault_start", "t": 13.0, "kind": "flush_redis"})
    log.insert(-1, {"ev": "fault_end", "t": 13.0, "kind": "flush_redis", "started": 13.0})
    log.insert(-1, {"ev": "stopping", "t": 14.0})
    log.insert(-1, _rebuild(15.0, "r1", 150, trigger="supervisor"))  # refills what the flush lost
    report = check(log)
    assert report.violations == []
    assert report.refilled == 150
    log.insert(-1, _rebuild(18.0, "r2", 1, trigger="supervisor"))  # the next one must find nothing to correct
    assert list(violations(log)) == ["d"]


def test_a_callback_moved_by_a_later_booking_is_superseded_not_lost() -> None:
    log = clean_log()
    later = "2026-12-09T11:20:00+00:00"
    # On the callback call (s4) the customer asks for another time: their one callback moves.
    log[10] = {**log[10], "disposition": "callback_requested", "callback_at": later}
    final(log)["call_outcomes"][3]["disposition"] = "callback_requested"
    final(log)["callbacks"] = [{"user_id": 10, "status": "completed", "due_at": later, "source": "call"}]
    assert violations(log) == {}
    final(log)["callbacks"] = [{"user_id": 10, "status": "completed", "due_at": CB_AT, "source": "call"}]
    assert list(violations(log)) == ["b"]  # the latest booking is the one that must be there


def test_several_runs_are_judged_each_and_their_recoveries_pooled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = tmp_path / "clean.jsonl"
    clean.write_text("\n".join(json.dumps(e) for e in clean_log()))
    broken_log = clean_log()
    final(broken_log)["dlq_messages"] = 1
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(json.dumps(e) for e in broken_log))

    assert main([str(clean)]) == 0
    capsys.readouterr()
    assert main([str(clean), str(broken)]) == 1  # one run with a violation fails the pair
    judged = json.loads(capsys.readouterr().out)
    assert judged[str(clean)]["violations"]["d"] == 0 and judged[str(broken)]["violations"]["d"] == 1
    assert judged["recovery_across_runs"]["kill_api"]["injected"] == 2


def test_a_callback_the_gate_moved_to_a_later_time_is_the_one_booked() -> None:
    """The call was abandoned (the API down at the answer): Ofcom's 72 h closes the booked time and the
    callback's prepare moves it to the next allowed slot. Its notes say so; without them it is lost."""
    moved_to = "2030-06-07T08:00:00+00:00"  # after the run's end (END_WALL)
    log = clean_log()
    [callback] = final(log)["callbacks"]
    callback.update(status="scheduled", due_at=moved_to)
    callback["notes"] = [
        f"2026-12-09T11:00:41+00:00 booked by call for {CB_AT}",
        f"2026-12-09T11:01:00+00:00 moved to {moved_to}: abandoned call 09/12 11:00; no call until 12/12 11:00",
    ]
    assert violations(log) == {}

    callback["notes"] = callback["notes"][:1]  # booked, never moved: the row's time is not the booking's
    assert violations(log) == {"b": ["session s3: callback booked on the call is in callbacks 0×"]}
