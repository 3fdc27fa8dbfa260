"""Stage the rebuild's id ranges in processes of their own, so that every core works on them.

A range is CPU work in Python (decoding the replica rows, placement, packing the Redis commands). In
the Temporal worker's process the ranges ran one after another on one core, whatever the number of
activities in flight, and held the event loop that also runs call sessions and callbacks. Here each
process of the pool stages a whole range -- replica read, phones, dialler facts, placement, Redis
staging -- and hands back only the counts (and its split timer); the worker's loop just awaits the
result.

The processes are started (``spawn``: nothing is inherited from the worker but the settings) by the
first rebuild and stay up until :meth:`RebuildPool.close`, because a Python process takes a second or
more to import the stack. Each opens its own stores once, on an event loop that lives as long as the
process, and closes them when the pool shuts it down. A process also exits if the worker process
dies, so a killed worker leaves no orphan behind.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import multiprocessing.util
import os
import signal
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from dialler.config import Settings
from dialler.queues.engine import QueueEngine
from dialler.queues.rebuild import StageRangeInput, StageRangeResult, stage_range
from dialler.runtime import Stores


class RebuildPool:
    """Processes that stage rebuild ranges. Started lazily; :meth:`close` (or :meth:`running`) stops them."""

    def __init__(self, settings: Settings, processes: int | None = None) -> None:
        self.settings = settings
        self.processes = processes or settings.rebuild_processes or os.cpu_count() or 1
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False

    async def stage(self, input: StageRangeInput, *, now: datetime) -> StageRangeResult:
        """Stage one range in a process of the pool (queued behind the others when all are busy)."""
        executor = self._pool()
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, _stage, input, now)
        except BrokenProcessPool:
            # A process died (killed, out of memory): this pool is unusable, the next range starts a
            # fresh one, and Temporal retries this range.
            self._discard(executor)
            raise

    def warm(self) -> None:
        """Start every process now, in the background (nothing waits for it), so that the first
        rebuild does not pay for their imports."""
        executor = self._pool()
        for _ in range(self.processes):
            executor.submit(_ready)

    def close(self) -> None:
        """Stop the processes, after the range each is staging; blocks until they have exited."""
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Keeps the pool for as long as the block runs (the worker's lifetime); closes it on the way out."""
        try:
            yield
        finally:
            await asyncio.to_thread(self.close)

    def _pool(self) -> ProcessPoolExecutor:
        if self._closed:
            raise RuntimeError("the rebuild pool is closed")
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_process,
                initargs=(self.settings,),
            )
        return self._executor

    def _discard(self, executor: ProcessPoolExecutor) -> None:
        if self._executor is executor:
            self._executor = None
        executor.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- in the pool's processes


@dataclass
class _Process:
    loop: asyncio.AbstractEventLoop
    stores: Stores
    engine: QueueEngine


_process: _Process | None = None


def _start_process(settings: Settings) -> None:
    global _process
    # Ctrl-C reaches the whole process group: the worker stops the pool itself, after the running range.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, name="exit-with-parent", daemon=True).start()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    stores = Stores.open(settings)
    engine = QueueEngine(stores.redis, prefix=settings.redis_prefix, lease_ttl_s=settings.lease_ttl_s)
    _process = _Process(loop, stores, engine)
    # The imported stack never becomes garbage: keep the collector from walking it during every range.
    gc.freeze()
    # Runs when the pool stops this process (multiprocessing's exit hook), not when it is killed.
    multiprocessing.util.Finalize(None, _stop_process, exitpriority=10)


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()  # returns when the worker process has gone, however it went
        os._exit(1)


def _stop_process() -> None:
    global _process
    if _process is not None:
        process, _process = _process, None
        process.loop.run_until_complete(process.stores.close())
        process.loop.close()


def _ready() -> None:
    """Nothing: submitted by :meth:`RebuildPool.warm` to make the pool start a process."""


def _stage(input: StageRangeInput, now: datetime) -> StageRangeResult:
    if _process is None:
        raise RuntimeError("rebuild pool process not initialised")
    # A range allocates a few hundred thousand short-lived objects with no cycles among them: the
    # collector's passes over them (a fifth of placement's time) find nothing. Reference counting
    # frees them; anything cyclic waits for the next collection, after the range.
    gc.disable()
    try:
        return _process.loop.run_until_complete(stage_range(_process.stores, _process.engine, input, now=now))
    finally:
        gc.enable()
