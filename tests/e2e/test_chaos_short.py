"""The short chaos run (issue 19): the whole product on its own services, three agents working through
the HTTP API against the Twilio emulator while CDC writers change the replica, and one fault of every
kind (SIGKILL of the API, the worker and the publisher; Temporal stopped and started; the worker
paused past the lease TTL; Redis flushed; the replica unreachable). The checker must find no
violation of invariants (a)-(f), and next-call must work again after every fault.

The harness runs as its own process (bench/chaos.py, the same code as ``make chaos``), as an operator
would run it; it starts and stops everything by PID. The full run and its numbers: docs/RELIABILITY.md."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.chaos import FAULT_KINDS
from bench.chaos_check import INVARIANTS, check, read_log

ROOT = Path(__file__).resolve().parents[2]
SHORT = [
    "--agents", "3", "--users", "300", "--minutes", "1",
    "--faults-each", "1", "--replica-outage-s", "10", "--lease-ttl-s", "10",
    "--rebuild-interval-s", "60", "--gap-s", "2", "3", "--recovery-timeout-s", "45",
]  # fmt: skip


def test_short_chaos_run_finds_no_violation_and_recovers_from_every_fault(tmp_path: Path) -> None:
    out = tmp_path / "chaos"
    harness = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), *SHORT, "--seed", "19", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # About 3 minutes on an idle machine; the slack is for a loaded one.
        stdout, stderr = harness.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        harness.terminate()  # it stops everything it started, by PID
        stdout, stderr = harness.communicate(timeout=60)
    run = subprocess.CompletedProcess(harness.args, harness.returncode, stdout, stderr)
    events = read_log(out / "chaos.jsonl")
    report = check(events)
    if not report.ok or run.returncode != 0:  # keep the evidence: pytest's tmp dirs are rotated away
        shutil.copytree(out, ROOT / ".run" / "chaos" / f"short-failed-{os.getpid()}", dirs_exist_ok=True)
    details = "\n".join(str(v) for v in report.violations) or run.stderr[-3000:]
    assert run.returncode == 0, details
    assert {i: report.count(i) for i in INVARIANTS} == dict.fromkeys(INVARIANTS, 0), details
    assert json.loads((out / "report.json").read_text())["violations"] == dict.fromkeys(INVARIANTS, 0)

    # Every kind of fault was injected, and after each one an agent got a customer again.
    assert set(report.faults) == set(FAULT_KINDS)
    assert all(r.seconds is not None for r in report.recoveries), report.recoveries
    # The kills were real: the supervisor saw each process die of SIGKILL and started it again.
    restarts = [e["line"] for e in events if e["ev"] == "supervisor"]
    for name in ("api", "worker", "publisher"):
        assert any(line.startswith(f"{name} exited with code -9") for line in restarts), restarts
    # The agents did real work around the faults: customers offered, outcomes recorded.
    assert report.assignments >= 5
    assert report.outcomes_2xx >= 5
