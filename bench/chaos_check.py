"""The chaos run's invariant checker: reads the harness's append-only log (JSON lines) and reports every
violation of the invariants of issue 19, with the recovery time after each fault.

    .venv/bin/python bench/chaos_check.py .run/chaos/<run>/chaos.jsonl

The log is all it reads: what the harness did and saw (``t`` = seconds on the harness's monotonic
clock, ``wall`` = Unix time), then one ``final`` event with the stores as they stood at the end (rows of
call_outcomes, call_sessions, callbacks, do_not_call; the rebuild's drift; the DLQ; every agent's
presence and lease; the emulator's call log). It is separate from the harness so that it can be fed
synthetic logs that break each invariant (tests/bench/test_chaos_check.py).

(a) never two agents holding one customer, never two live calls to one number;
(b) every outcome answered 2xx is in call_outcomes with its effects exactly once;
(c) every booked callback prepares and becomes callable once;
(d) the queues equal a fresh rebuild (drift 0) and no valid change sits in the DLQ;
(e) no agent stuck without a lease or session;
(f) nobody rung twice (the emulator's call log against the sessions that dialled);
(g) after each fault, the time until next-call works again (a measure, not a pass/fail).
"""

from __future__ import annotations

import bisect
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

INVARIANTS = ("a", "b", "c", "d", "e", "f")
# Dispositions whose effect is a do-not-call entry, and the one that books a callback
# (dialler/calls/dispositions.py, the one table).
DNC_DISPOSITIONS = frozenset({"do_not_call", "wrong_number"})
CALLBACK = "callback_requested"
# A booked callback whose due time is this long before the end of the run must have been prepared
# (the queue made the customer callable); the callback workflow's timer runs in Temporal.
CALLBACK_SLACK_S = 60.0
HOLDING_ACTIONS = frozenset({"dial", "hangup", "outcome"})
BUSY_PRESENCE = frozenset({"reserved", "on_call", "wrap_up"})


@dataclass
class Violation:
    invariant: str
    what: str

    def __str__(self) -> str:
        return f"({self.invariant}) {self.what}"


