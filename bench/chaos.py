"""Chaos harness: the whole product under simulated agents while its processes and dependencies fail.

    .venv/bin/python bench/chaos.py [--agents 6] [--minutes 10] [--faults-each 20] [--users 3000]
                                    [--replica-outage-s 240] [--out .run/chaos/<run>]
    make chaos CHAOS_ARGS="--agents 8 --minutes 60"

The stack on its own: a Redis server of its own (flushed as a fault), a fresh PostgreSQL database on the
machine's server (dropped at the end unless --keep), a private MariaDB replica with row binlog behind a
TCP proxy the harness can cut, moto SQS, an on-disk Temporal dev server (SQLite file, so a restart keeps
the workflows), the Twilio emulator (demo number rules: …7 no answer, …8 busy, …9 machine), and the
product's own processes (``python -m api``, ``-m workers.worker``, ``-m workers.publisher``) under
devstack's Supervisor, which starts a killed one again, as ``make run`` does.

N simulated agents work through the HTTP API (next-call, dial, talk, hang up, outcome, including
callbacks and do-not-call, and texts) while CDC writers change replica rows; one fault at a time, at
random moments: SIGKILL of the API, the worker or the publisher; Temporal stopped and started again;
the worker paused past the lease TTL (SIGSTOP/SIGCONT); Redis flushed; the replica unreachable for
``--replica-outage-s``. Everything the harness does and sees is appended to ``chaos.jsonl``
(JSON lines, never rewritten); at the end it lets the agents finish, runs a queue rebuild, reads the
stores into one ``final`` event and hands the log to bench/chaos_check.py, whose report it prints and
writes to ``report.json``. Exit status 1 when an invariant was violated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from redis.asyncio import Redis  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from bench import chaos_check  # noqa: E402
from bench._stack import POSTGRES_ADMIN, in_hours_offset_s  # noqa: E402
from devstack import services  # noqa: E402
from devstack.supervisor import Supervisor  # noqa: E402
from dialler.config import Settings  # noqa: E402

FAULT_KINDS = (
    "kill_api",
    "kill_worker",
    "kill_publisher",
    "restart_temporal",
    "pause_worker",
    "flush_redis",
    "replica_outage",
)
APP = ("api", "worker", "publisher")
SESSION_LIMIT_S = 300.0  # an agent gives up on a session that has not moved on in this long
PASSWORD = "chaos-agent-password-1"
TEXT = "Hello from RMC Claims about your claim. Reply STOP to opt out."
# After answered calls: what the agent records (weights), callback_requested with a time in 2-4 min.
ANSWERED = {
    "docs_promised": 3,
    "not_interested": 2,
    "callback_requested": 3,
    "do_not_call": 1,
    "wrong_number": 1,
    "signed_on_call": 1,
}
UNANSWERED = {"no_answer": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=6)
    p.add_argument("--users", type=int, default=3000, help="customers seeded in the replica")
    p.add_argument("--minutes", type=float, default=10.0, help="how long the agents work (faults included)")
    p.add_argument("--faults-each", type=int, default=20, help="faults of each kind to inject (at most)")
    p.add_argument("--kinds", default=",".join(FAULT_KINDS), help="comma-separated fault kinds")
    p.add_argument("--replica-outage-s", type=float, default=240.0)
    p.add_argument("--lease-ttl-s", type=int, default=20, help="DIALLER_LEASE_TTL_S (the pause lasts TTL + 5 s)")
    p.add_argument("--gap-s", type=float, nargs=2, default=(4.0, 12.0), help="quiet time between faults (range)")
    p.add_argument("--recovery-timeout-s", type=float, default=120.0)
    p.add_argument("--cdc-writes-per-s", type=float, default=1.0)
    p.add_argument("--text-share", type=float, default=0.1, help="share of calls after which the agent texts")
    p.add_argument("--api-workers", type=int, default=1)
    p.add_argument(
        "--rebuild-interval-s", type=int, default=900, help="DIALLER_QUEUE_REBUILD_INTERVAL_S (the scheduled rebuild)"
    )
    # The seeded customers share the 1,000 numbers of Ofcom's 07700 900xxx drama range (about twenty
    # customers a number at 20,000): under the default per-number rules (3 a day, 4 h apart) the floor
    # runs out of callable customers within minutes (session 9's full run: 883 assignments in 112 min,
    # agents told "nobody to call" 3,455 times). The harness takes the loosest rules the settings allow
    # (every rule still on, its bounds unchanged) so that the faults, not the rules, limit the run.
    p.add_argument("--min-gap-s", type=int, default=15 * 60, help="DIALLER_MIN_GAP_BETWEEN_ATTEMPTS_S")
    p.add_argument("--max-attempts-per-day", type=int, default=10, help="DIALLER_MAX_ATTEMPTS_PER_DAY")
    p.add_argument("--max-attempts-per-week", type=int, default=30, help="DIALLER_MAX_ATTEMPTS_PER_WEEK")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="run directory (default .run/chaos/<time>)")
    p.add_argument("--keep", action="store_true", help="keep the PostgreSQL database and the run directory")
    return p.parse_args(argv)


class Log:
    """The append-only record: one JSON object a line, flushed as written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.t0 = time.monotonic()
        self._f = path.open("a", buffering=1)

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 4)

    def write(self, ev: str, **fields: Any) -> None:
        record = {"ev": ev, "t": fields.pop("t", self.now()), "wall": round(time.time(), 3), **fields}
        self._f.write(json.dumps(record, default=str) + "\n")

    def close(self) -> None:
        self._f.close()


