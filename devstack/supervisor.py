"""Keeps the local stack's own processes (worker, API, publisher) running: one that exits is started
again after a back-off, with one line saying so. Only a process that keeps crashing (``max_crashes``
exits within ``window_s``) stops the stack, with one line saying which and where its log is.

The processes are built to be restarted: the worker's workflows resume from Temporal, the
publisher from its checkpoint, the API holds no state. (Production runs them under compose's
``restart:``; this is the same for ``make run``.)"""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TextIO

from devstack.services import ProcessGroup


@dataclass
class _Watch:
    crashes: collections.deque[float] = field(default_factory=collections.deque)
    restart_at: float | None = None  # when the exited process is due to start again
    backoff_s: float = 0.0


class Supervisor:
    def __init__(
        self,
        group: ProcessGroup,
        names: Iterable[str],
        *,
        max_crashes: int = 5,
        window_s: float = 60.0,
        initial_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.group = group
        self.watches = {name: _Watch() for name in names}
        self.max_crashes = max_crashes
        self.window_s = window_s
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.out = out or sys.stderr
        self.clock = clock
        self.restarts = 0

    def poll(self) -> str | None:
        """Look at every process once: note exits, restart those due. Returns why the stack must
        stop (a process that keeps crashing, or an unsupervised one that exited), else None."""
        now = self.clock()
        for name, proc in list(self.group.started):
            watch = self.watches.get(name)
            if proc.poll() is None:
                continue
            log = self.group.log_path(name)
            if watch is None:
                return f"{name} exited with code {proc.returncode}; see {log}"
            if watch.restart_at is None:
                watch.restart_at = self._crashed(watch, now)
                if watch.restart_at is None:
                    return (
                        f"{name} exited with code {proc.returncode}: {self.max_crashes} crashes within "
                        f"{self.window_s:.0f} s, stopping the stack; see {log}"
                    )
                self._say(
                    f"{name} exited with code {proc.returncode}; restarting it in {watch.backoff_s:.1f} s "
                    f"(crash {len(watch.crashes)} of {self.max_crashes} allowed in {self.window_s:.0f} s); see {log}"
                )
            if now >= watch.restart_at:
                watch.restart_at = None
                self.group.restart(name)
                self.restarts += 1
        return None

    def _crashed(self, watch: _Watch, now: float) -> float | None:
        watch.crashes.append(now)
        while watch.crashes and watch.crashes[0] < now - self.window_s:
            watch.crashes.popleft()
        if len(watch.crashes) >= self.max_crashes:
            return None
        # The back-off doubles with each crash still in the window (a crash loop does not spin);
        # once the earlier crashes are older than the window it is short again.
        watch.backoff_s = min(self.initial_backoff_s * 2 ** (len(watch.crashes) - 1), self.max_backoff_s)
        return now + watch.backoff_s

    def _say(self, line: str) -> None:
        self.out.write(line + "\n")  # the one line a restart prints, to the terminal the stack runs in
        self.out.flush()
