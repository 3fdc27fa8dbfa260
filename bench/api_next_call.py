"""Benchmark of the HTTP next-call route with 100 concurrent agents.

    .venv/bin/python bench/api_next_call.py [--agents 100] [--rounds 5] [--users 20000] [--profile]

Starts a private MariaDB (seeded with ``--users`` customers), a Temporal dev server (WAL), a fresh
PostgreSQL database ``bench_*`` and a ``bench:*`` Redis prefix; places the customers in the queues
with the product's recompute (the CDC path); serves the API in a subprocess
(``python -m uvicorn api.app:create_app --factory``, DIALLER_* environment, uvloop if installed).

Agents are created directly in PostgreSQL (one argon2 hash shared by all); 10 log in over HTTP, the
others get their tokens from dialler.agents.tokens.issue_token_pair (argon2 costs ~0.2 s of CPU per
login here: 530 HTTP logins took 114 s); every agent sets itself available over HTTP.
A round is ``--agents`` concurrent POST /api/v1/agents/me/next-call, one per agent, from one httpx client (keep-alive connections opened beforehand). Every round uses fresh
agents (an agent that took a call is ``reserved``); round 1 (cold caches and connection pools) is
reported apart from rounds 2..N. A sequential pass (one request at a time) gives the uncontended cost.
No Temporal worker runs: the route starts CallSessionWorkflow and returns; running the session is
measured by bench/call_sessions.py. API RSS is sampled with psutil.

``--profile`` runs the API under cProfile (main thread = the event loop) and prints its top functions.
Everything is deleted at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import ROOT, RssSampler, Stack, exit_now, load, machine, percentile  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=100, help="concurrent agents per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--sequential", type=int, default=30, help="requests in the one-at-a-time pass")
    p.add_argument("--users", type=int, default=20_000, help="customers seeded (about 60 %% are queued)")
    p.add_argument("--paced-rate", type=float, default=20, help="paced pass: next-calls per second (0: skip)")
    p.add_argument("--paced-seconds", type=float, default=10)
    p.add_argument("--split", type=int, default=40, help="in-process split-timer pass: sequential requests (0: skip)")
    p.add_argument(
        "--workers", type=int, default=2, help="uvicorn worker processes (DIALLER_API_WORKERS; 1 with --profile)"
    )
    p.add_argument("--profile", action="store_true")
    p.add_argument("--profile-split", action="store_true", help="cProfile the sequential in-process split pass")
    return p.parse_args()


def api_env(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {
        "DIALLER_POSTGRES_URL": settings.postgres_url,
        "DIALLER_REPLICA_URL": settings.replica_url,
        "DIALLER_REDIS_URL": settings.redis_url,
        "DIALLER_REDIS_PREFIX": settings.redis_prefix,
        "DIALLER_TEMPORAL_ADDRESS": settings.temporal_address,
        "DIALLER_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "DIALLER_SQS_ENDPOINT_URL": settings.sqs_endpoint_url or "http://127.0.0.1:1",
        "DIALLER_CDC_QUEUE_NAME": settings.cdc_queue_name,
        "DIALLER_CDC_DLQ_NAME": settings.cdc_dlq_name,
        "DIALLER_CLOCK_OFFSET_S": str(settings.clock_offset_s),
        "DIALLER_PUBLIC_BASE_URL": settings.public_base_url,
        "DIALLER_RUN_DIR": str(settings.run_dir),
        "DIALLER_LOG_LEVEL": "WARNING",
        "DIALLER_LOGIN_MAX_ATTEMPTS": "50",
    }
    if settings.twilio_api_base_url:  # the bench stack's Twilio emulator
        env["DIALLER_TWILIO_API_BASE_URL"] = settings.twilio_api_base_url
    if settings.workflow_sandbox is not None:  # as the bench chose; unset: the environment's default
        env["DIALLER_WORKFLOW_SANDBOX"] = str(settings.workflow_sandbox).lower()
    return {**os.environ, **env, "PYTHONPATH": str(ROOT)}


def start_api(stack: Stack, settings, profile_out: Path | None, workers: int = 1) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    import httpx

    argv = [sys.executable]
    if profile_out is not None:
        argv += ["-m", "cProfile", "-o", str(profile_out)]
    argv += [
        "-m",
        "uvicorn",
        "api.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(stack.api_port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--timeout-keep-alive",
        "120",
        "--workers",
        str(1 if profile_out is not None else workers),
    ]
    log = (stack.run_dir / "logs" / "api.log").open("ab")
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=api_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("API exited: " + (stack.run_dir / "logs" / "api.log").read_text()[-2000:])
        try:
            if httpx.get(f"{settings.public_base_url}/api/v1/health", timeout=1).status_code in (200, 503):
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("API not ready in 30 s")


def stop_api(proc: subprocess.Popen) -> None:
    with __import__("contextlib").suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGINT)  # graceful: lets cProfile write its file
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


async def create_agents(stores, n: int, tag: str) -> list[str]:  # type: ignore[no-untyped-def]
    from dialler.agents.models import Agent
    from dialler.agents.passwords import hash_password

    pw_hash = hash_password("bench-password-1")
    emails = [f"bench-{tag}-{i}@rmc.example" for i in range(n)]
    async with stores.sessions() as session:
        for i, email in enumerate(emails):
            session.add(
                Agent(
                    email=email,
                    display_name=f"Bench {i}",
                    password_hash=pw_hash,
                    role="agent",
                    queues=["callbacks", "unsigned", "outstanding_requests"],
                    trained_vulnerable=True,
                )
            )
        await session.commit()
    return emails


async def sign_in(http, emails: list[str], stores=None, http_logins: int = 10) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """The first ``http_logins`` agents log in over HTTP (argon2 verify: ~0.2 s of CPU each here);
    the others get their token pair from the product's own dialler.agents.tokens.issue_token_pair
    (the same tokens, without hashing 500 passwords). Then every agent sets itself available over HTTP."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from dialler.agents.models import Agent
    from dialler.agents.tokens import issue_token_pair

    sem = asyncio.Semaphore(4)
    minted: dict[str, str] = {}
    if stores is not None and len(emails) > http_logins:
        async with stores.sessions() as session:
            rows = (
                await session.execute(
                    select(Agent.email, Agent.id, Agent.role).where(Agent.email.in_(emails[http_logins:]))
                )
            ).all()
            for email, agent_id, role in rows:
                pair = await issue_token_pair(
                    session=session, settings=stores.settings, agent_id=agent_id, role=role, now=datetime.now(UTC)
                )
                minted[email] = pair.access_token
            await session.commit()

    async def one(email: str) -> dict[str, str]:
        async with sem:
            if email in minted:
                headers = {"Authorization": f"Bearer {minted[email]}"}
            else:
                r = await http.post("/api/v1/auth/login", json={"email": email, "password": "bench-password-1"})
                r.raise_for_status()
                headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
            r = await http.put("/api/v1/agents/me/presence", json={"state": "available"}, headers=headers)
            r.raise_for_status()
            return headers

    return list(await asyncio.gather(*(one(e) for e in emails)))


