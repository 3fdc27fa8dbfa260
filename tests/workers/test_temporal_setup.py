"""``dialler temporal-setup`` on the tests' dev server, and the connection options production uses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client, ScheduleIntervalSpec, ScheduleOverlapPolicy
from temporalio.service import RPCError, TLSConfig
from temporalio.testing import WorkflowEnvironment

from dialler import search_attributes
from dialler.config import PROJECT_ROOT, Settings
from dialler.runtime import connect_temporal, temporal_connect_options
from workers.registry import REBUILD_SCHEDULE_ID
from workers.temporal_setup import namespace_retention, temporal_setup


async def fresh_namespace(client: Client) -> str:
    """A namespace of its own (one day's retention, no search attributes), usable once this returns."""
    namespace = f"setup-{uuid.uuid4().hex[:8]}"
    one_day = Duration(seconds=86400)
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=namespace, workflow_execution_retention_period=one_day)
    )
    for _ in range(100):  # the frontend's namespace cache picks it up within seconds
        try:
            await namespace_retention(client, namespace)
            await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
            return namespace
        except RPCError:
            await asyncio.sleep(0.2)
    raise AssertionError(f"namespace {namespace} never became usable")


async def test_temporal_setup_twice_leaves_search_attributes_retention_and_schedules_as_configured(
    temporal_env: WorkflowEnvironment, settings: Settings
) -> None:
    namespace = await fresh_namespace(temporal_env.client)
    configured = settings.model_copy(
        update={"temporal_namespace": namespace, "temporal_retention_days": 45, "queue_rebuild_interval_s": 600}
    )
    client = await connect_temporal(configured)

    first = await temporal_setup(client, configured)
    # The second run is the operator's command itself, in its own process.
    second = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "workers.cli", "temporal-setup"],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "DIALLER_TEMPORAL_ADDRESS": configured.temporal_address,
            "DIALLER_TEMPORAL_NAMESPACE": namespace,
            "DIALLER_TEMPORAL_TASK_QUEUE": configured.temporal_task_queue,
            "DIALLER_TEMPORAL_RETENTION_DAYS": "45",
            "DIALLER_QUEUE_REBUILD_INTERVAL_S": "600",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert first[0].startswith("search attributes: added ")
    assert first[1] == f"retention of {namespace}: 45 days (set)"
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [
        "search attributes: all present",
        f"retention of {namespace}: 45 days",
        f"schedule {REBUILD_SCHEDULE_ID}: every 600 s",
    ]
    listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    expected = {key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in search_attributes.ALL}
    assert {name: listed.custom_attributes[name] for name in expected} == expected
    assert await namespace_retention(client, namespace) == timedelta(days=45)
    schedule = await client.get_schedule_handle(REBUILD_SCHEDULE_ID).describe()
    assert schedule.schedule.spec.intervals == [ScheduleIntervalSpec(every=timedelta(seconds=600))]
    assert schedule.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    schedules = [s.id async for s in await client.list_schedules()]
    assert schedules.count(REBUILD_SCHEDULE_ID) == 1


async def test_a_changed_interval_or_retention_is_applied_by_the_next_run(
    temporal_env: WorkflowEnvironment, settings: Settings
) -> None:
    namespace = await fresh_namespace(temporal_env.client)
    before = settings.model_copy(update={"temporal_namespace": namespace})
    client = await connect_temporal(before)
    await temporal_setup(client, before)

    after = before.model_copy(update={"temporal_retention_days": 90, "queue_rebuild_interval_s": 1800})
    await temporal_setup(client, after)

    assert await namespace_retention(client, namespace) == timedelta(days=90)
    schedule = await client.get_schedule_handle(REBUILD_SCHEDULE_ID).describe()
    assert schedule.schedule.spec.intervals == [ScheduleIntervalSpec(every=timedelta(seconds=1800))]


async def test_temporal_setup_creates_a_missing_namespace_with_its_retention(
    temporal_env: WorkflowEnvironment, settings: Settings
) -> None:
    namespace = f"new-{uuid.uuid4().hex[:8]}"
    configured = settings.model_copy(update={"temporal_namespace": namespace, "temporal_retention_days": 14})
    client = await connect_temporal(configured)

    lines = await temporal_setup(client, configured)

    assert lines[0] == f"namespace {namespace}: created"
    assert lines[1].startswith("search attributes: added ")
    assert lines[2] == f"retention of {namespace}: 14 days"  # registered with it: nothing to update
    assert await namespace_retention(client, namespace) == timedelta(days=14)
    assert (await client.get_schedule_handle(REBUILD_SCHEDULE_ID).describe()).id == REBUILD_SCHEDULE_ID


def test_a_local_dev_server_is_reached_without_tls() -> None:
    options = temporal_connect_options(Settings(_env_file=None))  # type: ignore[call-arg]

    assert options == {"target_host": "127.0.0.1:7233", "namespace": "default", "tls": False, "api_key": None}


def test_own_cluster_with_mtls_gets_the_ca_server_name_and_client_certificate(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(b"CA PEM")
    (tmp_path / "client.pem").write_bytes(b"CLIENT PEM")
    (tmp_path / "client.key").write_bytes(b"CLIENT KEY")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        temporal_address="temporal.internal:7233",
        temporal_namespace="dialler",
        temporal_tls_server_ca=tmp_path / "ca.pem",
        temporal_tls_server_name="frontend.temporal.internal",
        temporal_tls_client_cert=tmp_path / "client.pem",
        temporal_tls_client_key=tmp_path / "client.key",
    )

    options = temporal_connect_options(settings)

    assert options == {
        "target_host": "temporal.internal:7233",
        "namespace": "dialler",
        "tls": TLSConfig(
            server_root_ca_cert=b"CA PEM",
            domain="frontend.temporal.internal",
            client_cert=b"CLIENT PEM",
            client_private_key=b"CLIENT KEY",
        ),
        "api_key": None,
    }


def test_temporal_cloud_with_an_api_key_uses_tls_with_the_system_roots() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        temporal_address="eu-west-2.aws.api.temporal.io:7233",
        temporal_namespace="dialler.a1b2c",
        temporal_api_key="cloud-key",
    )

    options = temporal_connect_options(settings)

    assert options["tls"] is True
    assert options["api_key"] == "cloud-key"
    assert options["namespace"] == "dialler.a1b2c"


def test_tls_alone_uses_the_system_roots() -> None:
    settings = Settings(_env_file=None, temporal_address="temporal.internal:7233", temporal_tls=True)  # type: ignore[call-arg]

    assert temporal_connect_options(settings)["tls"] is True


async def test_a_tls_client_does_not_reach_a_plaintext_server(temporal_env: WorkflowEnvironment) -> None:
    # The options are really used: the dev server speaks plaintext, so a TLS client cannot connect.
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        temporal_address=temporal_env.client.service_client.config.target_host,
        temporal_tls=True,
    )

    try:
        await asyncio.wait_for(connect_temporal(settings), 20)
    except (RuntimeError, TimeoutError):
        return
    raise AssertionError("a TLS client connected to a plaintext server")