@dataclass
class Stack:
    run_dir: Path
    services: services.ProcessGroup
    app: services.ProcessGroup
    settings: Settings
    env: dict[str, str]
    redis_url: str
    mariadb_port: int
    proxy: Any
    pg_name: str
    base_url: str
    emulator_url: str
    redis_pid: int = 0
    temporal_argv: list[str] = field(default_factory=list)


class ProxyThread:
    """tests/support/proxy.CuttableProxy on an event loop of its own thread: the replica's traffic flows
    whatever the harness's loop is doing, and the harness cuts and restores it from its loop."""

    def __init__(self, host: str, port: int) -> None:
        import threading

        from tests.support.proxy import CuttableProxy

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="replica-proxy")
        self.thread.start()
        self.proxy = CuttableProxy(host, port)
        self.port = self.proxy.port

    async def _on(self, coro: Any) -> None:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def start(self) -> None:
        await self._on(self.proxy.start())

    async def cut(self) -> None:
        await self._on(self.proxy.cut())

    async def restore(self) -> None:
        await self._on(self.proxy.restore())

    async def close(self) -> None:
        await self._on(self.proxy.close())
        self.loop.call_soon_threadsafe(self.loop.stop)


def _env_of(values: dict[str, Any]) -> dict[str, str]:
    return {f"DIALLER_{k.upper()}": str(v) for k, v in values.items() if v is not None}


async def bring_up(args: argparse.Namespace, run_dir: Path, log: Log) -> Stack:
    """Start everything; on a failure part-way, stop what was started and drop the database."""
    unique = uuid.uuid4().hex[:8]
    svc = services.ProcessGroup(run_dir / "services", die_with_parent=True)
    app = services.ProcessGroup(run_dir / "app", die_with_parent=True)
    try:
        return await _bring_up(args, run_dir, log, unique, svc, app)
    except BaseException:
        app.stop_all()
        svc.stop_all()
        await _drop_database(f"chaos_{unique}")
        raise