async def timed_next_call(http, headers) -> tuple[float, int, bool]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    r = await http.post("/api/v1/agents/me/next-call", headers=headers)
    dt = (time.perf_counter() - t0) * 1000
    ok = r.status_code == 200 and bool(r.json().get("session_id"))
    return dt, r.status_code, ok


def profile_table(profiler: cProfile.Profile, title: str, top: int = 35) -> str:
    import io

    buf = io.StringIO()
    pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(top)
    return f"\n<details><summary>cProfile: {title}</summary>\n\n```\n{buf.getvalue()}\n```\n</details>\n"


async def split_timer(stack: Stack, settings, stores_factory, n: int, profile_split: bool = False) -> str:  # type: ignore[no-untyped-def]
    """The next-call route in this process (the app under httpx's ASGI transport, lifespan run), with
    each step wrapped in a timer: where one request's time goes, one request at a time and 100 at once."""
    import functools

    import httpx
    from temporalio.client import Client

    import api.routes.calls as calls_route
    import dialler.calls.service as calls_service
    from api.app import create_app
    from dialler.queues.engine import QueueEngine

    spans: dict[str, list[float]] = {}
    START = "start CallSessionWorkflow (Temporal; side by side with the context)"
    CONTEXT = "customer context (Redis miss -> MariaDB and PostgreSQL side by side)"

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        @functools.wraps(fn)
        async def wrapper(*a, **kw):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return await fn(*a, **kw)
            finally:
                spans.setdefault(name, []).append((time.perf_counter() - t0) * 1000)

        return wrapper

    patches = [
        (calls_service, "get_presence", "presence read"),
        (calls_service, "set_presence", "presence -> reserved (Redis compare-and-set; history insert + commit)"),
        (QueueEngine, "next_call_detailed", "queue script (Redis)"),
        (Client, "start_workflow", START),
        (calls_service, "get_context", CONTEXT),
        (calls_route, "record_ctx", "audit row"),
    ]
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patches]
    for obj, attr, name in patches:
        setattr(obj, attr, timed(name, getattr(obj, attr)))
    out = []
    try:
        stores = stores_factory.open(settings)
        emails = await create_agents(stores, n + 100, stack.unique + "s")
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                headers = await sign_in(http, emails, stores)
                for label, group, conc in (("sequential", headers[:n], 1), ("100 at once", headers[n:], 100)):
                    spans.clear()
                    totals: list[float] = []
                    t_all = time.perf_counter()
                    if conc == 1:
                        profiler = cProfile.Profile() if profile_split else None
                        if profiler:
                            profiler.enable()
                        for h in group:
                            totals.append((await timed_next_call(http, h))[0])
                        if profiler:
                            profiler.disable()
                            out.append(profile_table(profiler, "sequential in-process pass, by own time"))
                    else:
                        totals = [o[0] for o in await asyncio.gather(*(timed_next_call(http, h) for h in group))]
                    wall = time.perf_counter() - t_all
                    out.append(
                        f"\n### In-process split timer, {label} ({len(group)} requests, {wall:.2f} s, load {load()})\n"
                    )
                    out.append("| step | p50 | p99 | mean |\n|---|---|---|---|")
                    for name, xs in spans.items():
                        xs = xs[: len(totals)]  # presence is also set back on a failed start: none here
                        out.append(
                            f"| {name} | {percentile(xs, 50):.1f} ms | {percentile(xs, 99):.1f} ms | "
                            f"{sum(xs) / len(xs):.1f} ms |"
                        )
                    mean_total = sum(totals) / len(totals)
                    if conc == 1:
                        # Start and context overlap: count the slower of the two once per request.
                        steps = [spans[name] for name in spans if not name.startswith(("start", "customer"))]
                        overlap = [max(a, b) for a, b in zip(spans[START], spans[CONTEXT], strict=True)]
                        rest = [t - sum(col) - o for t, *col, o in zip(totals, *steps, overlap, strict=True)]
                        out.append(
                            "| rest (auth: token + agent row + revocation check; FastAPI; session commit; JSON) | "
                            f"{percentile(rest, 50):.1f} ms | {percentile(rest, 99):.1f} ms | "
                            f"{sum(rest) / len(rest):.1f} ms |"
                        )
                    out.append(
                        f"| **whole request** | {percentile(totals, 50):.1f} ms | {percentile(totals, 99):.1f} ms | "
                        f"{mean_total:.1f} ms |"
                    )
        await stores.close()
    finally:
        for obj, attr, fn in saved:
            setattr(obj, attr, fn)
    return "\n".join(out)


