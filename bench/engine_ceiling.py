"""The Temporal engine's ceiling on this machine for a bare call-session shape, with none of the product.

    .venv/bin/python bench/engine_ceiling.py [--sessions 1000] [--in-flight 100] [--local] [--unsandboxed]

The shape is LOCAL-STACK.md's: start, one signal, three trivial activities, one update with a validator,
done. Same dev server as the other benches (WAL, synchronous off), one worker in this process. What a
real session adds (webhooks through the API, database and Redis writes, the agent's HTTP requests) can
only make it slower: this is the number ``bench/call_sessions.py`` is measured against.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

import psutil
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._bare_session import BareSession, step  # noqa: E402
from bench._stack import RssSampler, Stack, exit_now, load, machine, percentile  # noqa: E402


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--in-flight", type=int, default=100)
    p.add_argument("--local", action="store_true", help="the three activities as local activities")
    p.add_argument("--unsandboxed", action="store_true", help="run the workflow without the SDK sandbox")
    args = p.parse_args()
    print(f"machine: {machine()}; load at start {load()}", flush=True)
    async with Stack(temporal=True) as stack:
        client = stack.env.client
        queue = f"ceiling-{uuid.uuid4().hex[:8]}"
        extra = {"workflow_runner": UnsandboxedWorkflowRunner()} if args.unsandboxed else {}
        worker = Worker(client, task_queue=queue, workflows=[BareSession], activities=[step], **extra)
        gate = asyncio.Semaphore(args.in_flight)
        cycles: list[float] = []

        async def one(i: int) -> None:
            async with gate:
                t0 = time.perf_counter()
                handle = await client.start_workflow(
                    BareSession.run, args.local, id=f"bare-{queue}-{i}", task_queue=queue
                )
                await handle.signal(BareSession.dial)
                await handle.execute_update(BareSession.submit_outcome, "docs_promised")
                await handle.result()
                cycles.append(time.perf_counter() - t0)

        temporal_pid = next((c.pid for c in psutil.Process().children(recursive=True) if "temporal" in c.name()), None)
        pids = {"bench (worker + driver)": os.getpid()} | ({"temporal": temporal_pid} if temporal_pid else {})
        async with worker:
            with RssSampler(pids) as sampler:
                t0 = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(args.sessions)))
                wall = time.perf_counter() - t0
        kind = f"{'local' if args.local else 'regular'} activities, {'un' if args.unsandboxed else ''}sandboxed"
        print(f"\n## Engine ceiling: bare session ({kind}), {args.sessions} sessions, {args.in_flight} in flight\n")
        print("| metric | value |\n|---|---|")
        print(f"| **throughput** | **{len(cycles) / wall:.1f} sessions/s** ({len(cycles)} in {wall:.1f} s) |")
        print(f"| cycle p50 / p99 | {percentile(cycles, 50):.2f} / {percentile(cycles, 99):.2f} s |")
        for name in pids:
            print(
                f"| {name}: CPU | {sampler.cpu[name]:.1f} s ({1000 * sampler.cpu[name] / len(cycles):.0f} ms per session) |"
            )
        print(f"| load average at end | {load()} |")
    return 0


if __name__ == "__main__":
    exit_now(asyncio.run(main()))
