"""``make run``: bring the whole local stack up, in the foreground, and take it down on Ctrl-C.

Each service whose URL points at a running instance is used as it is; the project's own stand-ins
(Temporal dev server, moto SQS, a MariaDB replica with row binlog) are started when nothing answers
on their configured loopback address. Everything started here is stopped by PID on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from devstack import services
from devstack.services import ProcessGroup, ServiceError, unreachable
from devstack.supervisor import Supervisor
from devstack.twilio_emulator.client import EmulatorClient
from dialler.config import Settings, get_settings, mask_url
from dialler.integrations.sqs import ensure_cdc_queues
from dialler.integrations.twilio_voice import abandoned_message
from workers import cli

log = logging.getLogger("dialler.stack")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
OWN_REPLICA_PORT = 13306


# The local Twilio of a development stack (devstack/twilio_emulator; its README uses the same port).
EMULATOR_PORT = 4010


@dataclass
class Endpoints:
    """What the children must use, after the own-instance decisions."""

    replica_url: str
    twilio_api_base_url: str | None = None  # the emulator, when the stack runs one
    voice_fallback_url: str | None = None  # the information message as the emulator's TwiML Bin

    def env(self) -> dict[str, str]:
        env = {"DIALLER_REPLICA_URL": self.replica_url}
        if self.twilio_api_base_url:
            # The product's one telephony path (the twilio SDK), pointed at the emulator.
            env |= {"DIALLER_TWILIO_API_BASE_URL": self.twilio_api_base_url}
        if self.voice_fallback_url:
            env |= {"DIALLER_VOICE_FALLBACK_URL": self.voice_fallback_url}
        return env


def uses_emulator(settings: Settings) -> bool:
    """A development stack talks to the Twilio emulator unless pointed at a Twilio: its own emulator
    (``twilio_api_base_url``) or a real account (an account sid other than the placeholder)."""
    placeholder = type(settings).model_fields["twilio_account_sid"].default
    return (
        settings.environment != "production"
        and not settings.twilio_api_base_url
        and settings.twilio_account_sid == placeholder
    )


def ensure_twilio_emulator(settings: Settings, group: ProcessGroup) -> str | None:
    """Start the emulator (demo number rules on) for a development stack; its base URL, or None."""
    if not uses_emulator(settings):
        return None
    hooks = f"{settings.public_base_url.rstrip('/')}/api/v1/webhooks/twilio"
    if not services.port_open("127.0.0.1", EMULATOR_PORT):
        services.start_twilio_emulator(
            group,
            EMULATOR_PORT,
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            api_keys={settings.twilio_api_key_sid: settings.twilio_api_key_secret.get_secret_value()},
            sms_url=f"{hooks}/sms-inbound",
        )
    return f"http://127.0.0.1:{EMULATOR_PORT}"


def host_fallback(settings: Settings, emulator: EmulatorClient) -> str:
    """The information message as a TwiML Bin on the emulator, as production hosts it on Twilio
    (``dialler fallback-twiml``): its URL, for ``voice_fallback_url``."""
    return emulator.twiml_bin("information-message", abandoned_message(settings.company_name, settings.caller_id))


def emulated_fallback(settings: Settings, emulator_url: str | None) -> str | None:
    if emulator_url is None or settings.voice_fallback_url:
        return None
    client = EmulatorClient(emulator_url)
    try:
        return host_fallback(settings, client)
    finally:
        client.close()


async def check_postgres(settings: Settings) -> None:
    url = make_url(settings.postgres_url)
    admin = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            exists = await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": url.database})
            if not exists:
                await conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    except Exception as exc:
        raise unreachable("PostgreSQL", settings.postgres_url, _reason(exc)) from None
    finally:
        await admin.dispose()


async def check_redis(settings: Settings) -> None:
    client = Redis.from_url(settings.redis_url, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        raise unreachable("Redis", settings.redis_url, _reason(exc)) from None
    finally:
        await client.aclose()


async def replica_binlog_ok(url: str) -> bool:
    engine = create_async_engine(make_url(url).set(database=""))
    try:
        async with engine.connect() as conn:
            rows = dict(
                (await conn.execute(text("SHOW VARIABLES WHERE Variable_name IN ('log_bin', 'binlog_format')"))).all()
            )
    except Exception as exc:
        raise unreachable("MySQL replica", url, _reason(exc)) from None
    finally:
        await engine.dispose()
    return rows.get("log_bin") == "ON" and rows.get("binlog_format") == "ROW"


def _reason(exc: BaseException) -> str:
    text_ = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text_[:200]


async def prepare_replica(settings: Settings, group: ProcessGroup) -> str:
    """The replica URL to use: the configured one if it has a row binlog, else our own instance."""
    from devstack.seed import seed_replica
    from dialler.replica.schema import create_replica_tables

    url = settings.replica_url
    host, port = services.url_host_port(url, 3306)
    if not services.port_open(host, port):
        if host not in LOOPBACK:
            raise unreachable("MySQL replica", url, "connection refused")
        services.start_mariadb(group, port)
    elif not await replica_binlog_ok(url):
        log.warning("%s has no row binlog: starting the project's own replica for change capture", mask_url(url))
        url = str(make_url(url).set(host="127.0.0.1", port=OWN_REPLICA_PORT, username="root", password=None))
        services.start_mariadb(group, OWN_REPLICA_PORT)

    db = make_url(url).database
    writer = create_async_engine(make_url(url).set(database=""))
    try:
        async with writer.begin() as conn:
            await conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4"))
    except Exception as exc:
        raise unreachable("MySQL replica", url, _reason(exc)) from None
    finally:
        await writer.dispose()
    writer = create_async_engine(url)
    try:
        async with writer.begin() as conn:
            await create_replica_tables(conn)
    finally:
        await writer.dispose()
    report = await seed_replica(url, only_if_empty=True)
    if not report.skipped:
        log.info(
            "demo data: %s users, %s claims, %s requirements in %.1f s",
            report.users,
            report.claims,
            report.requirements,
            report.seconds,
        )
    return url


async def prepare_postgres(settings: Settings) -> None:
    from devstack.demo import ensure_demo_accounts
    from dialler.db.engines import create_postgres_engine, session_factory
    from dialler.db.migrate import upgrade

    await check_postgres(settings)
    await upgrade(settings.postgres_url)
    engine = create_postgres_engine(settings)
    try:
        async with session_factory(engine)() as session:
            await ensure_demo_accounts(session)
    finally:
        await engine.dispose()


def ensure_temporal(settings: Settings, group: ProcessGroup) -> None:
    host, port = settings.temporal_address.rsplit(":", 1)
    if services.port_open(host, int(port)):
        return
    if host not in LOOPBACK:
        raise unreachable("Temporal", settings.temporal_address, "connection refused")
    services.start_temporal(group, settings)


def ensure_sqs(settings: Settings, group: ProcessGroup) -> None:
    if settings.sqs_endpoint_url:
        host, port = services.url_host_port(settings.sqs_endpoint_url, 80)
        if not services.port_open(host, port):
            if host not in LOOPBACK:
                raise unreachable("SQS", settings.sqs_endpoint_url, "connection refused")
            services.start_moto(group, port)
    try:
        ensure_cdc_queues(settings)
    except Exception as exc:
        raise unreachable("SQS", settings.sqs_endpoint_url or "AWS", _reason(exc)) from None


async def bring_up(settings: Settings, group: ProcessGroup) -> Endpoints:
    await check_redis(settings)
    await prepare_postgres(settings)
    ensure_temporal(settings, group)
    await cli.temporal_setup(settings)  # what a deployment runs: `dialler temporal-setup`
    ensure_sqs(settings, group)
    replica_url = await prepare_replica(settings, group)
    emulator = ensure_twilio_emulator(settings, group)
    return Endpoints(
        replica_url=replica_url, twilio_api_base_url=emulator, voice_fallback_url=emulated_fallback(settings, emulator)
    )


APP_PROCESSES = ("worker", "publisher", "api")


def start_app_processes(settings: Settings, group: ProcessGroup, endpoints: Endpoints) -> None:
    python = sys.executable
    env = endpoints.env()
    group.start("worker", [python, "-m", "workers.worker"], env)
    group.start("publisher", [python, "-m", "workers.publisher"], env)
    group.start(
        "api",
        [python, "-m", "api"],
        env,
    )
    services.wait_for(
        lambda: services.port_open(settings.api_host, settings.api_port),
        "API",
        60,
        group.started[-1][1],
        group.log_path("api"),
    )


def _hp(url: str, default: int) -> str:
    host, port = services.url_host_port(url, default)
    return f"{host}:{port}"


def ports(settings: Settings, endpoints: Endpoints) -> list[tuple[str, str]]:
    """Every port the running stack listens on or uses, with what is there."""
    found = [
        ("Web UI + API", f"{settings.api_host}:{settings.api_port}"),
        ("Temporal", settings.temporal_address),
        ("Temporal UI", settings.temporal_ui_url.split("://", 1)[-1].rstrip("/")),
        ("SQS (moto)", _hp(settings.sqs_endpoint_url, 80)) if settings.sqs_endpoint_url else None,
        ("MySQL replica", _hp(endpoints.replica_url, 3306)),
        ("PostgreSQL", _hp(settings.postgres_url, 5432)),
        ("Redis", _hp(settings.redis_url, 6379)),
        ("Twilio (emu.)", _hp(endpoints.twilio_api_base_url, 80)) if endpoints.twilio_api_base_url else None,
        (
            ("CDC metrics", f"{settings.publisher_metrics_host}:{settings.publisher_metrics_port}/metrics")
            if settings.publisher_metrics_port
            else None
        ),
    ]
    return [p for p in found if p is not None]


# What an emulated line does, for the banner (the rules themselves: the emulator's DEMO_RULES).
_LINE_BEHAVIOUR = {
    "answer": "answer",
    "machine": "reach voicemail",
    "no-answer": "ring out (no answer)",
    "busy": "are busy",
    "failed": "fail",
}


def emulated_lines() -> str:
    from devstack.twilio_emulator.scripts import DEMO_RULES, CustomerScript

    rules = ", ".join(
        f"…{digit} {_LINE_BEHAVIOUR[str(script.behaviour)]}" for digit, script in sorted(DEMO_RULES.items())
    )
    return f"{rules}; every other number {_LINE_BEHAVIOUR[str(CustomerScript().behaviour)]}s"


def calling_hours_note(settings: Settings) -> list[str]:
    """Whether agents will be offered anyone now, and if not, how to get a demo that works now."""
    from dialler import clock
    from dialler.compliance import gates

    window = gates.calling_window(clock.now(settings), gates.CallingRules.from_settings(settings))
    lines = []
    if settings.clock_offset_s:
        shifted = clock.now(settings).astimezone(gates.CallingRules.from_settings(settings).tz)
        lines.append(
            f"  Demo clock    shifted {settings.clock_offset_s:+d} s: it is {shifted:%a %H:%M} for the dialler"
        )
    if not window.allowed:
        lines.append(f"  ! Outside calling hours ({window.explanation}): Next call will offer nobody.")
        if settings.environment != "production":
            lines.append("    For a demo in open hours now: Ctrl-C, then `make demo` (shifts the dialler's clock)")
    return lines


def banner(settings: Settings, endpoints: Endpoints) -> str:
    from devstack.demo import DEMO_ACCOUNTS

    base = settings.public_base_url.rstrip("/")
    logins = "\n".join(f"    {a.role:<10} {a.email:<22} {a.password}" for a in DEMO_ACCOUNTS)
    listening = "\n".join(f"    {name:<14}{where}" for name, where in ports(settings, endpoints))
    lines = [
        "",
        "RMC Dialler is running (Ctrl-C stops everything it started)",
        f"  Web UI        {base}/",
        f"  API docs      {base}/api/v1/docs",
        f"  Health        {base}/api/v1/health",
        f"  Temporal UI   {settings.temporal_ui_url}",
        f"  Logs          {settings.run_dir / 'logs'}",
        f"  Ports:\n{listening}",
        *calling_hours_note(settings),
    ]
    if endpoints.twilio_api_base_url:
        lines.append(f"  Phone lines   Twilio emulator, by the number's last digit: {emulated_lines()}")
    else:
        lines.append("  Phone lines   Twilio (the account in your settings): real calls")
    lines.append(f"  Demo logins (development only):\n{logins}")
    return "\n".join(lines) + "\n"


def demo_offset_s(settings: Settings) -> int:
    """The clock shift that puts the dialler half an hour into the next calling hours (0 when open now)."""
    from datetime import timedelta

    from dialler import clock
    from dialler.compliance import gates

    rules = gates.CallingRules.from_settings(settings)
    real = clock.instant()
    if gates.calling_window(real, rules).allowed:
        return 0
    opening = gates.next_allowed_slots(real, rules, 1)[0]
    target = opening + timedelta(minutes=30)
    if not gates.calling_window(target, rules).allowed:  # a window shorter than that: its start
        target = opening
    return int((target - real).total_seconds()) + 1


def run(settings: Settings) -> int:
    if settings.clock_offset_s:  # the children read their settings from the environment
        os.environ["DIALLER_CLOCK_OFFSET_S"] = str(settings.clock_offset_s)
    group = ProcessGroup(settings.run_dir)
    stop = {"requested": False}

    def request_stop(signum, frame):  # type: ignore[no-untyped-def]
        stop["requested"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        endpoints = asyncio.run(bring_up(settings, group))
        start_app_processes(settings, group, endpoints)
        print(banner(settings, endpoints), flush=True)
        # The app's own processes heal (see devstack/supervisor.py); the services under them
        # (Temporal, moto, MariaDB) exiting still stops the stack, with the reason.
        supervisor = Supervisor(group, APP_PROCESSES)
        while not stop["requested"]:
            failure = supervisor.poll()
            if failure is not None:
                log.error("%s", failure)
                return 1
            time.sleep(0.5)
        return 0
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping...", file=sys.stderr, flush=True)
        group.stop_all()


def down(settings: Settings) -> None:
    """Stop what a previous run left behind, by the PIDs it recorded."""
    pids = settings.run_dir / "pids"
    for pid_file in sorted(pids.glob("*.pid")) if pids.exists() else []:
        services.stop_pid(int(pid_file.read_text()))
        pid_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.stack", description=__doc__)
    parser.add_argument(
        "command", choices=["run", "demo", "down"], help="demo: run, in calling hours whatever the hour"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Their INFO lines on every start say nothing new (alembic's migrations, httpx's requests).
    for quiet in ("alembic", "httpx"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    settings = get_settings()
    if args.command == "down":
        down(settings)
        return 0
    if args.command == "demo":
        settings = settings.model_copy(update={"clock_offset_s": demo_offset_s(settings)})
    return run(settings)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
