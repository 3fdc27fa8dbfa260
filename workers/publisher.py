"""``python -m workers.publisher``: the CDC binlog publisher (the local stand-in for AWS DMS).

Reads the replica's row binlog and sends DMS-shaped change records to the SQS change queue, with a
PostgreSQL checkpoint; Prometheus metrics on ``DIALLER_PUBLISHER_METRICS_PORT`` (default 9465), status
in Redis for the supervisor route. SIGTERM/SIGINT stop it gracefully: what was read is sent and
checkpointed first. A checkpoint from another server, or at a position the server no longer has,
is dropped by the publisher itself: it starts at the binlog's end and starts a full queue rebuild
(QueueRebuildWorkflow, trigger ``cdc``). ``--reset-checkpoint`` forgets the checkpoint by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from prometheus_client import start_http_server

from dialler.cdc.publisher import Publisher, PublisherError, PublisherOptions, delete_checkpoint
from dialler.config import Settings, mask_url, settings_or_exit
from dialler.logs import configure_logging
from dialler.runtime import Stores, connect_temporal
from workflows.queue_rebuild_client import start_rebuild

log = logging.getLogger("dialler.publisher")


async def serve(settings: Settings, options: PublisherOptions, *, reset_checkpoint: bool = False) -> None:
    stores = Stores.open(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if reset_checkpoint:
            try:
                await delete_checkpoint(stores.postgres, options.checkpoint_name)
            except Exception as exc:
                raise PublisherError(f"PostgreSQL at {mask_url(settings.postgres_url)} is unreachable: {exc}") from None
            log.warning("checkpoint %r reset: starting at the binlog's current end", options.checkpoint_name)
        publisher = Publisher(
            settings,
            postgres=stores.postgres,
            redis=stores.redis,
            options=options,
            request_rebuild=rebuild_requester(settings),
        )
        if options.metrics_port:
            try:
                start_http_server(options.metrics_port, addr=options.metrics_host, registry=publisher.registry)
            except OSError as exc:
                raise PublisherError(
                    f"cannot serve metrics on {options.metrics_host}:{options.metrics_port}: {exc.strerror or exc}"
                ) from None
            log.info("metrics on http://%s:%d/metrics", options.metrics_host, options.metrics_port)
        await publisher.run(stop)
    finally:
        await stores.close()


def rebuild_requester(settings: Settings) -> Callable[[str], Awaitable[None]]:
    """Starts a QueueRebuildWorkflow (the worker runs it). Temporal is connected to only when a
    rebuild is owed: the publisher does not otherwise need it."""

    async def request(reason: str) -> None:
        client = await connect_temporal(settings)
        handle = await start_rebuild(client, settings, trigger="cdc")
        log.info("started %s for: %s", handle.id, reason)

    return request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.publisher", description=__doc__)
    parser.add_argument("--reset-checkpoint", action="store_true", help="start at the binlog's current end")
    args = parser.parse_args(argv)
    settings = settings_or_exit()  # a bad setting (a DIALLER_PUBLISHER_* value too): one line each, exit 2
    configure_logging(settings)
    options = PublisherOptions.from_settings(settings)
    try:
        asyncio.run(serve(settings, options, reset_checkpoint=args.reset_checkpoint))
    except PublisherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # See LOCAL-STACK.md: exit without interpreter teardown; the binlog reader is a daemon thread.
    os._exit(code)