async def main() -> int:
    args = parse_args()
    import httpx

    from devstack.seed import seed_replica
    from dialler.queues.rebuild import recompute
    from dialler.queues.runtime import queue_engine
    from dialler.runtime import Stores

    print(f"machine: {machine()}; load at start {load()}", flush=True)
    async with Stack(mariadb=True, temporal=True) as stack:
        settings = stack.settings()
        await seed_replica(stack.replica_url, users=args.users, seed=7, only_if_empty=False)
        stores = Stores.open(settings)
        engine = queue_engine(stores)
        for lo in range(1, args.users + 1, 5000):
            await recompute(stores, engine, list(range(lo, min(lo + 5000, args.users + 1))))
        depths = await engine.depths()
        print(f"queued: {depths}", flush=True)
        paced_n = int(args.paced_rate * args.paced_seconds)
        needed = args.agents * args.rounds + args.sequential + paced_n
        if sum(depths.values()) < needed:
            print(f"warning: {sum(depths.values())} queued < {needed} requests", file=sys.stderr)
        emails = await create_agents(stores, needed, stack.unique)
        profile_out = stack.run_dir / "api.prof" if args.profile else None
        api = start_api(stack, settings, profile_out, args.workers)
        results: list[tuple[str, list[float], int, int, str, float]] = []
        try:
            limits = httpx.Limits(max_connections=args.agents + 10, max_keepalive_connections=args.agents + 10)
            async with httpx.AsyncClient(base_url=settings.public_base_url, timeout=60, limits=limits) as http:
                t0 = time.perf_counter()
                headers = await sign_in(http, emails, stores)
                login_s = time.perf_counter() - t0
                print(f"{len(headers)} agents signed in and available in {login_s:.1f} s", flush=True)
                with RssSampler({"api": api.pid}, with_children=frozenset({"api"})) as sampler:
                    # sequential pass: uncontended cost
                    seq = []
                    codes_ok = 0
                    for h in headers[: args.sequential]:
                        dt, _, ok = await timed_next_call(http, h)
                        seq.append(dt)
                        codes_ok += ok
                    results.append(("sequential (1 at a time)", seq, codes_ok, len(seq), load(), 0.0))
                    rest = headers[args.sequential :]
                    for r in range(args.rounds):
                        batch = rest[r * args.agents : (r + 1) * args.agents]
                        # warm one keep-alive connection per agent so that connect time is not measured
                        await asyncio.gather(*(http.get("/api/v1/health") for _ in batch))
                        t0 = time.perf_counter()
                        out = await asyncio.gather(*(timed_next_call(http, h) for h in batch))
                        wall = time.perf_counter() - t0
                        lat = [o[0] for o in out]
                        ok = sum(o[2] for o in out)
                        bad = sorted({o[1] for o in out if not o[2]})
                        if bad:
                            print(f"round {r + 1}: non-200 / no session codes {bad}", file=sys.stderr)
                        results.append((f"round {r + 1} ({len(batch)} concurrent)", lat, ok, len(batch), load(), wall))
                        print(
                            f"round {r + 1}: p50 {percentile(lat, 50):.1f} ms p99 {percentile(lat, 99):.1f} ms "
                            f"wall {wall:.2f} s ok {ok}/{len(batch)} load {load()}",
                            flush=True,
                        )
                        await asyncio.sleep(0.5)
                    if paced_n:
                        batch = rest[args.rounds * args.agents : args.rounds * args.agents + paced_n]
                        t0 = time.perf_counter()

                        async def paced(i: int, h: dict[str, str]) -> tuple[float, int, bool]:
                            await asyncio.sleep(max(0.0, t0 + i / args.paced_rate - time.perf_counter()))
                            return await timed_next_call(http, h)

                        out = await asyncio.gather(*(paced(i, h) for i, h in enumerate(batch)))
                        wall = time.perf_counter() - t0
                        lat = [o[0] for o in out]
                        results.append(
                            (
                                f"paced {args.paced_rate:.0f}/s for {args.paced_seconds:.0f} s",
                                lat,
                                sum(o[2] for o in out),
                                len(batch),
                                load(),
                                wall,
                            )
                        )
                        print(f"paced: p50 {percentile(lat, 50):.1f} ms p99 {percentile(lat, 99):.1f} ms", flush=True)
            api_rss_peak = sampler.peak["api"]
            api_cpu = sampler.cpu["api"]
        finally:
            stop_api(api)
            await stores.close()

        print(f"\n## HTTP next-call, {args.agents} concurrent agents ({args.users:,} customers seeded)\n")
        print("| pass | requests | ok | p50 | p99 | max | round wall | load (1/5/15) |")
        print("|---|---|---|---|---|---|---|---|")
        for name, lat, ok, n, ld, wall in results:
            print(
                f"| {name} | {n} | {ok} | {percentile(lat, 50):.1f} ms | {percentile(lat, 99):.1f} ms | "
                f"{max(lat):.1f} ms | {wall * 1000:.0f} ms | {ld} |"
            )
        warm = [x for name, lat, *_ in results[2:] if name.startswith("round") for x in lat]
        if warm:
            print(
                f"| rounds 2..{args.rounds} pooled | {len(warm)} | - | {percentile(warm, 50):.1f} ms | "
                f"{percentile(warm, 99):.1f} ms | {max(warm):.1f} ms | - | - |"
            )
        print(
            f"\nAPI process peak RSS {api_rss_peak:.0f} MB; API CPU during the passes {api_cpu:.1f} s; "
            f"sign-in of {len(emails)} agents {login_s:.1f} s"
        )
        if args.split:
            print(
                await split_timer(
                    stack, settings, stores_factory=Stores, n=args.split, profile_split=args.profile_split
                )
            )
        if profile_out is not None and profile_out.exists():
            for sort in ("cumulative", "tottime"):
                print(f"\n<details><summary>API cProfile by {sort}</summary>\n\n```")
                pstats.Stats(str(profile_out)).strip_dirs().sort_stats(sort).print_stats(30)
                print("```\n</details>")
    return 0


if __name__ == "__main__":
    exit_now(asyncio.run(main()))
