"""The call-session bench's short mode (``bench/call_sessions.py --quick``): a few sessions through
its own stack (API, the real worker, the Twilio emulator, Temporal, MariaDB) and the bare Temporal
shape against the same server, in one invocation.

Correctness only, never timings (a shared machine makes any time bound flaky): every session of both
cases completes and the report carries the ratio of their CPU per session. The full-size numbers are
docs/PERFORMANCE.md §5."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_quick_mode_completes_every_session_of_both_cases_and_reports_the_ratio() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "call_sessions.py"), "--quick", "--disposition", "not_interested"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]  # the bench exits 1 when a session of either case is missing
    assert re.search(r"^\| sessions completed \| 12 of 12 \|", output, re.M), output[-4000:]
    bare = re.search(r"^  bare round 1: ([\d.]+) sessions/s, (\d+) ms CPU per session", output, re.M)
    assert bare and float(bare[1]) > 0 and int(bare[2]) > 0, output[-4000:]
    ratio = re.search(r"^\| \*\*ratio of CPU per session, product ÷ bare\*\* \| \*\*([\d.]+)×\*\* \|", output, re.M)
    assert ratio and float(ratio[1]) > 0, output[-4000:]
