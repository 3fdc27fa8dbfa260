"""The real Temporal worker in a process of its own, so that a test can SIGKILL it (no shutdown code
runs, as when a machine dies) and start another later on the same task queue.

The child is ``python -m tests.support.killable_worker <settings file>``: the test's Settings (pickled:
its secrets included), the production ``build_worker`` with every workflow and activity, and the
simulated carrier every e2e test uses (calls answer after a short ring and talk until hung up). It
prints ``ready`` once it polls."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from dialler.config import PROJECT_ROOT, Settings

READY = "ready"


class WorkerProcess:
    def __init__(self, settings: Settings, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.settings_file = run_dir / "worker-settings.pickle"
        self.settings_file.write_bytes(pickle.dumps(settings))
        self.process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60) -> None:
        assert self.process is None or self.process.poll() is not None, "a worker process is already running"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.killable_worker", str(self.settings_file)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = _readline(self.process, timeout)
        if line.strip() != READY:
            self.kill()
            raise RuntimeError(f"the worker process did not start (it said {line!r})")

    def kill(self) -> None:
        """SIGKILL: the worker stops at once, mid-task, with nothing handed back."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def __enter__(self) -> WorkerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _readline(process: subprocess.Popen[str], timeout: float) -> str:
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline()


async def _serve(settings: Settings) -> None:
    from dialler.integrations.simulated import CallOutcome, CallPlan, CallScript, SimulatedTelephony
    from dialler.runtime import Stores, connect_temporal
    from workers.worker import build_worker

    client = await connect_temporal(settings)
    stores = Stores.open(settings)
    http = httpx.AsyncClient(timeout=10)
    telephony = SimulatedTelephony(settings, http, CallScript(CallPlan(CallOutcome.ANSWERED, ring_s=0.3, talk_s=120)))
    async with build_worker(client, stores, telephony):
        print(READY, flush=True)
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    loaded: Settings = pickle.loads(Path(sys.argv[1]).read_bytes())
    asyncio.run(_serve(loaded))
