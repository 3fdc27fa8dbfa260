"""SQS through boto3 (moto_server locally, Amazon SQS in production). boto3 blocks: callers that run
in an event loop use ``asyncio.to_thread``."""

from __future__ import annotations

import json
from typing import Any

import boto3

from dialler.config import Settings


def sqs_client(settings: Settings) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=settings.sqs_endpoint_url or None,
        region_name=settings.aws_region,
        # Empty keys: boto3's own chain (an instance or task role), as production on AWS should run.
        aws_access_key_id=settings.aws_access_key_id.get_secret_value() or None,
        aws_secret_access_key=settings.aws_secret_access_key.get_secret_value() or None,
    )


def ensure_cdc_queues(settings: Settings, client: Any | None = None) -> str:
    """The change-event queue and its dead-letter queue with a redrive policy. Idempotent."""
    sqs = client or sqs_client(settings)
    dlq_url = sqs.create_queue(QueueName=settings.cdc_dlq_name)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(settings.cdc_max_receive_count)}
    url = sqs.create_queue(QueueName=settings.cdc_queue_name)["QueueUrl"]
    sqs.set_queue_attributes(
        QueueUrl=url,
        Attributes={
            "RedrivePolicy": json.dumps(redrive),
            "VisibilityTimeout": "30",
            "MessageRetentionPeriod": "1209600",
        },
    )
    return str(url)