async def _drop_database(name: str) -> None:
    admin = create_async_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def _bring_up(
    args: argparse.Namespace,
    run_dir: Path,
    log: Log,
    unique: str,
    svc: services.ProcessGroup,
    app: services.ProcessGroup,
) -> Stack:

    redis_port = services.free_port()
    (run_dir / "redis").mkdir(parents=True, exist_ok=True)
    redis_proc = svc.start(
        "redis",
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--dir", str(run_dir / "redis")],
    )
    services.wait_for(lambda: services.port_open("127.0.0.1", redis_port), "Redis", 10, redis_proc)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"

    pg_name = f"chaos_{unique}"
    admin = create_async_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{pg_name}"'))
    await admin.dispose()
    postgres_url = make_url(POSTGRES_ADMIN).set(database=pg_name).render_as_string(False)
    from dialler.db.migrate import upgrade

    await upgrade(postgres_url)

    mariadb_port = services.free_port()
    services.start_mariadb(svc, mariadb_port)
    proxy = ProxyThread("127.0.0.1", mariadb_port)
    await proxy.start()
    direct_replica = f"mysql+aiomysql://root@127.0.0.1:{mariadb_port}/claims_chaos"
    await _seed_replica(direct_replica, args.users)

    sqs_port = services.free_port()
    services.start_moto(svc, sqs_port)

    temporal_port = services.free_port()
    (run_dir / "temporal").mkdir(parents=True, exist_ok=True)
    api_port = services.free_port()
    emulator_port = services.free_port()
    base_url = f"http://127.0.0.1:{api_port}"
    values: dict[str, Any] = dict(
        environment="development",
        run_dir=run_dir / "product",
        postgres_url=postgres_url,
        replica_url=f"mysql+aiomysql://root@127.0.0.1:{proxy.port}/claims_chaos",
        redis_url=redis_url,
        redis_prefix="chaos",
        temporal_address=f"127.0.0.1:{temporal_port}",
        temporal_task_queue=f"chaos-{unique}",
        sqs_endpoint_url=f"http://127.0.0.1:{sqs_port}",
        cdc_queue_name=f"cdc-{unique}",
        cdc_dlq_name=f"cdc-dlq-{unique}",
        clock_offset_s=in_hours_offset_s(),
        public_base_url=base_url,
        api_host="127.0.0.1",
        api_port=api_port,
        api_workers=args.api_workers,
        telephony_mode="twilio",
        twilio_api_base_url=f"http://127.0.0.1:{emulator_port}",
        lease_ttl_s=args.lease_ttl_s,
        min_gap_between_attempts_s=args.min_gap_s,
        max_attempts_per_day=args.max_attempts_per_day,
        max_attempts_per_week=args.max_attempts_per_week,
        queue_rebuild_interval_s=args.rebuild_interval_s,
        rebuild_processes=1,
        login_max_attempts=1000,
        publisher_metrics_port=0,
        worker_metrics_address=f"127.0.0.1:{services.free_port()}",  # never the default's fixed port
        log_level="WARNING",
    )
    settings = Settings(_env_file=None, **values)  # type: ignore[arg-type]
    env = _env_of(values) | {"PYTHONPATH": str(ROOT)}

    temporal_argv = services.temporal_argv(
        port=temporal_port,
        ui_port=None,
        db_file=run_dir / "temporal" / "temporal.db",
        namespace=settings.temporal_namespace,
    )
    proc = svc.start("temporal", temporal_argv)
    services.wait_for(lambda: services.port_open("127.0.0.1", temporal_port), "Temporal", 30, proc)
    from workers import cli

    await cli.temporal_setup(settings)

    hooks = f"{base_url}/api/v1/webhooks/twilio"
    services.start_twilio_emulator(
        svc,
        emulator_port,
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.get_secret_value(),
        api_keys={settings.twilio_api_key_sid: settings.twilio_api_key_secret.get_secret_value()},
        sms_url=f"{hooks}/sms-inbound",
    )

    from dialler.integrations.sqs import ensure_cdc_queues

    ensure_cdc_queues(settings)

    python = sys.executable
    app.start("worker", [python, "-m", "workers.worker"], env)
    app.start("publisher", [python, "-m", "workers.publisher"], env)
    api = app.start("api", [python, "-m", "api"], env)
    await asyncio.to_thread(
        services.wait_for,
        lambda: httpx.get(f"{base_url}/api/v1/health", timeout=2).status_code == 200,
        "API",
        90,
        api,
        app.log_path("api"),
    )
    log.write("stack_up", ports={"api": api_port, "temporal": temporal_port, "redis": redis_port})
    return Stack(
        run_dir=run_dir,
        services=svc,
        app=app,
        settings=settings,
        env=env,
        redis_url=redis_url,
        mariadb_port=mariadb_port,
        proxy=proxy,
        pg_name=pg_name,
        base_url=base_url,
        emulator_url=f"http://127.0.0.1:{emulator_port}",
        redis_pid=redis_proc.pid,
        temporal_argv=temporal_argv,
    )


async def _seed_replica(url: str, users: int) -> None:
    from devstack.seed import seed_replica
    from dialler.replica.schema import create_replica_tables

    server = create_async_engine(make_url(url).set(database=""))
    async with server.begin() as conn:
        await conn.execute(text("CREATE DATABASE IF NOT EXISTS `claims_chaos` CHARACTER SET utf8mb4"))
    await server.dispose()
    writer = create_async_engine(url)
    async with writer.begin() as conn:
        await create_replica_tables(conn)
    await writer.dispose()
    await seed_replica(url, users=users, only_if_empty=False)


async def create_people(stack: Stack, n: int) -> tuple[list[str], str]:
    """``n`` agents for every queue and one admin, straight into PostgreSQL (one argon2 hash)."""
    from dialler.agents.models import Agent
    from dialler.agents.passwords import hash_password
    from dialler.db.engines import create_postgres_engine, session_factory

    engine = create_postgres_engine(stack.settings)
    pw = hash_password(PASSWORD)
    emails = [f"chaos-agent-{i}@rmc.example" for i in range(n)]
    admin = "chaos-admin@rmc.example"
    async with session_factory(engine)() as session:
        for i, email in enumerate(emails):
            session.add(
                Agent(
                    email=email,
                    display_name=f"Chaos {i}",
                    password_hash=pw,
                    role="agent",
                    queues=["callbacks", "unsigned", "outstanding_requests"],
                    trained_vulnerable=True,
                )
            )
        session.add(Agent(email=admin, display_name="Chaos admin", password_hash=pw, role="admin", queues=[]))
        await session.commit()
    await engine.dispose()
    return emails, admin


