"""Benchmark of call sessions completed per second, end to end.

    .venv/bin/python bench/call_sessions.py [--sessions 400] [--agents 50] [--ring 0.2] [--talk 0.5] [--repeat 3]
    .venv/bin/python bench/call_sessions.py --quick    (a few sessions, one round: what tests/bench runs)

Services as in bench/api_next_call.py (private MariaDB seeded with ``--users`` and queued by the
product's recompute, Temporal dev server with WAL, ``bench_*`` PostgreSQL, ``bench:*`` Redis), plus
the API (uvicorn subprocess), the Twilio emulator (its own process) and the real worker
(bench/_worker.py subprocess: build_worker with the product's Twilio telephony; every call answers
after ``--ring`` s and the customer hangs up after ``--talk`` s; the emulator posts signed Twilio
webhooks to the live API and rings the agent's scripted phone, which accepts after 0.1 s).

Each of ``--agents`` agents loops over HTTP, as the agent UI does:
next-call -> dial -> the workspace's live poll (GET /agents/me/live with If-None-Match, at once after
each click, then every ``--poll`` s) until the call is in wrap_up -> POST outcome (docs_promised: the
update) -> the live poll until the agent is available with no call (the workflow has finished the
session, released the lease and requeued the customer with the attempt gap). A session is counted
complete at that moment. No think time: the agents click as soon as the screen allows. Throughput = completed sessions / wall time of the whole run (the ring and
talk time are inside it: with N agents the ceiling is N / (ring + talk + overheads)).
Reports sessions/s, per-session latency, CPU and RSS of the worker, API and Temporal server.

The yardstick runs in the same invocation, against the same Temporal server: the bare session of
bench/engine_ceiling.py (start, one signal, three trivial activities, one update with a validator;
bench/_bare_session.py) with a worker in this process and ``--agents`` sessions in flight. Each case
runs ``--repeat`` times, product and bare rounds alternating (so a change in the machine's load falls
on both), and the report gives the median and range of each and of the ratio of CPU per session
(every process the case uses, core-seconds / completed sessions: product ÷ bare). Both workers run
workflows as production does (unsandboxed, ``Settings.workflows_sandboxed``) unless ``--sandboxed``.
Exits 1 when a session is not completed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import ROOT, RssSampler, Stack, exit_now, load, machine, percentile  # noqa: E402
from bench.api_next_call import api_env, create_agents, sign_in, start_api, stop_api  # noqa: E402

steps: dict[str, list[float]] = {}  # per-step durations of completed sessions
workflow_ids: list[str] = []


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=400)
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--ring", type=float, default=0.2)
    p.add_argument("--talk", type=float, default=0.5)
    p.add_argument("--users", type=int, default=5_000)
    p.add_argument(
        "--disposition",
        default="docs_promised",
        help="the outcome every call gets (docs_promised also texts an upload link: two more workflows)",
    )
    p.add_argument(
        "--profile-worker",
        default=None,
        metavar="FILE",
        help="cProfile the worker's event loop thread into FILE and print its top functions",
    )
    p.add_argument("--poll", type=float, default=1.0, help="the workspace's poll interval (the UI's is 1 s)")
    p.add_argument("--api-workers", type=int, default=2, help="uvicorn worker processes of the API")
    p.add_argument(
        "--repeat", type=int, default=None, help="rounds of each case, alternating (default 3; 1 with --quick)"
    )
    p.add_argument("--sandboxed", action="store_true", help="run workflows in the SDK sandbox (development's mode)")
    p.add_argument("--quick", action="store_true", help="a short run: 12 sessions, 4 agents, 300 customers")
    args = p.parse_args()
    if args.quick:
        args.sessions, args.agents, args.users = 12, 4, 300
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    return args


def start_worker(stack: Stack, settings, args, extra: list[str] | None = None) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    log_path = stack.run_dir / "logs" / "worker.log"
    argv = [sys.executable, str(ROOT / "bench" / "_worker.py"), "--ring", str(args.ring), "--talk", str(args.talk)]
    proc = subprocess.Popen(
        argv + (extra or []),
        cwd=ROOT,
        env=api_env(settings),
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("worker exited: " + log_path.read_text()[-2000:])
        if log_path.exists() and "worker ready" in log_path.read_text():
            return proc
        time.sleep(0.1)
    raise RuntimeError("worker not ready in 30 s")


def stop_worker(proc: subprocess.Popen) -> None:
    from devstack.services import stop_pid

    stop_pid(proc.pid, timeout=25, proc=proc)


class Workspace:
    """One agent's screen: GET /agents/me/live with If-None-Match, as web/static/js/agent.js polls it
    (at once after each click, then every ``poll`` s)."""

    def __init__(self, http, headers: dict[str, str], poll: float, requests: list[int]) -> None:  # type: ignore[no-untyped-def]
        self.http, self.headers, self.poll, self.requests = http, headers, poll, requests
        self.etag: str | None = None
        self.live: dict = {}

    async def refresh(self) -> dict:
        self.requests[0] += 1
        headers = self.headers | ({"If-None-Match": self.etag} if self.etag else {})
        r = await self.http.get("/api/v1/agents/me/live", headers=headers)
        if r.status_code == 200:
            self.etag, self.live = r.headers.get("etag"), r.json()
        return self.live

    async def until(self, seen, timeout: float = 30) -> bool:  # type: ignore[no-untyped-def]
        """Refresh now, then every ``poll`` s, until ``seen(live)``."""
        deadline = time.monotonic() + timeout
        while not seen(await self.refresh()):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(self.poll)
        return True


def _call_state(live: dict) -> str | None:
    return (live.get("call") or {}).get("state")


async def agent_loop(
    http, headers, quota: list[int], done: list[float], errors: Counter, args, requests: list[int]
) -> None:  # type: ignore[no-untyped-def]
    """One agent's sessions until the round's quota is taken. A request that fails at the transport
    (the API dropped the connection) ends this agent's round, counted in the errors: the others go on,
    and the session it was in is missing from the completed ones (the bench then exits 1)."""
    import httpx

    try:
        await _agent_sessions(http, headers, quota, done, errors, args, requests)
    except httpx.TransportError as exc:
        errors[f"{type(exc).__name__} from the API"] += 1


async def _agent_sessions(
    http, headers, quota: list[int], done: list[float], errors: Counter, args, requests: list[int]
) -> None:  # type: ignore[no-untyped-def]
    screen = Workspace(http, headers, args.poll, requests)
    while quota[0] > 0:
        quota[0] -= 1
        t0 = time.perf_counter()
        requests[0] += 3  # next-call, dial, outcome
        r = await http.post("/api/v1/agents/me/next-call", headers=headers)
        if r.status_code != 200 or not r.json().get("session_id"):
            errors[f"next-call {r.status_code} {r.json().get('reason') or ''}"[:80]] += 1
            quota[0] += 1
            await asyncio.sleep(0.2)
            continue
        sid = r.json()["session_id"]
        workflow_ids.append(r.json()["workflow_id"])
        await screen.refresh()
        t1 = time.perf_counter()
        r = await http.post(f"/api/v1/calls/{sid}/dial", headers=headers)
        if r.status_code != 202:
            errors[f"dial {r.status_code}"] += 1
        if not await screen.until(lambda live: _call_state(live) == "wrap_up"):
            errors["no wrap_up within 30 s"] += 1
        t2 = time.perf_counter()
        r = await http.post(f"/api/v1/calls/{sid}/outcome", json={"disposition": args.disposition}, headers=headers)
        t3 = time.perf_counter()
        if r.status_code != 200:
            errors[f"outcome {r.status_code}"] += 1
        if not await screen.until(lambda live: live["presence"]["state"] == "available" and not live.get("call")):
            errors["not available again within 30 s"] += 1
            return
        done.append(time.perf_counter() - t0)
        steps.setdefault("next-call request", []).append(t1 - t0)
        steps.setdefault("dial → wrap_up seen (ring + talk + webhooks + signals)", []).append(t2 - t1)
        steps.setdefault("outcome request (Update)", []).append(t3 - t2)
        steps.setdefault("outcome → agent available (finish_session, requeue, presence)", []).append(
            time.perf_counter() - t3
        )


@dataclass
class Round:
    """One round of one case: completed sessions, wall time, CPU seconds and peak RSS per process."""

    n: int
    wall: float
    cpu: dict[str, float]
    peak: dict[str, float]
    load_end: str

    @property
    def rate(self) -> float:
        return self.n / self.wall

    @property
    def cpu_per_session(self) -> float:
        return sum(self.cpu.values()) / max(self.n, 1)


async def product_round(
    http, stores, emails, pids, args, errors: Counter, requests: list[int], done: list[float]
) -> Round:  # type: ignore[no-untyped-def]
    """``args.sessions`` sessions through the API, worker and emulator by ``args.agents`` agents."""
    headers = await sign_in(http, emails, stores)  # fresh tokens each round: they expire in minutes
    quota = [args.sessions]
    before = len(done)
    with RssSampler(pids, with_children=frozenset({"api"})) as sampler:
        t0 = time.perf_counter()
        progress = asyncio.create_task(report_progress(done, t0))
        await asyncio.gather(*(agent_loop(http, h, quota, done, errors, args, requests) for h in headers))
        wall = time.perf_counter() - t0
        progress.cancel()
    return Round(len(done) - before, wall, sampler.cpu, sampler.peak, load())


async def bare_round(client, temporal_pid: int | None, args, number: int) -> Round:  # type: ignore[no-untyped-def]
    """``args.sessions`` bare sessions (bench/_bare_session.py), ``args.agents`` in flight, a worker in
    this process with the product worker's workflow runner."""
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    from bench._bare_session import BareSession, step
    from workers.worker import sandboxed_runner

    queue = f"bare-{uuid.uuid4().hex[:8]}"
    runner = sandboxed_runner() if args.sandboxed else UnsandboxedWorkflowRunner()
    worker = Worker(client, task_queue=queue, workflows=[BareSession], activities=[step], workflow_runner=runner)
    gate = asyncio.Semaphore(args.agents)
    completed = [0]

    async def one(i: int) -> None:
        async with gate:
            handle = await client.start_workflow(BareSession.run, False, id=f"{queue}-{i}", task_queue=queue)
            await handle.signal(BareSession.dial)
            await handle.execute_update(BareSession.submit_outcome, "not_interested")
            await handle.result()
            completed[0] += 1

    pids = {"bench (worker + driver)": os.getpid()} | ({"temporal": temporal_pid} if temporal_pid else {})
    async with worker:
        with RssSampler(pids) as sampler:
            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(args.sessions)))
            wall = time.perf_counter() - t0
    round_ = Round(completed[0], wall, sampler.cpu, sampler.peak, load())
    print(
        f"  bare round {number}: {round_.rate:.1f} sessions/s, {1000 * round_.cpu_per_session:.0f} ms CPU per session",
        flush=True,
    )
    return round_


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    """median (min–max) of the rounds"""
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