@dataclass
class Recovery:
    kind: str
    started: float
    ended: float
    seconds: float | None  # None: next-call never worked again before the run ended


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)
    assignments: int = 0
    outcomes_2xx: int = 0
    callbacks_booked: int = 0
    texts_2xx: int = 0
    cdc_writes: int = 0
    refilled: int = 0  # queue entries the first rebuild after a Redis flush put back
    drift_during_run: list[dict[str, Any]] = field(default_factory=list)  # scheduled rebuilds mid-run
    faults: Counter[str] = field(default_factory=Counter)

    def count(self, invariant: str) -> int:
        return sum(1 for v in self.violations if v.invariant == invariant)

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return {
            "assignments": self.assignments,
            "outcomes_2xx": self.outcomes_2xx,
            "callbacks_booked": self.callbacks_booked,
            "texts_2xx": self.texts_2xx,
            "cdc_writes": self.cdc_writes,
            "refilled_after_flush": self.refilled,
            "drift_during_run": self.drift_during_run,
            "faults": dict(self.faults),
            "violations": {i: self.count(i) for i in INVARIANTS},
            "violation_details": [str(v) for v in self.violations[:200]],
            "recovery": recovery_table(self.recoveries),
        }


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    f = int(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def recovery_table(recoveries: list[Recovery]) -> dict[str, dict[str, Any]]:
    by_kind: dict[str, list[Recovery]] = defaultdict(list)
    for r in recoveries:
        by_kind[r.kind].append(r)
    table = {}
    for kind, items in sorted(by_kind.items()):
        seconds = [r.seconds for r in items if r.seconds is not None]
        table[kind] = {
            "injected": len(items),
            "never_recovered": sum(1 for r in items if r.seconds is None),
            "p50_s": percentile(seconds, 50),
            "p99_s": percentile(seconds, 99),
            "max_s": max(seconds) if seconds else None,
        }
    return table


def read_log(path: Path) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text().splitlines():
        if line.strip():
            events.append(json.loads(line))
    return events


def check(events: Iterable[dict[str, Any]]) -> Report:
    events = list(events)
    report = Report()
    final = next((e for e in reversed(events) if e["ev"] == "final"), None)
    if final is None:
        report.violations.append(Violation("d", "the log has no final state: the run did not finish"))
        return report
    _holding(events, report)
    _live_calls(final, report)
    _outcomes(events, final, report)
    _callbacks(events, final, report)
    _queues(events, final, report)
    _agents(events, final, report)
    _rung_twice(final, report)
    _recoveries(events, report)
    report.texts_2xx = sum(1 for e in events if e["ev"] == "text" and 200 <= e.get("status", 0) < 300)
    report.cdc_writes = sum(1 for e in events if e["ev"] == "cdc_write")
    return report


def _ok(e: dict[str, Any]) -> bool:
    return 200 <= int(e.get("status", 0)) < 300


def _holding(events: list[dict[str, Any]], report: Report) -> None:
    """(a) An agent holds a customer from the moment next-call answered them (response received) to the
    moment it sent its last action on that session that the API accepted (request sent). Two agents'
    spans on one customer must not overlap: a legitimate hand-over releases before it re-offers."""
    spans: dict[str, dict[str, Any]] = {}  # session id -> span
    for e in events:
        if e["ev"] == "next_call" and _ok(e) and e.get("session_id"):
            report.assignments += 1
            spans.setdefault(
                e["session_id"],
                {"agent": e["agent"], "user": e["user_id"], "start": e["t"], "end": e["t"], "sid": e["session_id"]},
            )
        elif e["ev"] in HOLDING_ACTIONS and _ok(e) and e.get("session_id") in spans:
            span = spans[e["session_id"]]
            if span["agent"] == e["agent"]:
                span["end"] = max(span["end"], e.get("sent", e["t"]))
    by_user: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for span in spans.values():
        by_user[span["user"]].append(span)
    for user, items in by_user.items():
        items.sort(key=lambda s: s["start"])
        for i, first in enumerate(items):
            for second in items[i + 1 :]:
                if second["start"] >= first["end"]:
                    continue
                if second["agent"] != first["agent"]:
                    report.violations.append(
                        Violation(
                            "a",
                            f"customer {user} held by agents {first['agent']} and {second['agent']} at once "
                            f"(sessions {first['sid']} and {second['sid']}, t={second['start']:.1f})",
                        )
                    )


def _when(raw: str | None) -> float | None:
    return parsedate_to_datetime(raw).timestamp() if raw else None


def _live_calls(final: dict[str, Any], report: Report) -> None:
    """(a) Never two live calls to one number (the emulator's legs to customers, by start/end time)."""
    by_number: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for call in final.get("emulator_calls", []):
        to = call.get("to") or ""
        if not to.startswith("+") or call.get("direction") not in (None, "outbound-api"):
            continue
        start = _when(call.get("start_time")) or _when(call.get("date_created"))
        if start is None:
            continue
        end = _when(call.get("end_time")) or float("inf")
        by_number[to].append((start, end, call["sid"]))
    for number, calls in by_number.items():
        calls.sort()
        for (_s1, e1, sid1), (s2, _e2, sid2) in zip(calls, calls[1:], strict=False):
            if s2 < e1:
                report.violations.append(Violation("a", f"two live calls to …{number[-3:]} at once ({sid1}, {sid2})"))


def _outcomes(events: list[dict[str, Any]], final: dict[str, Any], report: Report) -> None:
    """(b) Each outcome the API accepted is one call_outcomes row with that disposition, and its effect
    (a do-not-call entry, a booked callback) is there exactly once."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in final.get("call_outcomes", []):
        rows[str(row["call_session_id"])].append(row)
    dnc_users = Counter(r.get("user_id") for r in final.get("do_not_call", []))
    callbacks_by_user: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for cb in final.get("callbacks", []):
        callbacks_by_user[cb["user_id"]].append(cb)
    accepted: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["ev"] == "outcome" and _ok(e):
            accepted.setdefault(e["session_id"], e)  # a retry answered 2xx is the same outcome
    report.outcomes_2xx = len(accepted)
    latest_callback = _latest_callbacks(accepted.values())
    for sid, e in accepted.items():
        found = rows.get(sid, [])
        if len(found) != 1:
            report.violations.append(
                Violation("b", f"outcome of session {sid} answered {e['status']} but in call_outcomes {len(found)}×")
            )
            continue
        if found[0]["disposition"] != e["disposition"]:
            report.violations.append(
                Violation(
                    "b", f"session {sid}: answered {e['disposition']}, call_outcomes has {found[0]['disposition']}"
                )
            )
        if e["disposition"] in DNC_DISPOSITIONS and dnc_users[e["user_id"]] != 1:
            report.violations.append(
                Violation(
                    "b", f"session {sid} ({e['disposition']}): do-not-call has customer {dnc_users[e['user_id']]}×"
                )
            )
        if e["disposition"] == CALLBACK and sid == latest_callback.get(e["user_id"]):
            booked = [cb for cb in callbacks_by_user[e["user_id"]] if _booked_for(cb, e["callback_at"])]
            if len(booked) != 1:
                report.violations.append(
                    Violation("b", f"session {sid}: callback booked on the call is in callbacks {len(booked)}×")
                )


def _latest_callbacks(accepted: Iterable[dict[str, Any]]) -> dict[Any, str]:
    """Per customer, the session of the last callback booked. A callback booked on the call that
    answered an earlier callback moves that customer's one callback (one live callback per customer,
    workflow id callback-<user id>): the mirror then holds the later time, and the earlier booking is
    superseded, not lost."""
    latest: dict[Any, tuple[float, str]] = {}
    for e in accepted:
        if e["disposition"] == CALLBACK and (e["user_id"] not in latest or e["t"] > latest[e["user_id"]][0]):
            latest[e["user_id"]] = (e["t"], e["session_id"])
    return {user: sid for user, (_, sid) in latest.items()}


def _same_instant(a: str, b: str) -> bool:
    return abs(datetime.fromisoformat(a).timestamp() - datetime.fromisoformat(b).timestamp()) < 1.0


_BOOKED = re.compile(r"booked by \S+ for (\S+)$")
_MOVED = re.compile(r"moved to (\S+): ")


def _booked_for(callback: dict[str, Any], at: str) -> bool:
    """The callback row is the one booked for ``at``: due then, or booked then and moved since by the
    compliance gate to the row's time (a time a rule closed: calling hours, a bank holiday, the 72 h
    after an abandoned call), as its workflow's notes say."""
    if _same_instant(callback["due_at"], at):
        return True
    notes = callback.get("notes") or []
    booked = [m.group(1) for n in notes if (m := _BOOKED.search(n))]
    moved = [m.group(1) for n in notes if (m := _MOVED.search(n))]
    return any(_same_instant(b, at) for b in booked) and any(_same_instant(m, callback["due_at"]) for m in moved)


