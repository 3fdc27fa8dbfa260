"""``python -m api``: check every dependency, then serve. A dependency that does not answer stops
start-up with one line naming it (password masked) instead of a traceback."""

from __future__ import annotations

import asyncio
import sys

import uvicorn

from dialler.config import settings_or_exit
from dialler.logs import configure_logging
from dialler.runtime import preflight


def main() -> int:
    settings = settings_or_exit()
    configure_logging(settings)
    problems = asyncio.run(preflight(settings))
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if problems:
        return 1
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        log_level="warning",
        proxy_headers=False,  # forwarded headers: api/middleware.py, from trusted_proxies only
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