async def main() -> int:
    args = parse_args()
    import httpx
    import psutil

    from devstack.seed import seed_replica
    from dialler.queues.rebuild import recompute
    from dialler.queues.runtime import queue_engine
    from dialler.runtime import Stores

    print(f"machine: {machine()}; load at start {load()}", flush=True)
    async with Stack(mariadb=True, temporal=True, moto=True) as stack:
        settings = stack.settings(queue_rebuild_interval_s=86_400, workflow_sandbox=args.sandboxed)
        await seed_replica(stack.replica_url, users=args.users, seed=11, only_if_empty=False)
        stores = Stores.open(settings)
        engine = queue_engine(stores)
        for lo in range(1, args.users + 1, 5000):
            await recompute(stores, engine, list(range(lo, min(lo + 5000, args.users + 1))))
        depths = await engine.depths()
        print(f"queued: {depths}", flush=True)
        emails = await create_agents(stores, args.agents, stack.unique)
        api = start_api(stack, settings, None, args.api_workers)
        prof_path = Path(args.profile_worker or stack.run_dir / "worker.prof").resolve()
        worker = start_worker(stack, settings, args, ["--profile", str(prof_path)] if args.profile_worker else None)
        temporal_pid = None
        for child in psutil.Process(os.getpid()).children(recursive=True):
            if "temporal" in " ".join(child.cmdline()[:2]):
                temporal_pid = child.pid
        pids = {"worker": worker.pid, "api": api.pid, "bench": os.getpid()}
        if temporal_pid:
            pids["temporal"] = temporal_pid
        done: list[float] = []
        requests = [0]
        errors: Counter = Counter()
        products: list[Round] = []
        bares: list[Round] = []
        try:
            limits = httpx.Limits(max_connections=args.agents * 2 + 10)
            async with httpx.AsyncClient(base_url=settings.public_base_url, timeout=60, limits=limits) as http:
                for number in range(1, args.repeat + 1):
                    products.append(await product_round(http, stores, emails, pids, args, errors, requests, done))
                    r = products[-1]
                    print(
                        f"  product round {number}: {r.rate:.1f} sessions/s, "
                        f"{1000 * r.cpu_per_session:.0f} ms CPU per session, load {r.load_end}",
                        flush=True,
                    )
                    bares.append(await bare_round(stack.env.client, temporal_pid, args, number))
            history_note = await history_summary(stack.env.client, workflow_ids[-1]) if workflow_ids else ""
        finally:
            stop_worker(worker)
            stop_api(api)
            await stores.close()
        n = len(done)
        ratios = [p.cpu_per_session / b.cpu_per_session for p, b in zip(products, bares, strict=True)]
        print(
            f"\n## Call sessions end to end: {args.agents} agents, ring {args.ring} s, talk {args.talk} s, "
            f"outcome {args.disposition}, {args.repeat} rounds of {args.sessions} sessions"
            f" ({'sandboxed' if args.sandboxed else 'unsandboxed'} workflows)\n"
        )
        print("Median (min–max) over the rounds; CPU: core-seconds of every process the case uses / sessions.\n")
        print("| metric | value |\n|---|---|")
        print(f"| sessions completed | {n} of {args.sessions * args.repeat} |")
        print(f"| **throughput** | **{spread([r.rate for r in products])} sessions/s** |")
        print(f"| **CPU per session** | **{spread([1000 * r.cpu_per_session for r in products], '{:.0f}')} ms** |")
        for name in pids:
            per = [1000 * r.cpu[name] / max(r.n, 1) for r in products]
            peak = max(r.peak[name] for r in products)
            print(f"| {name}: CPU per session, peak RSS | {spread(per, '{:.0f}')} ms, {peak:.0f} MB |")
        print(f"| bare shape (same Temporal): throughput | {spread([r.rate for r in bares])} sessions/s |")
        print(f"| bare shape: CPU per session | {spread([1000 * r.cpu_per_session for r in bares], '{:.0f}')} ms |")
        for name in bares[0].cpu:
            per = [1000 * r.cpu[name] / max(r.n, 1) for r in bares]
            print(f"| bare shape: {name} CPU per session | {spread(per, '{:.0f}')} ms |")
        print(f"| **ratio of CPU per session, product ÷ bare** | **{spread(ratios, '{:.2f}')}×** |")
        print(
            f"| session cycle p50 / p99 / max (next-call → available again) | {percentile(done, 50):.2f} / "
            f"{percentile(done, 99):.2f} / {max(done, default=float('nan')):.2f} s |"
        )
        for name, xs in steps.items():
            print(f"| step: {name} p50 / p99 | {percentile(xs, 50):.2f} / {percentile(xs, 99):.2f} s |")
        print(f"| HTTP requests per completed session (incl. polls) | {requests[0] / max(n, 1):.1f} |")
        print(f"| load average (1/5/15) at the end of each product round | {'; '.join(r.load_end for r in products)} |")
        print(f"| load average at the end of each bare round | {'; '.join(r.load_end for r in bares)} |")
        print(f"| one session's history | {history_note} |")
        if errors:
            print(f"| errors | {dict(errors)} |")
            for log in ("api", "worker"):  # the run directory goes with the stack: what they said, first
                path = stack.run_dir / "logs" / f"{log}.log"
                if path.exists():
                    print(f"\n{log}.log, last lines:\n" + "\n".join(path.read_text().splitlines()[-15:]))
        if args.profile_worker and prof_path.exists():
            import pstats

            print("\n<details><summary>worker cProfile by tottime</summary>\n\n```")
            stats = pstats.Stats(str(prof_path))
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_callers("builtins.exec|builtins.compile")
            print("```\n</details>")
    complete = n == args.sessions * args.repeat and all(b.n == args.sessions for b in bares)
    return 0 if complete else 1


async def history_summary(client, workflow_id: str) -> str:  # type: ignore[no-untyped-def]
    from temporalio.api.enums.v1 import EventType

    history = await client.get_workflow_handle(workflow_id).fetch_history()
    kinds = Counter(EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events)
    interesting = (
        "WORKFLOW_TASK_COMPLETED",
        "ACTIVITY_TASK_SCHEDULED",
        "WORKFLOW_EXECUTION_SIGNALED",
        "WORKFLOW_EXECUTION_UPDATE_ACCEPTED",
        "MARKER_RECORDED",
        "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES",
        "TIMER_STARTED",
    )
    return f"{len(history.events)} events; " + ", ".join(f"{k.lower()} {kinds.get(k, 0)}" for k in interesting)


async def report_progress(done: list[float], t0: float) -> None:
    last = 0
    while True:
        await asyncio.sleep(10)
        el = time.perf_counter() - t0
        print(f"  {el:.0f} s: {len(done)} done ({(len(done) - last) / 10:.1f}/s last 10 s), load {load()}", flush=True)
        last = len(done)


if __name__ == "__main__":
    exit_now(asyncio.run(main()))
