"""The CDC bench's short mode (``bench/cdc_latency.py --quick``): every case on a small data set through
its own stack (MariaDB with row binlog, moto SQS, Temporal, the real publisher and worker processes).

Correctness only, never timings (a shared machine makes any time bound flaky): every change committed
is applied (records counted == rows changed), and every customer a case touched sits in the queue a
fresh placement from the replica's rows puts them in. The bench itself raises when either fails; this
test also reads its report lines. The full-size numbers are docs/PERFORMANCE.md §6."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_quick_mode_applies_every_change_and_places_every_customer_as_a_fresh_placement_would() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "cdc_latency.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]

    applied = dict(re.findall(r"^(direct|sustained|bulk) run 1: .*; applied ([\d,]+ of [\d,]+)", output, re.M))
    assert set(applied) == {"direct", "sustained", "bulk"}, output[-4000:]
    for case, counts in applied.items():
        done_, committed = (int(n.replace(",", "")) for n in counts.split(" of "))
        assert done_ == committed > 0, f"{case}: {counts}"
    assert re.search(r"^apply run 1: [\d,]+ records/s", output, re.M), output[-4000:]
    decoded = re.search(r"^\| single-row transactions \| ([\d,]+) \|", output, re.M)
    assert decoded and int(decoded[1].replace(",", "")) == 1_000  # the sustained case's rows, all decoded
