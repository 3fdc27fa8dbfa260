"""The Temporal engine's ceiling on this machine for a bare call-session shape, with none of the product.

    .venv/bin/python bench/engine_ceiling.py [--sessions 1000] [--in-flight 100] [--local] [--unsandboxed]

The shape is LOCAL-STACK.md's: start, one signal, three trivial activities, one update with a validator,
done. Same dev server as the other benches (WAL, synchronous off), one worker in this process. What a
real session adds (webhooks through the API, database and Redis writes, the agent's HTTP requests) can
only make it slower: this is the number ``bench/call_sessions.py`` is measured against (it runs the
same shape in its own invocation and prints the ratio).

Besides throughput and CPU it reports how long ``execute_update`` took (the server logs a "Slow gRPC
call" for any over 5 s) and, from a sample of histories, how long workflow tasks waited in the task
queue (scheduled → started) and on the worker (started → completed): with too many sessions in
flight for one worker, updates wait in the queue (docs/PERFORMANCE.md §5).
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
        updates: list[float] = []  # how long execute_update took (the server's UpdateWorkflowExecution)

        async def one(i: int) -> None:
            async with gate:
                t0 = time.perf_counter()
                handle = await client.start_workflow(
                    BareSession.run, args.local, id=f"bare-{queue}-{i}", task_queue=queue
                )
                await handle.signal(BareSession.dial)
                t1 = time.perf_counter()
                await handle.execute_update(BareSession.submit_outcome, "docs_promised")
                updates.append(time.perf_counter() - t1)
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
        slow = sum(u >= 5 for u in updates)
        print(
            f'| update (execute_update) p50 / p99 / max; ≥ 5 s (the server\'s "Slow gRPC call") | '
            f"{percentile(updates, 50):.2f} / {percentile(updates, 99):.2f} / {max(updates):.2f} s; {slow} |"
        )
        waits = await task_waits(
            client, [f"bare-{queue}-{i}" for i in range(0, args.sessions, max(1, args.sessions // 50))]
        )
        for name, xs in waits.items():
            print(f"| {name} p50 / p99 / max | {percentile(xs, 50):.2f} / {percentile(xs, 99):.2f} / {max(xs):.2f} s |")
        for name in pids:
            print(
                f"| {name}: CPU | {sampler.cpu[name]:.1f} s ({1000 * sampler.cpu[name] / len(cycles):.0f} ms per session) |"
            )
        print(f"| load average at end | {load()} |")
    return 0


async def task_waits(client, workflow_ids: list[str]) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    """From a sample of histories: how long each workflow task waited in the task queue for the worker
    (scheduled → started) and how long the worker took with it (started → completed), for every task
    and for the one that accepted the update."""
    from temporalio.api.enums.v1 import EventType

    waits: dict[str, list[float]] = {
        "workflow task: queued (scheduled → started)": [],
        "workflow task: on the worker (started → completed)": [],
        "the update's workflow task: queued": [],
        "the update's workflow task: on the worker": [],
    }
    for workflow_id in workflow_ids:
        events = (await client.get_workflow_handle(workflow_id).fetch_history()).events
        at = {e.event_id: e.event_time.ToDatetime() for e in events}
        for i, e in enumerate(events):
            if e.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                continue
            done = e.workflow_task_completed_event_attributes
            started = events[[x.event_id for x in events].index(done.started_event_id)]
            queued = (at[done.started_event_id] - at[done.scheduled_event_id]).total_seconds()
            worked = (at[e.event_id] - at[started.event_id]).total_seconds()
            waits["workflow task: queued (scheduled → started)"].append(queued)
            waits["workflow task: on the worker (started → completed)"].append(worked)
            following = events[i + 1] if i + 1 < len(events) else None
            if (
                following is not None
                and following.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
            ):
                waits["the update's workflow task: queued"].append(queued)
                waits["the update's workflow task: on the worker"].append(worked)
    return waits


if __name__ == "__main__":
    exit_now(asyncio.run(main()))
