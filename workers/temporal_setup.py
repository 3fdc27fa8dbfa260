"""``dialler temporal-setup``: put a Temporal namespace in the state the dialler needs. Idempotent, so
deployments run it on every release (compose's ``temporal-setup`` job, ``make run`` on the dev server):

- the namespace itself on a cluster of our own, when it does not exist yet;
- the search attributes supervisors filter on (dialler/search_attributes.py);
- the namespace's retention (``temporal_retention_days``): how long closed calls stay in the UI;
- the schedules (workers/registry.py: the queue rebuild), at the configured interval.

Temporal Cloud manages retention and search attributes through its own console or ``tcld``: there
the first two steps report what to set instead of failing (the schedules are still created)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from google.protobuf.duration_pb2 import Duration
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    RegisterNamespaceRequest,
    UpdateNamespaceRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from dialler import search_attributes
from dialler.config import Settings
from workers.registry import REBUILD_SCHEDULE_ID, ensure_schedules

# Refusals a managed service (Temporal Cloud) answers to operator calls it handles elsewhere.
_MANAGED_ELSEWHERE = (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED)


async def namespace_retention(client: Client, namespace: str) -> timedelta:
    described = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
    return described.config.workflow_execution_retention_ttl.ToTimedelta()


async def ensure_namespace(client: Client, namespace: str, retention: timedelta) -> bool:
    """Register the namespace when it does not exist (own cluster); True when it was created. Waits
    until the frontend serves it: a new namespace takes a few seconds to reach its caches."""
    try:
        await namespace_retention(client, namespace)
        return False
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    ttl = Duration()
    ttl.FromTimedelta(retention)
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=namespace, workflow_execution_retention_period=ttl)
    )
    for _ in range(150):
        try:
            await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
            await namespace_retention(client, namespace)
            return True
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            await asyncio.sleep(0.2)
    raise RuntimeError(f"namespace {namespace} was registered but is still not served after 30 s")


async def set_retention(client: Client, namespace: str, retention: timedelta) -> bool:
    """Set the namespace's retention; False when it already had it (no update sent)."""
    if await namespace_retention(client, namespace) == retention:
        return False
    ttl = Duration()
    ttl.FromTimedelta(retention)
    await client.workflow_service.update_namespace(
        UpdateNamespaceRequest(namespace=namespace, config=NamespaceConfig(workflow_execution_retention_ttl=ttl))
    )
    return True


async def temporal_setup(client: Client, settings: Settings) -> list[str]:
    """Bring the namespace to the configured state; one report line per step."""
    namespace = settings.temporal_namespace
    lines: list[str] = []
    retention = timedelta(days=settings.temporal_retention_days)
    if await ensure_namespace(client, namespace, retention):
        lines.append(f"namespace {namespace}: created")
    try:
        added = await search_attributes.register(client, namespace)
        lines.append(f"search attributes: {'added ' + ', '.join(added) if added else 'all present'}")
    except RPCError as exc:
        if exc.status not in _MANAGED_ELSEWHERE:
            raise
        names = ", ".join(f"{key.name} ({key.indexed_value_type.name})" for key in search_attributes.ALL)
        lines.append(f"search attributes: not allowed here ({exc.message}); add in the Temporal console: {names}")
    try:
        changed = await set_retention(client, namespace, retention)
        lines.append(f"retention of {namespace}: {settings.temporal_retention_days} days{' (set)' if changed else ''}")
    except RPCError as exc:
        if exc.status not in _MANAGED_ELSEWHERE:
            raise
        lines.append(f"retention: not allowed here ({exc.message}); set {retention.days} days in the Temporal console")
    await ensure_schedules(client, settings)
    lines.append(f"schedule {REBUILD_SCHEDULE_ID}: every {settings.queue_rebuild_interval_s} s")
    return lines
