"""Logging set-up shared by every process: one line per record, with context fields when present."""

from __future__ import annotations

import logging

from dialler.config import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format=FORMAT)
    # Third-party chatter at INFO drowns the dialler's own lines.
    for noisy in ("botocore", "boto3", "urllib3", "httpx", "httpcore", "temporalio.activity", "twilio.http_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