class Client:
    """One person's HTTP session: signs in again whenever the API says the token is no good."""

    def __init__(self, base_url: str, email: str) -> None:
        self.email = email
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30)
        self.token: str | None = None

    async def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        for _ in range(2):
            if self.token is None:
                r = await self.http.post("/api/v1/auth/login", json={"email": self.email, "password": PASSWORD})
                if r.status_code != 200:
                    return r
                self.token = r.json()["access_token"]
            r = await self.http.request(method, path, headers={"Authorization": f"Bearer {self.token}"}, **kw)
            if r.status_code != 401:
                return r
            self.token = None
        return r

    async def aclose(self) -> None:
        await self.http.aclose()


async def call(
    client: Client, log: Log, ev: str, method: str, path: str, agent: int, **fields: Any
) -> httpx.Response | None:
    """One request, logged with when it was sent and when its answer came (or that none came)."""
    sent = log.now()
    try:
        r = await client.request(method, path, **fields.pop("req", {}))
    except httpx.HTTPError as exc:
        log.write(ev, agent=agent, sent=sent, status=0, error=type(exc).__name__, **fields)
        return None
    log.write(ev, agent=agent, sent=sent, status=r.status_code, **fields)
    return r


@dataclass
class Floor:
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_supervising: bool = False  # set last: the processes are looked after until the very end
    assignments: int = 0


async def agent_loop(i: int, stack: Stack, email: str, log: Log, floor: Floor, args: argparse.Namespace) -> None:
    rng = random.Random(f"{args.seed}-{i}")
    client = Client(stack.base_url, email)
    client.recorded = set()  # type: ignore[attr-defined]
    try:
        while not floor.stop.is_set():
            try:
                await one_call(i, client, log, floor, rng, args)
            except Exception as exc:  # noqa: BLE001 - the agent carries on, as a person would; logged
                log.write("agent_error", agent=i, error=f"{type(exc).__name__}: {exc}"[:300])
                await asyncio.sleep(1)
        await finish(i, client, log)
    finally:
        await client.aclose()


async def one_call(
    i: int, client: Client, log: Log, floor: Floor, rng: random.Random, args: argparse.Namespace
) -> None:
    await call(client, log, "presence", "PUT", "/api/v1/agents/me/presence", i, req={"json": {"state": "available"}})
    r = await call(client, log, "next_call_try", "POST", "/api/v1/agents/me/next-call", i)
    if r is None or r.status_code >= 500:
        await asyncio.sleep(1)
        return
    if r.status_code == 409:  # holding a customer already (e.g. the answer of an earlier try was lost)
        await resume(i, client, log, rng)
        return
    if r.status_code != 200:
        await asyncio.sleep(1)
        return
    body = r.json()
    if not body.get("session_id"):
        log.write("next_call", agent=i, status=200, reason=body.get("reason"))
        await asyncio.sleep(2)
        return
    user_id = body["customer"]["user_id"] if body.get("customer") else None
    log.write(
        "next_call", agent=i, status=200, session_id=body["session_id"], user_id=user_id, queue=body["lease"]["queue"]
    )
    floor.assignments += 1
    await work_session(i, client, log, rng, body["session_id"], user_id, args)


async def resume(i: int, client: Client, log: Log, rng: random.Random) -> None:
    r = await call(client, log, "current", "GET", "/api/v1/calls/current", i)
    if r is None or r.status_code != 200:
        await asyncio.sleep(1)
        return
    view = r.json()
    log.write("resume", agent=i, session_id=view["session_id"], user_id=view["user_id"], state=view["state"])
    await work_session(i, client, log, rng, view["session_id"], view["user_id"], None)


async def state_of(i: int, client: Client, log: Log, sid: str) -> dict[str, Any] | None:
    try:
        r = await client.request("GET", f"/api/v1/calls/{sid}")
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


async def work_session(
    i: int,
    client: Client,
    log: Log,
    rng: random.Random,
    sid: str,
    user_id: int | None,
    args: argparse.Namespace | None,
    limit_s: float = 0.0,
) -> None:
    """Take the call from wherever it stands to its outcome, as an agent at the workspace would: dial
    when reserved, talk and hang up when live, record the outcome in wrap-up. A request that fails
    (the API restarting, Temporal down) is tried again on the next look; after SESSION_LIMIT_S the
    agent gives up on this session (logged: the session is stuck, not the agent's doing)."""
    deadline = time.monotonic() + (limit_s or SESSION_LIMIT_S)
    last_act = 0.0
    talked = False
    state = None
    while time.monotonic() < deadline:
        view = await state_of(i, client, log, sid)
        if view is None:
            await asyncio.sleep(1)
            continue
        state = view["state"]
        acting = time.monotonic() - last_act > 2
        if state == "reserved" and acting:
            last_act = time.monotonic()
            await call(client, log, "dial", "POST", f"/api/v1/calls/{sid}/dial", i, session_id=sid, user_id=user_id)
        elif state == "in_progress" and acting:
            if not talked:
                await asyncio.sleep(rng.uniform(0.5, 2.0))  # the conversation
                talked = True
            last_act = time.monotonic()
            await call(client, log, "hangup", "POST", f"/api/v1/calls/{sid}/hangup", i, session_id=sid, user_id=user_id)
        if state == "wrap_up" and sid in client.recorded:  # type: ignore[attr-defined]
            pass  # recorded (2xx) already: the session is closing; wait for it, never a second outcome
        elif state == "wrap_up":
            await record_outcome(i, client, log, rng, sid, user_id, bool(view.get("answered")), args)
            return
        elif state == "closed":
            log.write("session_left", agent=i, session_id=sid, user_id=user_id, state=state)
            return
        await asyncio.sleep(0.5)
    log.write("session_stuck", agent=i, session_id=sid, user_id=user_id, state=state)
    if not limit_s:
        await asyncio.sleep(5)


