"""``python -m api``: check every dependency, then serve. A dependency that does not answer stops
start-up with one line naming it (password masked) instead of a traceback."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys

import uvicorn

from dialler.config import Settings, settings_or_exit
from dialler.logs import configure_logging
from dialler.runtime import preflight


def share_metrics_between_processes(settings: Settings) -> None:
    """Each API process counts its own requests; Prometheus' multiprocess mode sums them at /metrics.
    The directory is emptied first: counts of a previous run would be added to this one's."""
    directory = settings.run_dir / "metrics-api"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(directory))


# An idle keep-alive connection is closed by the proxy in front (a load balancer: 60 s by default), never
# by us first: a server that closes one as the proxy reuses it makes that request fail (a 502, or
# "server disconnected" for a direct client).
KEEP_ALIVE_S = 75


def main() -> int:
    settings = settings_or_exit()
    configure_logging(settings)
    problems = asyncio.run(preflight(settings))
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if problems:
        return 1
    if settings.api_workers > 1:
        share_metrics_between_processes(settings)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        log_level="warning",
        # uvicorn's own dictConfig would give its loggers handlers without our RedactingFilter: with none,
        # its lines reach the root handler configure_logging set up. No access log: a request line carries
        # query strings (a number searched for) and magic-link paths; request counts are in the metrics.
        log_config=None,
        access_log=False,
        proxy_headers=False,  # forwarded headers: api/middleware.py, from trusted_proxies only
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
