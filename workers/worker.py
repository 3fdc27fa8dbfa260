"""``python -m workers.worker``: the Temporal worker. Registers every workflow and activity, creates
the periodic schedules idempotently, and shuts down gracefully on SIGTERM/SIGINT (running activities
finish or are retried elsewhere; workflow state lives in Temporal, so nothing is lost)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.plugin import SimplePlugin
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from dialler.config import Settings, settings_or_exit
from dialler.integrations.twilio import Telephony, TwilioTelephony
from dialler.logs import configure_logging
from dialler.queues.rebuild_pool import RebuildPool
from dialler.runtime import Stores, connect_temporal
from workers.registry import activities_for, on_worker_start, workflows

log = logging.getLogger("dialler.worker")

# The sandbox re-runs a workflow's own module for each run; everything it reaches outside it (our
# domain, activities and the libraries under them) is passed through: imported once, outside. The
# workflows import these under ``imports_passed_through`` already; naming the packages also covers a
# library's late import inside a workflow task (a lazy import, a finalizer the garbage collector runs
# there), which would otherwise load a second copy of the library inside the sandbox. The checks on
# what workflow code may call (clocks, randomness, I/O) apply all the same.
SANDBOX_RESTRICTIONS = SandboxRestrictions.default.with_passthrough_modules(
    "activities",
    "dialler",
    "aiomysql",
    "asyncpg",
    "boto3",
    "botocore",
    "cryptography",
    "dateutil",
    "hiredis",
    "holidays",
    "httpx",
    "phonenumbers",
    "pydantic",
    "pydantic_core",
    "pymysql",
    "redis",
    "sqlalchemy",
    "twilio",
)


def sandboxed_runner() -> SandboxedWorkflowRunner:
    """A runner per worker or replayer: each one sets its own failure types on it."""
    return SandboxedWorkflowRunner(restrictions=SANDBOX_RESTRICTIONS)


def workflow_runner(settings: Settings) -> WorkflowRunner:
    return sandboxed_runner() if settings.workflows_sandboxed else UnsandboxedWorkflowRunner()


def build_worker(
    client: Client, stores: Stores, telephony: Telephony, *, task_queue: str | None = None, warm: bool = False
) -> Worker:
    # The rebuild's processes start with the first rebuild (``warm``: with the worker) and stop when
    # the worker has stopped. Tests leave them cold: most never rebuild.
    rebuild_pool = RebuildPool(stores.settings)
    if warm:
        rebuild_pool.warm()
    return Worker(
        client,
        task_queue=task_queue or stores.settings.temporal_task_queue,
        workflows=workflows(),
        activities=activities_for(stores, client, telephony, rebuild_pool),
        # Blocking SDK calls (boto3, twilio) go through asyncio.to_thread inside async activities.
        activity_executor=ThreadPoolExecutor(max_workers=8),
        graceful_shutdown_timeout=timedelta(seconds=20),
        workflow_runner=workflow_runner(stores.settings),
        plugins=[SimplePlugin("dialler.rebuild_pool", run_context=rebuild_pool.running)],
    )


def worker_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime exporting the SDK's metrics (pollers, slots, task latencies, activity
    failures: ``temporal_*``) on ``worker_metrics_address`` for Prometheus; None when unset."""
    if not settings.worker_metrics_address:
        return None
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=settings.worker_metrics_address)))


async def serve(settings: Settings) -> None:
    client = await connect_temporal(settings, worker_runtime(settings))
    stores = Stores.open(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The one telephony: Twilio through its SDK (in development, the emulator at twilio_api_base_url).
    telephony = TwilioTelephony(settings)
    try:
        await on_worker_start(client, settings)
        async with build_worker(client, stores, telephony, warm=True):
            log.info("worker polling task queue %r", settings.temporal_task_queue)
            await stop.wait()
            log.info("shutting down")
    finally:
        await telephony.aclose()
        await stores.close()


def main() -> int:
    settings = settings_or_exit()
    configure_logging(settings)
    try:
        asyncio.run(serve(settings))
    except RuntimeError as exc:
        print(f"error: Temporal at {settings.temporal_address} is unreachable: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # SDK issue #300: the interpreter can abort at exit after using the SDK