async def record_outcome(
    i: int,
    client: Client,
    log: Log,
    rng: random.Random,
    sid: str,
    user_id: int | None,
    answered: bool,
    args: argparse.Namespace | None,
) -> None:
    choices = ANSWERED if answered else UNANSWERED
    disposition = rng.choices(list(choices), weights=list(choices.values()))[0]
    payload: dict[str, Any] = {"disposition": disposition}
    if disposition == "callback_requested":
        payload["callback_at"] = (datetime.now(UTC) + timedelta(seconds=rng.uniform(90, 180))).isoformat()
    deadline = time.monotonic() + SESSION_LIMIT_S
    while time.monotonic() < deadline:
        r = await call(
            client, log, "outcome", "POST", f"/api/v1/calls/{sid}/outcome", i,
            req={"json": payload}, session_id=sid, user_id=user_id,
            disposition=disposition, callback_at=payload.get("callback_at"),
        )  # fmt: skip
        if r is not None and r.status_code < 500:
            if r.status_code < 300:
                client.recorded.add(sid)  # type: ignore[attr-defined]
            break
        await asyncio.sleep(1)
    if args is not None and user_id is not None and rng.random() < args.text_share:
        await call(
            client, log, "text", "POST", f"/api/v1/sms/customers/{user_id}/messages", i,
            req={"json": {"text": TEXT}}, user_id=user_id,
        )  # fmt: skip


async def finish(i: int, client: Client, log: Log) -> None:
    """At the end: an agent still holding a customer finishes that call; one who cannot is stuck."""
    deadline = time.monotonic() + 180
    rng = random.Random(i)
    while time.monotonic() < deadline:
        r = await call(client, log, "current", "GET", "/api/v1/calls/current", i)
        if r is not None and r.status_code == 204:
            return
        if r is not None and r.status_code == 200:
            view = r.json()
            left = deadline - time.monotonic()
            if left > 1:
                await work_session(i, client, log, rng, view["session_id"], view["user_id"], None, left)
        else:
            await asyncio.sleep(1)
    log.write("agent_stuck", agent=i, why="still holding a customer 180 s after the run stopped")


async def cdc_writer(stack: Stack, log: Log, floor: Floor, rate: float, users: int, seed: Any) -> None:
    """The main app writing to the replica: requirements pending/fulfilled, claims moving, users
    flagged; each change goes through the binlog to the publisher and the queues."""
    rng = random.Random(f"cdc-{seed}")
    engine = create_async_engine(f"mysql+aiomysql://root@127.0.0.1:{stack.mariadb_port}/claims_chaos", pool_size=2)
    try:
        while not floor.stop.is_set():
            await asyncio.sleep(rng.expovariate(rate) if rate > 0 else 3600)
            user = rng.randint(1, users)
            kind = rng.choice(("requirement", "claim", "user"))
            try:
                async with engine.begin() as conn:
                    if kind == "requirement":
                        status = rng.choice(("PENDING", "FULFILLED"))
                        await conn.execute(
                            text(
                                "UPDATE claim_requirements SET status = :s WHERE id = "
                                "(SELECT id FROM (SELECT r.id FROM claim_requirements r JOIN claims c "
                                "ON c.id = r.claim_id WHERE c.user_id = :u ORDER BY r.id LIMIT 1) AS x)"
                            ),
                            {"s": status, "u": user},
                        )
                    elif kind == "claim":
                        status = rng.choice(("in_progress", "documents_required", "submitted_to_lender"))
                        await conn.execute(
                            text(
                                "UPDATE claims SET status = :s WHERE id = (SELECT id FROM (SELECT id FROM claims "
                                "WHERE user_id = :u ORDER BY id LIMIT 1) AS x)"
                            ),
                            {"s": status, "u": user},
                        )
                    else:
                        status = rng.choice(("active", "active", "vulnerable"))
                        await conn.execute(text("UPDATE users SET status = :s WHERE id = :u"), {"s": status, "u": user})
                log.write("cdc_write", user_id=user, kind=kind, value=status)
            except Exception as exc:  # noqa: BLE001
                log.write("cdc_write_error", user_id=user, kind=kind, error=type(exc).__name__)
    finally:
        await engine.dispose()


