"""make run heals: a crashed app process (worker, API, publisher) is started again with one line
saying so; only one that keeps crashing stops the stack."""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from pathlib import Path

from devstack.services import ProcessGroup
from devstack.stack import APP_PROCESSES
from devstack.supervisor import Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
CRASHER = [sys.executable, "-c", "raise SystemExit(3)"]


def poll_until(supervisor: Supervisor, check, within: float = 10.0) -> str | None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        failure = supervisor.poll()
        if failure is not None or check():
            return failure
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_a_sigkilled_worker_is_restarted_with_one_line(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path, die_with_parent=True)
    out = io.StringIO()
    try:
        group.start("mariadb", SLEEPER)  # a service under the app: not restarted
        first = group.start("worker", SLEEPER)
        supervisor = Supervisor(group, APP_PROCESSES, initial_backoff_s=0.2, out=out)
        assert supervisor.poll() is None

        os.kill(first.pid, signal.SIGKILL)
        failure = poll_until(supervisor, lambda: dict(group.started)["worker"].pid != first.pid)
        assert failure is None
        second = dict(group.started)["worker"]
        assert second.poll() is None  # running again
        assert [name for name, _ in group.started] == ["mariadb", "worker"]  # the stop order kept
        assert (tmp_path / "pids" / "worker.pid").read_text() == str(second.pid)
        lines = out.getvalue().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("worker exited with code -9; restarting it in 0.2 s")
        assert str(group.log_path("worker")) in lines[0]

        # Killed again: restarted again, still one line per crash.
        os.kill(second.pid, signal.SIGKILL)
        poll_until(supervisor, lambda: dict(group.started)["worker"].pid != second.pid)
        assert len(out.getvalue().splitlines()) == 2
    finally:
        group.stop_all(timeout=2)


def test_a_process_that_keeps_crashing_stops_the_stack_with_the_reason(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path, die_with_parent=True)
    out = io.StringIO()
    try:
        group.start("publisher", CRASHER)
        supervisor = Supervisor(group, APP_PROCESSES, max_crashes=3, initial_backoff_s=0.01, out=out)
        failure = poll_until(supervisor, lambda: False)
        assert failure is not None
        assert failure.startswith("publisher exited with code 3: 3 crashes within 60 s, stopping the stack")
        assert supervisor.restarts == 2
        assert len(out.getvalue().splitlines()) == 2  # the two restarts, each said once
    finally:
        group.stop_all(timeout=2)


def test_a_service_under_the_app_exiting_still_stops_the_stack(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path, die_with_parent=True)
    try:
        proc = group.start("temporal", SLEEPER)
        supervisor = Supervisor(group, APP_PROCESSES, out=io.StringIO())
        os.kill(proc.pid, signal.SIGKILL)
        failure = poll_until(supervisor, lambda: False)
        assert failure is not None and failure.startswith("temporal exited with code -9; see ")
    finally:
        group.stop_all(timeout=2)
