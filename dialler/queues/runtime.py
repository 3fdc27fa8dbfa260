"""The queue engine and the rebuild's summary key over a process's Stores.

Here, in the domain, because the API (queue reads, next call, webhooks) and the activities (rebuild,
recompute, callbacks, calls, CDC) all need the same engine configured the same way, and the API must
not import the activities to get it."""

from __future__ import annotations

from dialler.queues.engine import QueueEngine
from dialler.runtime import Stores


def queue_engine(stores: Stores) -> QueueEngine:
    return QueueEngine(stores.redis, prefix=stores.settings.redis_prefix, lease_ttl_s=stores.settings.lease_ttl_s)


def last_rebuild_key(stores: Stores) -> str:
    return f"{stores.settings.redis_prefix}:rebuild:last"