def _proc(group: services.ProcessGroup, name: str) -> Any:
    return next(p for n, p in group.started if n == name)


async def inject(kind: str, stack: Stack, log: Log, args: argparse.Namespace) -> None:
    started = log.now()
    log.write("fault_start", kind=kind)
    if kind.startswith("kill_"):
        name = kind.removeprefix("kill_")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(_proc(stack.app, name).pid, signal.SIGKILL)
    elif kind == "restart_temporal":
        proc = _proc(stack.services, "temporal")
        await asyncio.to_thread(services.stop_pid, proc.pid, 10.0, proc)
        await asyncio.sleep(2)
        proc = stack.services.restart("temporal")
        port = int(stack.settings.temporal_address.rsplit(":", 1)[1])
        await asyncio.to_thread(services.wait_for, lambda: services.port_open("127.0.0.1", port), "Temporal", 60, proc)
    elif kind == "pause_worker":
        pid = _proc(stack.app, "worker").pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGSTOP)
        await asyncio.sleep(args.lease_ttl_s + 5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT)
    elif kind == "flush_redis":
        redis = Redis.from_url(stack.redis_url)
        try:
            await redis.flushall()
        finally:
            await redis.aclose()
    elif kind == "replica_outage":
        await stack.proxy.cut()
        await asyncio.sleep(args.replica_outage_s)
        await stack.proxy.restore()
    log.write("fault_end", kind=kind, started=started)


async def recovered(log_path: Path, since: float, timeout: float, log: Log) -> None:
    """Wait (at most ``timeout``) until an agent got a customer from next-call after ``since``."""
    deadline = time.monotonic() + timeout
    offset = 0
    while time.monotonic() < deadline:
        with log_path.open() as f:
            f.seek(offset)
            chunk = f.read()
        cut = chunk.rfind("\n") + 1
        offset += cut
        for line in chunk[:cut].splitlines():
            e = json.loads(line)
            if e["ev"] == "next_call" and e.get("session_id") and e["t"] > since:
                return
        await asyncio.sleep(0.5)


async def chaos_loop(stack: Stack, log: Log, floor: Floor, args: argparse.Namespace) -> None:
    rng = random.Random(f"faults-{args.seed}")
    kinds = [k for k in args.kinds.split(",") if k]
    left = {k: args.faults_each for k in kinds}
    # Every planned fault is injected, even past --minutes (the agents work on until the last has
    # been recovered from); --minutes is the least the agents work.
    while not floor.stop.is_set() and any(left.values()):
        await asyncio.sleep(rng.uniform(*args.gap_s))
        pool = [k for k, n in left.items() if n > 0]
        kind = rng.choice(pool)
        left[kind] -= 1
        await inject(kind, stack, log, args)
        await recovered(log.path, log.now(), args.recovery_timeout_s, log)


async def supervise(stack: Stack, floor: Floor, log: Log) -> None:
    """devstack's Supervisor over the product's processes: a killed one starts again with back-off."""
    from io import StringIO

    out = StringIO()
    sup = Supervisor(stack.app, APP, max_crashes=10**6, window_s=60, initial_backoff_s=0.5, max_backoff_s=5, out=out)
    while True:
        sup.poll()
        for line in out.getvalue().splitlines():
            log.write("supervisor", line=line)
        out.seek(0)
        out.truncate()
        if floor.stop.is_set() and floor.stop_supervising:
            return
        await asyncio.sleep(0.3)


async def rebuild_watch(admin: Client, log: Log, floor: Floor) -> None:
    """Log every rebuild's report as it appears (the scheduled ones and the harness's): the checker
    holds each to drift 0, except the first after a Redis flush, which refills what the flush lost."""
    seen: str | None = None
    while not floor.stop_supervising:
        with contextlib.suppress(httpx.HTTPError):
            r = await admin.request("GET", "/api/v1/queues/rebuild/last")
            if r.status_code == 200 and r.json().get("run_id") != seen:
                seen = r.json().get("run_id")
                log_rebuild(log, r.json())
        await asyncio.sleep(2)


def log_rebuild(log: Log, report: dict[str, Any]) -> None:
    log.write(
        "rebuild_report",
        run_id=report.get("run_id"),
        trigger=report.get("trigger"),
        fill=report.get("fill"),
        drift_total=report.get("drift_total"),
        drift=report.get("drift"),
    )


async def admin_client(stack: Stack, email: str) -> Client:
    return Client(stack.base_url, email)


async def fill_queues(stack: Stack, admin: Client, log: Log) -> None:
    r = await admin.request("POST", "/api/v1/queues/rebuild")
    log.write("rebuild_start", status=r.status_code, purpose="initial fill")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        r = await admin.request("GET", "/api/v1/queues")
        if r.status_code == 200 and sum(q.get("depth", q.get("size", 0)) or 0 for q in r.json()) > 0:
            log.write("queues_filled", depths=r.json())
            return
        await asyncio.sleep(1)
    raise RuntimeError(f"the queues were not filled within 300 s: {r.text[:300]}")


