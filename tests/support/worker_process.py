"""The real worker (``python -m workers.worker``) in a process of its own, for tests that kill it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from devstack import services
from dialler.config import PROJECT_ROOT, Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """``DIALLER_*`` variables that make a process's ``Settings()`` equal ``settings`` (every field
    that differs from its default)."""
    env: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        value: Any = getattr(settings, name)
        if value == field.default:
            continue
        if isinstance(value, SecretStr):
            if value.get_secret_value() == field.default.get_secret_value():
                continue
            value = value.get_secret_value()
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, list | dict):
            value = json.dumps(value)
        elif value is None:
            value = ""
        env[f"DIALLER_{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    """One worker process, started with ``settings``; its log is ``log``."""

    def __init__(self, group: services.ProcessGroup, name: str, settings: Settings) -> None:
        # No metrics endpoint: its default port is the machine's, and two workers may overlap here.
        quiet = {"DIALLER_WORKER_METRICS_ADDRESS": "", "DIALLER_LOG_LEVEL": "INFO"}
        env = {**quiet, **settings_env(settings), "PYTHONPATH": str(PROJECT_ROOT)}
        self.log: Path = group.log_path(name)
        self.proc: subprocess.Popen[bytes] = group.start(name, [sys.executable, "-m", "workers.worker"], env=env)

    def logged(self, text: str) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the worker exited ({self.proc.returncode}): {self.tail()}")
        return self.log.exists() and text in self.log.read_text(errors="replace")

    def wait_logged(self, text: str, within_s: float = 60.0) -> None:
        deadline = time.monotonic() + within_s
        while not self.logged(text):
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker did not log {text!r} within {within_s} s: {self.tail()}")
            time.sleep(0.05)

    def kill(self) -> int:
        """SIGKILL: no clean-up, no goodbye to Temporal, connections dropped by the kernel."""
        os.kill(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(timeout=10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
