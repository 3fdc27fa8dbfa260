"""The machine's Redis for tests, and removing a test's keys by prefix."""

from __future__ import annotations

from redis.asyncio import Redis

REDIS_URL = "redis://127.0.0.1:6379/0"


async def unlink_prefix(client: Redis, prefix: str) -> None:
    batch: list[str] = []
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            await client.unlink(*batch)
            batch.clear()
    if batch:
        await client.unlink(*batch)