async def cdc_settled(stack: Stack, admin: Client, log: Log, within_s: float = 90.0) -> None:
    """Wait until the consumer has applied the writers' last changes: the CDC queue empty (nothing
    waiting, nothing in flight) and the applied count unchanged for three looks two seconds apart (the
    publisher's lag under a second), or ``within_s``. The count alone is not enough: a Redis flush
    resets it, and a consumer that has not resumed yet shows an unchanged count too."""
    from dialler.integrations.sqs import sqs_client

    sqs = sqs_client(stack.settings)
    url = (await asyncio.to_thread(sqs.get_queue_url, QueueName=stack.settings.cdc_queue_name))["QueueUrl"]
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    deadline = time.monotonic() + within_s
    seen: list[tuple[int, int]] = []
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = await admin.request("GET", "/api/v1/cdc/status")
        attributes = (await asyncio.to_thread(sqs.get_queue_attributes, QueueUrl=url, AttributeNames=names))[
            "Attributes"
        ]
        waiting = sum(int(attributes.get(n, 0)) for n in names)
        if r.status_code == 200:
            status = r.json()
            seen.append((status["records_applied"], waiting))
            quiet = len(seen) >= 3 and len(set(seen[-3:])) == 1 and seen[-1][1] == 0
            if quiet and (status.get("publisher_lag_s") or 0) < 1:
                break
        await asyncio.sleep(2)
    log.write("cdc_settled", status=status, waiting=seen[-1][1] if seen else None)


async def sessions_closed(stack: Stack, log: Log) -> None:
    """Wait until no call session is open: with the agents stopped, the last ones close by their
    wrap-up limit. Until then a session's close (PostgreSQL) and its lease's release (Redis) can fall on
    either side of a rebuild's read, which would count a customer in flight as drift."""
    from dialler.runtime import Stores

    stores = Stores.open(stack.settings)
    deadline = time.monotonic() + stack.settings.wrap_up_timeout_s + 60
    open_sessions = -1
    try:
        while time.monotonic() < deadline:
            async with stores.postgres.connect() as conn:
                open_sessions = int(
                    await conn.scalar(text("SELECT count(*) FROM call_sessions WHERE closed_at IS NULL")) or 0
                )
            if open_sessions == 0:
                break
            await asyncio.sleep(1)
    finally:
        await stores.close()
    log.write("sessions_closed", still_open=open_sessions)


async def final_rebuild(stack: Stack, admin: Client, log: Log, purpose: str) -> dict[str, Any] | None:
    before = await admin.request("GET", "/api/v1/queues/rebuild/last")
    before_id = before.json().get("run_id") if before.status_code == 200 else None
    r = await admin.request("POST", "/api/v1/queues/rebuild")
    log.write("rebuild_start", status=r.status_code, purpose=purpose)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        last = await admin.request("GET", "/api/v1/queues/rebuild/last")
        if last.status_code == 200 and last.json().get("run_id") != before_id:
            return dict(last.json())
        await asyncio.sleep(1)
    return None


