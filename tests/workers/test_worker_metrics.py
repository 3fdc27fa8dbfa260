"""The worker's Prometheus endpoint: the Temporal SDK's metrics through the runtime, including the
activity failures and pollers the alert rules read (deploy/prometheus/alerts.yml)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from devstack import services
from dialler.config import Settings
from dialler.integrations.twilio import TwilioTelephony
from dialler.runtime import Stores, connect_temporal
from tests.support.worker_metrics import SDK_FAMILIES
from workers.worker import build_worker, worker_runtime

# The SDK families the alert rules and the dashboard use (tests/deploy/test_observability.py).


@activity.defn(name="always_fails")
async def always_fails() -> None:
    raise RuntimeError("broken on purpose")


@workflow.defn(name="RunsAFailingActivity", sandboxed=False)
class RunsAFailingActivity:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(
            always_fails, start_to_close_timeout=timedelta(seconds=5), retry_policy=RetryPolicy(maximum_attempts=1)
        )


def families(exposition: str) -> set[str]:
    return {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE ")}


async def test_the_worker_exports_sdk_metrics_and_activity_failures(
    temporal_env: WorkflowEnvironment, settings: Settings, stores: Stores, telephony: TwilioTelephony
) -> None:
    address = f"127.0.0.1:{services.free_port()}"
    configured = settings.model_copy(update={"worker_metrics_address": address})
    runtime = worker_runtime(configured)
    assert runtime is not None
    client: Client = await connect_temporal(configured, runtime)
    side_queue = f"fails-{uuid.uuid4().hex[:8]}"

    async with (
        build_worker(client, stores, telephony),
        Worker(
            client,
            task_queue=side_queue,
            workflows=[RunsAFailingActivity],
            activities=[always_fails],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ),
    ):
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(
                RunsAFailingActivity.run, id=f"fails-{uuid.uuid4().hex[:8]}", task_queue=side_queue
            )
        await asyncio.sleep(1.5)  # the runtime's exporter is refreshed about once a second
        async with httpx.AsyncClient() as http:
            body = (await http.get(f"http://{address}/metrics")).text

    exported = families(body)
    assert set(SDK_FAMILIES) <= exported, sorted(exported)
    failed = [line for line in body.splitlines() if line.startswith("temporal_activity_execution_failed{")]
    assert any('activity_type="always_fails"' in line for line in failed)
    assert f'task_queue="{settings.temporal_task_queue}"' in body  # the dialler's own worker polls
