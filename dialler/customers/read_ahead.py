"""Reading ahead: the contexts of the customers at the head of a queue are cached before an agent
takes them, so that next-call answers from Redis instead of waiting for two databases.

After each next-call the API asks for its queue's head to be warmed, in the background: the customers
now first in line are the next agents' customers. Each is loaded once (a claim in Redis keeps the API
processes from loading the same one) through ``get_context``, whose versioned cache never keeps data
that changed while it was being read, and change capture drops them as usual when their data changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from dialler.customers.context import cache_key, get_context
from dialler.queues.engine import QueueEngine
from dialler.runtime import Stores

log = logging.getLogger(__name__)

CLAIM_S = 30  # while one process loads a customer's context, the others leave it (at most this long)


def claim_key(prefix: str, user_id: int) -> str:
    return f"{prefix}:ctxwarm:{user_id}"


class ContextReadAhead:
    def __init__(self, *, stores: Stores, engine: QueueEngine, depth: int) -> None:
        self._stores = stores
        self._engine = engine
        self._depth = depth
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()

    def after_take(self, queue: str) -> None:
        """A customer was taken from ``queue``: warm its head. One warm-up per queue at a time; asked
        during one, it runs once more when done (the head has moved)."""
        if self._depth <= 0:
            return
        if queue in self._running:
            self._again.add(queue)
            return
        self._running[queue] = asyncio.create_task(self._run(queue), name=f"read-ahead:{queue}")

    async def _run(self, queue: str) -> None:
        try:
            while True:
                self._again.discard(queue)
                try:
                    await self.warm(queue)
                except Exception:  # a cold cache only costs time: never fail a request for it
                    log.warning("reading ahead in queue %s failed", queue, exc_info=True)
                if queue not in self._again:
                    return
        finally:
            self._running.pop(queue, None)

    async def warm(self, queue: str) -> list[int]:
        """Caches the contexts at the head of ``queue`` that are not cached; returns whose it loaded."""
        stores, prefix = self._stores, self._stores.settings.redis_prefix
        heads = await self._engine.ready_heads(queue, limit=self._depth, now=time.time())
        async with stores.redis.pipeline(transaction=False) as pipe:
            for user_id in heads:
                pipe.exists(cache_key(prefix, user_id))
            cold = [user_id for user_id, hit in zip(heads, await pipe.execute(), strict=True) if not hit]
        if not cold:
            return []
        async with stores.redis.pipeline(transaction=False) as pipe:
            for user_id in cold:
                pipe.set(claim_key(prefix, user_id), "1", nx=True, ex=CLAIM_S)
            mine = [user_id for user_id, claimed in zip(cold, await pipe.execute(), strict=True) if claimed]
        for user_id in mine:  # one at a time: this is background work beside the agents' requests
            try:
                await get_context(
                    redis=stores.redis,
                    prefix=prefix,
                    replica=stores.replica,
                    postgres=stores.postgres,
                    user_id=user_id,
                )
            finally:
                await stores.redis.delete(claim_key(prefix, user_id))
        return mine

    async def aclose(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