async def read_final(stack: Stack, admin: Client, emails: list[str]) -> dict[str, Any]:
    from dialler.queues.runtime import queue_engine
    from dialler.runtime import Stores

    stores = Stores.open(stack.settings)
    final: dict[str, Any] = {"clock_offset_s": stack.settings.clock_offset_s}
    try:
        async with stores.postgres.connect() as conn:

            async def rows(sql: str) -> list[dict[str, Any]]:
                return [dict(r._mapping) for r in (await conn.execute(text(sql))).all()]

            final["call_outcomes"] = await rows("SELECT call_session_id::text, user_id, disposition FROM call_outcomes")
            final["call_sessions"] = await rows(
                "SELECT id::text AS id, user_id, agent_id, phone_e164, status, "
                "(twilio_call_sid IS NOT NULL) AS dialled FROM call_sessions"
            )
            final["callbacks"] = await rows("SELECT user_id, status, due_at, source FROM callbacks")
            final["do_not_call"] = await rows("SELECT user_id, source FROM do_not_call")
            agents = await rows("SELECT id, email FROM agents WHERE role = 'agent'")
        for row in final["callbacks"]:
            row["due_at"] = (
                row["due_at"].replace(tzinfo=UTC).isoformat()
                if row["due_at"].tzinfo is None
                else row["due_at"].isoformat()
            )
        engine = queue_engine(stores)
        listed = []
        presence = await admin.request("GET", "/api/v1/agents/presence")
        by_id = {}
        if presence.status_code == 200:
            body = presence.json()
            for item in body.get("items", body if isinstance(body, list) else []):
                by_id[item.get("agent_id") or item.get("id")] = item.get("state")
        index = {e: n for n, e in enumerate(emails)}
        for a in agents:
            lease = await engine.lease_of_agent(a["id"])
            listed.append(
                {
                    "agent": index.get(a["email"], a["id"]),
                    "agent_id": a["id"],
                    "presence": by_id.get(a["id"]),
                    "lease": lease is not None,
                    "session": lease is not None,
                }
            )
        final["agents"] = listed
        sqs = stores.sqs()
        dlq = sqs.get_queue_url(QueueName=stack.settings.cdc_dlq_name)["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
        final["dlq_messages"] = int(attrs["Attributes"]["ApproximateNumberOfMessages"])
    finally:
        await stores.close()
    await _callback_notes(stack, final["callbacks"])
    async with httpx.AsyncClient(timeout=30) as http:
        final["emulator_calls"] = (await http.get(f"{stack.emulator_url}/_emulator/calls")).json()
    return final


async def _callback_notes(stack: Stack, callbacks: list[dict[str, Any]]) -> None:
    """Each live callback's own account of its times (the workflow's notes: "booked by call for …",
    "moved to …: <the rule that closed the time>"), so that a callback the compliance gate moved
    is told from one booked at the wrong time."""
    from dialler.runtime import connect_temporal
    from workflows.callback import CallbackWorkflow
    from workflows.callback_client import callback_handle

    client = await connect_temporal(stack.settings)
    for row in callbacks:
        if row["status"] not in ("scheduled", "due", "open"):
            continue
        try:
            view = await callback_handle(client, row["user_id"]).query(CallbackWorkflow.view)
        except Exception as exc:  # noqa: BLE001 - the checker then judges the row by its time alone
            row["notes_error"] = type(exc).__name__
            continue
        row["notes"] = list(view.history)


async def tear_down(stack: Stack, keep: bool) -> None:
    stack.app.stop_all()
    await stack.proxy.close()
    stack.services.stop_all()
    if not keep:
        await _drop_database(stack.pg_name)


async def run(args: argparse.Namespace) -> chaos_check.Report:
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    out = (args.out or ROOT / ".run" / "chaos" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "chaos.jsonl")
    log.write("start", args={k: str(v) for k, v in vars(args).items()})
    stack = await bring_up(args, out, log)
    floor = Floor()
    watcher: asyncio.Task[None] | None = None
    supervisor = asyncio.create_task(supervise(stack, floor, log))
    try:
        emails, admin_email = await create_people(stack, args.agents)
        admin = await admin_client(stack, admin_email)
        await fill_queues(stack, admin, log)
        watcher = asyncio.create_task(rebuild_watch(await admin_client(stack, admin_email), log, floor))
        end_at = time.monotonic() + args.minutes * 60
        agents = [asyncio.create_task(agent_loop(i, stack, e, log, floor, args)) for i, e in enumerate(emails)]
        writer = asyncio.create_task(cdc_writer(stack, log, floor, args.cdc_writes_per_s, args.users, args.seed))
        await chaos_loop(stack, log, floor, args)
        while time.monotonic() < end_at:
            await asyncio.sleep(1)
        log.write("stopping", assignments=floor.assignments)
        floor.stop.set()
        await asyncio.gather(*agents, writer, return_exceptions=True)
        await sessions_closed(stack, log)
        await cdc_settled(stack, admin, log)
        # A first rebuild refills what a late Redis flush lost (one after a flush is exempt from the
        # drift rule); the second, after CDC has settled again, is the drift check proper.
        settle = await final_rebuild(stack, admin, log, "settle")
        if settle:
            log_rebuild(log, settle)
        await cdc_settled(stack, admin, log)
        rebuild = await final_rebuild(stack, admin, log, "final drift check")
        if rebuild:
            log_rebuild(log, rebuild)
        final = await read_final(stack, admin, emails)
        final["drift"] = rebuild.get("drift") if rebuild else None
        final["drift_total"] = rebuild.get("drift_total") if rebuild else None
        final["rebuild_run_id"] = rebuild.get("run_id") if rebuild else None
        log.write("final", **final)
        await admin.aclose()
    finally:
        floor.stop.set()
        floor.stop_supervising = True
        await asyncio.gather(supervisor, return_exceptions=True)
        if watcher is not None:
            await asyncio.gather(watcher, return_exceptions=True)
        await tear_down(stack, args.keep)
        log.close()
    report = chaos_check.check(chaos_check.read_log(out / "chaos.jsonl"))
    (out / "report.json").write_text(json.dumps(report.to_json(), indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # asyncio.run cancels the run: its finally stops everything by PID

    signal.signal(signal.SIGTERM, interrupted)
    report = asyncio.run(run(args))
    print(json.dumps(report.to_json(), indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
