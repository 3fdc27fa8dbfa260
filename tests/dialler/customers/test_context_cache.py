"""The customer context cache on the real MariaDB replica, PostgreSQL and Redis: served from Redis until
the customer's data changes, never caching what a change made stale, and read ahead at queue heads."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import dialler.customers.context as context_module
from devstack.seed import seed_replica
from dialler.customers.context import cache_key, forget, get_context
from dialler.customers.read_ahead import ContextReadAhead
from dialler.queues.rebuild import recompute
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores


async def read(stores: Stores, user_id: int):  # type: ignore[no-untyped-def]
    return await get_context(
        redis=stores.redis,
        prefix=stores.settings.redis_prefix,
        replica=stores.replica,
        postgres=stores.postgres,
        user_id=user_id,
    )


async def rename(replica_writer: AsyncEngine, user_id: int, first_name: str) -> None:
    async with replica_writer.begin() as conn:
        await conn.execute(text("UPDATE users SET first_name = :n WHERE id = :u"), {"n": first_name, "u": user_id})


async def test_a_cached_context_is_served_until_the_customer_changes(
    stores: Stores, replica_url: str, replica_writer: AsyncEngine
) -> None:
    await seed_replica(replica_url, users=5, seed=3)
    first = await read(stores, 1)
    await rename(replica_writer, 1, "Changed")

    assert first is not None and (await read(stores, 1)).first_name == first.first_name  # type: ignore[union-attr]
    await forget(stores.redis, stores.settings.redis_prefix, [1])  # what change capture does
    assert (await read(stores, 1)).first_name == "Changed"  # type: ignore[union-attr]


async def test_a_change_during_a_load_keeps_the_old_read_out_of_the_cache(
    stores: Stores, replica_url: str, replica_writer: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load reads the databases, the customer changes and change capture forgets them, then the
    load finishes: what it read must not be cached, or agents would work from stale data for minutes."""
    await seed_replica(replica_url, users=5, seed=3)
    load, read_done, changed = context_module.load_context, asyncio.Event(), asyncio.Event()

    async def load_then_wait(**kw):  # type: ignore[no-untyped-def]
        loaded = await load(**kw)
        read_done.set()
        await changed.wait()
        return loaded

    monkeypatch.setattr(context_module, "load_context", load_then_wait)
    pending = asyncio.create_task(read(stores, 2))
    await read_done.wait()
    await rename(replica_writer, 2, "Changed")
    await forget(stores.redis, stores.settings.redis_prefix, [2])
    changed.set()
    stale = await pending
    monkeypatch.setattr(context_module, "load_context", load)

    assert stale is not None and stale.first_name != "Changed"  # that request saw the old data...
    assert not await stores.redis.exists(cache_key(stores.settings.redis_prefix, 2))  # ...nobody else will
    assert (await read(stores, 2)).first_name == "Changed"  # type: ignore[union-attr]


async def test_read_ahead_caches_the_head_of_a_queue_once(
    stores: Stores, replica_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_replica(replica_url, users=60, seed=21)
    engine = queue_engine(stores)
    await recompute(stores, engine, list(range(1, 61)))
    head = [user_id for user_id, _ in await engine.page("unsigned", offset=0, limit=5)]
    assert len(head) == 5
    await stores.redis.hset(engine.keys.not_before, str(head[0]), str(time.time() + 3600))  # type: ignore[misc]
    read_ahead = ContextReadAhead(stores=stores, engine=engine, depth=3)

    assert await read_ahead.warm("unsigned") == head[1:4]  # the first may not be called yet: not warmed
    assert await read_ahead.warm("unsigned") == []  # already cached: nothing loaded twice
    prefix = stores.settings.redis_prefix
    cached = [bool(await stores.redis.exists(cache_key(prefix, u))) for u in head]
    assert cached == [False, True, True, True, False]

    loads, load = [], context_module.load_context
    monkeypatch.setattr(context_module, "load_context", lambda **kw: loads.append(kw["user_id"]))
    assert (await read(stores, head[1])).user_id == head[1]  # type: ignore[union-attr]
    assert loads == []  # the agent who takes the head gets it from the cache

    # After a next-call the same happens in the background (one warm-up per queue at a time).
    await stores.redis.delete(cache_key(prefix, head[2]))
    monkeypatch.setattr(context_module, "load_context", load)
    read_ahead.after_take("unsigned")
    read_ahead.after_take("unsigned")
    await asyncio.sleep(0)
    for _ in range(100):
        if await stores.redis.exists(cache_key(prefix, head[2])):
            break
        await asyncio.sleep(0.05)
    assert await stores.redis.exists(cache_key(prefix, head[2]))
    await read_ahead.aclose()