def _callbacks(events: list[dict[str, Any]], final: dict[str, Any], report: Report) -> None:
    """(c) A callback booked on a call and due before the end of the run (with slack) has been prepared:
    its mirror left ``scheduled`` (due/open: callable; completed/missed: it was), and the customer was
    rung from the callbacks queue no more than once for it."""
    end_wall = final["wall"]
    by_user: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for cb in final.get("callbacks", []):
        by_user[cb["user_id"]].append(cb)
    seen: set[str] = set()
    latest = _latest_callbacks(e for e in events if e["ev"] == "outcome" and _ok(e))
    for e in events:
        if e["ev"] != "outcome" or not _ok(e) or e.get("disposition") != CALLBACK or e["session_id"] in seen:
            continue
        seen.add(e["session_id"])
        report.callbacks_booked += 1
        due = datetime.fromisoformat(e["callback_at"]).timestamp()  # a real instant (the shift is for hours only)
        if due > end_wall - CALLBACK_SLACK_S or e["session_id"] != latest.get(e["user_id"]):
            continue  # not due yet when the run ended, or moved by a later booking
        mine = [cb for cb in by_user[e["user_id"]] if _booked_for(cb, e["callback_at"])]
        if not mine:
            continue  # reported under (b)
        if datetime.fromisoformat(mine[0]["due_at"]).timestamp() > end_wall - CALLBACK_SLACK_S:
            continue  # moved by the compliance gate to a time after the run
        if mine[0]["status"] == "scheduled" or mine[0]["status"] == "cancelled":
            report.violations.append(
                Violation("c", f"callback for customer {e['user_id']} due {e['callback_at']} still {mine[0]['status']}")
            )
    # Rung from the callbacks queue: an offer whose session placed no call (its dial refused, or
    # never made while the replica was away) left the callback open, and it is offered again.
    dialled = {s["id"] for s in final.get("call_sessions", []) if s.get("dialled")}
    offers = Counter(
        e["user_id"]
        for e in events
        if e["ev"] == "next_call" and _ok(e) and e.get("queue") == "callbacks" and e.get("session_id") in dialled
    )
    booked = Counter(
        e["user_id"] for e in events if e["ev"] == "outcome" and _ok(e) and e.get("disposition") == CALLBACK
    )
    for user, n in offers.items():
        if n > booked.get(user, 0):
            report.violations.append(
                Violation("c", f"customer {user} rung from the callbacks queue {n}× for {booked.get(user, 0)} booked")
            )


