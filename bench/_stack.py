"""Shared plumbing for the end-to-end benches: private services, a fresh PostgreSQL database, Settings.

Follows tests/conftest.py: MariaDB (row binlog) and moto started by devstack.services on free ports
under .run/bench-<pid> and stopped by PID; the Temporal dev server through
WorkflowEnvironment.start_local (WAL pragmas); the machine's PostgreSQL (one ``bench_*`` database,
dropped at the end) and Redis (a ``bench:<id>`` key prefix, deleted at the end).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from redis.asyncio import Redis  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from devstack import services  # noqa: E402
from dialler import search_attributes  # noqa: E402
from dialler.config import Settings  # noqa: E402
from dialler.security.codec import data_converter  # noqa: E402

POSTGRES_ADMIN = os.environ.get("BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def in_hours_offset_s() -> int:
    """Clock offset to a Wednesday 11:00 in London (same rule as tests/conftest.py)."""
    from dialler.compliance.gates import bank_holidays

    london = datetime.now(UTC).astimezone(ZoneInfo("Europe/London"))
    target = london + timedelta(days=(2 - london.weekday()) % 7 or 7)
    while target.date() in bank_holidays("GB", "ENG", target.year):
        target += timedelta(days=7)
    target = target.replace(hour=11, minute=0, second=0, microsecond=0)
    return int((target - london).total_seconds())


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine() -> str:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} cpu ({model}), {mem:.0f} GiB"


def rss_mb(pid: int | None = None) -> float:
    return psutil.Process(pid or os.getpid()).memory_info().rss / 2**20


class RssSampler:
    """Samples RSS and CPU time of processes in a background thread. The processes named in
    ``with_children`` are counted with their children (e.g. uvicorn's worker processes): RSS summed at
    each sample, CPU summed at the end."""

    def __init__(self, pids: dict[str, int], every: float = 0.2, with_children: frozenset[str] = frozenset()) -> None:
        import threading

        self.with_children = with_children
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = dict.fromkeys(pids, 0.0)
        self.cpu0 = {n: self._cpu(p) for n, p in self.procs.items()}
        self.t0 = time.monotonic()
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self, p: psutil.Process) -> list[psutil.Process]:
        if not any(self.procs[n] is p for n in self.with_children):
            return [p]
        try:
            return [p, *p.children(recursive=True)]
        except psutil.Error:
            return [p]

    def _cpu(self, p: psutil.Process) -> float:
        total = 0.0
        for q in self._tree(p):
            with contextlib.suppress(psutil.Error):
                total += sum(q.cpu_times()[:2])
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, p in self.procs.items():
                rss = 0.0
                for q in self._tree(p):
                    with contextlib.suppress(psutil.Error):
                        rss += q.memory_info().rss / 2**20
                self.peak[name] = max(self.peak[name], rss)
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.elapsed = time.monotonic() - self.t0
        self.cpu = {}
        for n, p in self.procs.items():
            try:
                p.cpu_times()
                self.cpu[n] = self._cpu(p) - self.cpu0[n]
            except psutil.Error:
                self.cpu[n] = float("nan")

    def cpu_pct(self, name: str) -> float:
        return 100 * self.cpu[name] / self.elapsed if self.elapsed else 0.0


class Stack:
    """Services for one bench run. Use as ``async with Stack(...) as stack``."""

    def __init__(
        self, *, mariadb: bool = False, moto: bool = False, temporal: bool = False, api_port: int | None = None
    ) -> None:
        self.want_mariadb, self.want_moto, self.want_temporal = mariadb, moto, temporal
        self.unique = uuid.uuid4().hex[:10]
        self.run_dir = ROOT / ".run" / f"bench-{os.getpid()}-{self.unique}"
        self.group = services.ProcessGroup(self.run_dir)
        self.pg_name = f"bench_{self.unique}"
        self.prefix = f"bench:{self.unique}"
        self.mariadb_url: str | None = None
        self.replica_url = "mysql+aiomysql://root@127.0.0.1:1/unused"
        self.sqs_endpoint: str | None = None
        self.env: Any = None
        self.temporal_address = "127.0.0.1:1"
        self.api_port = api_port or services.free_port()
        self.mariadb_pid: int | None = None
        self.moto_pid: int | None = None
        self.twilio_url: str | None = None
        self._exit = AsyncExitStack()

    async def __aenter__(self) -> Stack:
        try:
            admin = create_async_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
            async with admin.connect() as conn:
                await conn.execute(text(f'CREATE DATABASE "{self.pg_name}"'))
            await admin.dispose()
            self.postgres_url = make_url(POSTGRES_ADMIN).set(database=self.pg_name).render_as_string(False)
            from dialler.db.migrate import upgrade

            await upgrade(self.postgres_url)
            if self.want_mariadb:
                port = services.free_port()
                proc = services.start_mariadb(self.group, port)
                self.mariadb_pid = proc.pid
                self.mariadb_url = f"mysql+aiomysql://root@127.0.0.1:{port}/"
                self.replica_url = self.mariadb_url + "claims_bench"
            if self.want_moto:
                port = services.free_port()
                self.moto_pid = services.start_moto(self.group, port).pid
                self.sqs_endpoint = f"http://127.0.0.1:{port}"
            # Twilio: the emulator, as in development and the tests (the product has no other telephony).
            defaults = Settings(_env_file=None)  # type: ignore[call-arg]
            port = services.free_port()
            services.start_twilio_emulator(
                self.group,
                port,
                account_sid=defaults.twilio_account_sid,
                auth_token=defaults.twilio_auth_token.get_secret_value(),
                api_keys={defaults.twilio_api_key_sid: defaults.twilio_api_key_secret.get_secret_value()},
                demo_rules=False,
            )
            self.twilio_url = f"http://127.0.0.1:{port}"
            if self.want_temporal:
                from temporalio.testing import WorkflowEnvironment

                self.env = await WorkflowEnvironment.start_local(
                    dev_server_existing_path=str(services.VENV_BIN / "temporal"),
                    search_attributes=search_attributes.ALL,
                    data_converter=data_converter(Settings(_env_file=None)),  # type: ignore[call-arg]
                    dev_server_extra_args=[
                        "--sqlite-pragma",
                        "journal_mode=wal",
                        "--sqlite-pragma",
                        "synchronous=off",
                    ],
                )
                self.temporal_address = self.env.client.service_client.config.target_host
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = dict(
            _env_file=None,
            run_dir=self.run_dir / "app",
            postgres_url=self.postgres_url,
            replica_url=self.replica_url,
            redis_url=REDIS_URL,
            redis_prefix=self.prefix,
            temporal_address=self.temporal_address,
            temporal_task_queue=f"bench-{self.unique}",
            sqs_endpoint_url=self.sqs_endpoint,
            cdc_queue_name=f"cdc-{self.unique}",
            cdc_dlq_name=f"cdc-dlq-{self.unique}",
            clock_offset_s=in_hours_offset_s(),
            public_base_url=f"http://127.0.0.1:{self.api_port}",
            twilio_api_base_url=self.twilio_url,
        )
        values.update(overrides)
        return Settings(**values)

    async def close(self) -> None:
        errors = []
        try:
            await self._exit.aclose()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        if self.env is not None:
            try:
                await self.env.shutdown()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            self.env = None
        self.group.stop_all()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        redis = Redis.from_url(REDIS_URL)
        try:
            keys = [k async for k in redis.scan_iter(match=f"{self.prefix}*", count=5000)]
            for i in range(0, len(keys), 1000):
                await redis.unlink(*keys[i : i + 1000])
        finally:
            await redis.aclose()
        admin = create_async_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)'))
        await admin.dispose()
        if errors:
            print(f"cleanup errors: {errors!r}", file=sys.stderr)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    f = int(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def exit_now(code: int = 0) -> None:
    """SDK issue #300: leave without interpreter teardown once output is flushed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
