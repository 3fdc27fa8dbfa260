"""The rebuild pool stages ranges in processes of their own, exactly as the worker process would, and
leaves no process behind: not when it is closed, not when a process dies, not when the worker is killed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime

import psutil
import pytest

from devstack.seed import seed_replica
from dialler.config import PROJECT_ROOT
from dialler.queues.rebuild import StageRangeInput, stage_range
from dialler.queues.rebuild_pool import RebuildPool
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.live_api import eventually


def pool_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())]


async def staged(stores: Stores, run_id: str) -> dict[str, object]:
    """Everything a run staged: the three queues with scores and the metadata structures."""
    keys = queue_engine(stores).keys.staging(run_id)
    redis = stores.redis
    return {
        **{q: await redis.zrange(q, 0, -1, withscores=True) for q in keys.queues},
        "not_before": await redis.hgetall(keys.not_before),
        "vulnerable": await redis.smembers(keys.vulnerable),
        "reservations": await redis.hgetall(keys.reservations),
    }


async def test_a_range_staged_in_the_pool_is_staged_as_in_the_worker(stores: Stores, replica_url: str) -> None:
    await seed_replica(replica_url, users=600, seed=13)
    engine = queue_engine(stores)
    now = datetime.now(UTC)
    ranges = [StageRangeInput("run-pool", 1, 250), StageRangeInput("run-pool", 251, 600)]
    await engine.begin_rebuild("run-pool")
    pool = RebuildPool(stores.settings, processes=2)
    try:
        in_pool = [await pool.stage(r, now=now) for r in ranges]
        again = await pool.stage(ranges[0], now=now)  # an activity retry: the same range once more
        children = pool_processes()
        assert len(children) in (1, 2)
    finally:
        pool.close()
    in_worker = [await stage_range(stores, engine, StageRangeInput("run-here", r.lo, r.hi), now=now) for r in ranges]

    assert [(r.queued, r.not_queued, r.deferred) for r in in_pool] == [
        (r.queued, r.not_queued, r.deferred) for r in in_worker
    ]
    assert (again.queued, again.not_queued) == (in_pool[0].queued, in_pool[0].not_queued)
    assert set(in_pool[0].seconds) == {"replica", "phones", "dialler_facts", "placement", "redis_staging"}
    here, there = await staged(stores, "run-here"), await staged(stores, "run-pool")
    assert list(here.values()) == list(there.values())
    assert sum(len(v) for v in list(here.values())[:3]) == sum(sum(r.queued.values()) for r in in_worker) > 0
    # closed: its processes have exited, and it takes no more work
    psutil.wait_procs(children, timeout=10)
    assert not any(p.is_running() for p in children)
    with pytest.raises(RuntimeError):
        await pool.stage(ranges[0], now=now)


async def test_a_dead_process_breaks_one_call_and_the_next_gets_a_fresh_pool(stores: Stores, replica_url: str) -> None:
    await seed_replica(replica_url, users=50, seed=17)
    await queue_engine(stores).begin_rebuild("run-dead")
    pool = RebuildPool(stores.settings, processes=1)
    now = datetime.now(UTC)
    try:
        await pool.stage(StageRangeInput("run-dead", 1, 50), now=now)
        (victim,) = pool_processes()
        victim.kill()
        victim.wait(10)
        with pytest.raises(BrokenProcessPool):
            await pool.stage(StageRangeInput("run-dead", 1, 50), now=now)
        result = await pool.stage(StageRangeInput("run-dead", 1, 50), now=now)  # Temporal's retry
        assert sum(result.queued.values()) + sum(result.not_queued.values()) == 50
    finally:
        pool.close()
    assert pool_processes() == []


def test_the_pool_processes_exit_when_the_worker_process_is_killed() -> None:
    script = textwrap.dedent(
        """
        import time
        from dialler.config import Settings
        from dialler.queues.rebuild_pool import RebuildPool

        executor = RebuildPool(Settings(_env_file=None), processes=2)._pool()
        for f in [executor.submit(time.sleep, 0.5) for _ in range(2)]:  # both processes start
            f.result()
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        children = psutil.Process(worker.pid).children(recursive=True)
        assert len([p for p in children if "spawn_main" in " ".join(p.cmdline())]) == 2
        worker.kill()  # SIGKILL: no shutdown code runs in the worker
        worker.wait(10)
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == []
    finally:
        if worker.poll() is None:
            worker.kill()


async def test_a_warm_pool_starts_its_processes_before_the_first_range(stores: Stores) -> None:
    """The production worker warms its pool at start-up: the first rebuild does not pay for the imports."""
    before = {p.pid for p in pool_processes()}
    pool = RebuildPool(stores.settings, processes=2)
    pool.warm()
    try:
        # Started by warm() itself; a child shows its spawn command line only once it has exec'd,
        # which a loaded machine can delay past the first look.
        async def both_started() -> list[psutil.Process] | None:
            started = [p for p in pool_processes() if p.pid not in before]
            return started if len(started) >= 2 else None

        started = await eventually(both_started, within=10, every=0.05)
        assert len(started) == 2
    finally:
        pool.close()
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in started)