def _queues(events: list[dict[str, Any]], final: dict[str, Any], report: Report) -> None:
    """(d) Once the run is quiet (agents stopped, sessions closed, CDC settled), a rebuild changes nothing: what CDC and
    the product's own paths did equals a fresh computation. The harness runs two: the first refills
    what a late Redis flush lost (a rebuild's job, so the first rebuild after a flush is exempt and
    counted as ``refilled``), the second is the check. Rebuilds during the run (the schedule's) are
    reported, not judged: while a fault holds CDC back they count changes still in flight as drift,
    and lag cannot be told from loss there; a change lost for good shows at the end. The DLQ holds no
    change (the writers make only valid ones)."""
    if final.get("drift_total") is None:
        report.violations.append(Violation("d", "the final rebuild did not report (no drift measured)"))
    flushed = False
    quiet = False
    seen: set[Any] = set()
    for e in events:
        if e["ev"] == "fault_start" and e.get("kind") == "flush_redis":
            flushed = True
        elif e["ev"] == "stopping":
            quiet = True
        elif e["ev"] == "rebuild_report" and e.get("run_id") not in seen:
            seen.add(e.get("run_id"))
            if flushed:
                report.refilled += int(e.get("drift_total") or 0)
                flushed = False
            elif not quiet:
                report.drift_during_run.append(
                    {"run_id": e.get("run_id"), "t": e["t"], "drift_total": e.get("drift_total")}
                )
            elif e.get("drift_total") and e.get("trigger") != "schedule":
                report.violations.append(
                    Violation(
                        "d", f"rebuild {e.get('run_id')} after the run drift {e['drift_total']}: {e.get('drift')}"
                    )
                )
    if final.get("drift_total") and final.get("rebuild_run_id") not in seen:
        report.violations.append(
            Violation("d", f"queues drift {final['drift_total']} from a fresh rebuild: {final.get('drift')}")
        )
    if final.get("dlq_messages", 0):
        report.violations.append(Violation("d", f"{final['dlq_messages']} change(s) in the CDC DLQ"))


def _agents(events: list[dict[str, Any]], final: dict[str, Any], report: Report) -> None:
    """(e) At the end every agent is free, or busy with a lease and a session the API can show; none
    was left unable to finish (the harness logs ``agent_stuck`` when an agent could not get back to
    a free state)."""
    for agent in final.get("agents", []):
        if agent.get("presence") in BUSY_PRESENCE and not (agent.get("lease") and agent.get("session")):
            report.violations.append(
                Violation("e", f"agent {agent['agent']} is {agent['presence']} without a lease or session")
            )
    for e in events:
        if e["ev"] == "agent_stuck":
            report.violations.append(Violation("e", f"agent {e['agent']} stuck: {e.get('why', '')}"))


def _rung_twice(final: dict[str, Any], report: Report) -> None:
    """(f) A number is rung at most once per call session that dialled it."""
    sessions = Counter(s["phone_e164"] for s in final.get("call_sessions", []) if s.get("dialled"))
    calls = Counter(
        c["to"]
        for c in final.get("emulator_calls", [])
        if (c.get("to") or "").startswith("+") and c.get("direction") in (None, "outbound-api")
    )
    for number, n in calls.items():
        if n > sessions.get(number, 0):
            report.violations.append(
                Violation("f", f"…{number[-3:]} rung {n}× for {sessions.get(number, 0)} dialled session(s)")
            )


def _recoveries(events: list[dict[str, Any]], report: Report) -> None:
    """(g) From the end of each fault to the first next-call that gave an agent a customer."""
    offers = sorted(e["t"] for e in events if e["ev"] == "next_call" and _ok(e) and e.get("session_id"))
    for e in events:
        if e["ev"] != "fault_end":
            continue
        report.faults[e["kind"]] += 1
        i = bisect.bisect_right(offers, e["t"])
        seconds = offers[i] - e["t"] if i < len(offers) else None
        report.recoveries.append(Recovery(e["kind"], e.get("started", e["t"]), e["t"], seconds))


def main(argv: list[str] | None = None) -> int:
    """Judge one run's log; given several, judge each on its own (invariants hold per run) and add
    the recovery table over all of their faults (runs of the same command make one sample)."""
    paths = [Path(a) for a in (argv if argv is not None else sys.argv[1:])]
    reports = [check(read_log(path)) for path in paths]
    if len(reports) == 1:
        print(json.dumps(reports[0].to_json(), indent=2))
    else:
        runs: dict[str, Any] = {str(path): report.to_json() for path, report in zip(paths, reports, strict=True)}
        runs["recovery_across_runs"] = recovery_table([r for report in reports for r in report.recoveries])
        print(json.dumps(runs, indent=2))
    return 0 if all(report.ok for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
