"""The production worker (``python -m workers.worker``) in its own process, for tests that kill it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from dialler.config import PROJECT_ROOT, Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``DIALLER_*`` environment a process reads them back from."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        text: Any = value
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | tuple | set | dict):
            text = json.dumps(sorted(value) if isinstance(value, set) else value)
        env[f"DIALLER_{name.upper()}"] = str(text)
    return env


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """``python -m workers.worker`` with ``settings``, its output in ``log``; no metrics endpoint (its
    default port may be another worker's on this machine)."""
    env = {
        **os.environ,
        **settings_env(settings),
        "DIALLER_WORKER_METRICS_ADDRESS": "",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.worker"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
