"""``dialler temporal-setup``: put a Temporal namespace in the state the dialler needs. Idempotent, so
deployments run it on every release (compose's ``temporal-setup`` job, ``make run`` on the dev server):

- the search attributes supervisors filter on (dialler/search_attributes.py);
- the namespace's retention (``temporal_retention_days``): how long closed calls stay in the UI;
- the schedules (workers/registry.py: the queue rebuild), at the configured interval.

Temporal Cloud manages retention and search attributes through its own console or ``tcld``: there
the first two steps report what to set instead of failing (the schedules are still created)."""

from __future__ import annotations

from datetime import timedelta

from google.protobuf.duration_pb2 import Duration
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, UpdateNamespaceRequest
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
    try:
        added = await search_attributes.register(client, namespace)
        lines.append(f"search attributes: {'added ' + ', '.join(added) if added else 'all present'}")
    except RPCError as exc:
        if exc.status not in _MANAGED_ELSEWHERE:
            raise
        names = ", ".join(f"{key.name} ({key.indexed_value_type.name})" for key in search_attributes.ALL)
        lines.append(f"search attributes: not allowed here ({exc.message}); add in the Temporal console: {names}")
    retention = timedelta(days=settings.temporal_retention_days)
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
