"""The TPS load bench's short mode (``bench/tps_load.py --quick``): a few thousand lines through the
whole upload path on its own stack (PostgreSQL database, MariaDB replica, Redis prefix).

Correctness only, never timings (a shared machine makes any time bound flaky): every valid line is
listed, the reload lists nothing new, and every customer whose number was on the file has left the
queues. The full-size numbers are docs/PERFORMANCE.md §8."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_quick_mode_lists_the_file_and_takes_its_customers_out_of_the_queues() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "tps_load.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]  # the bench exits 1 when a listed customer is still queued
    first = re.search(r"^run 1 first load: .* listed ([\d,]+), already listed 0, invalid ([\d,]+)", output, re.M)
    assert first, output[-4000:]
    assert int(first[1].replace(",", "")) + int(first[2].replace(",", "")) == 3_000, output[-4000:]
    assert re.search(r"^run 1 reload: .* listed 0, already listed " + re.escape(first[1]) + ",", output, re.M)
    replaced = re.search(r"^run 1 first load: .* customers re-placed ([\d,]+)", output, re.M)
    assert replaced and int(replaced[1]) > 0, output[-4000:]
    assert re.search(r"^run 1: customers with a listed number in a queue: before [1-9][\d,]*, after 0$", output, re.M)
