"""The SQS client the publisher sends with."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from dialler.config import Settings


def publisher_sqs_client(settings: Settings, endpoint_url: str | None = None) -> Any:
    """A boto3 SQS client with short timeouts: the publisher retries on its own, and a dead endpoint
    must show up in seconds, not after botocore's default minute."""
    return boto3.client(
        "sqs",
        endpoint_url=endpoint_url or settings.sqs_endpoint_url,
        region_name=settings.aws_region,
        aws_access_key_id=settings.aws_access_key_id.get_secret_value(),
        aws_secret_access_key=settings.aws_secret_access_key.get_secret_value(),
        config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"}),
    )
