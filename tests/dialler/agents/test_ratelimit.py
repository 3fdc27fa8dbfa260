from __future__ import annotations

from dialler.agents.ratelimit import address_limit, admit_login, forgive_login
from dialler.config import Settings
from dialler.runtime import Stores


async def test_counts_per_account_and_address_with_a_window(stores: Stores, settings: Settings) -> None:
    limit = settings.login_max_attempts
    for _ in range(limit):
        admitted = await admit_login(redis=stores.redis, settings=settings, email="A@x.example", client_ip="10.0.0.1")
        assert admitted.allowed

    blocked = await admit_login(redis=stores.redis, settings=settings, email="a@x.example ", client_ip="10.0.0.1")

    assert not blocked.allowed and 0 < blocked.retry_after_s <= settings.login_window_s
    keys = sorted([k async for k in stores.redis.scan_iter(match=f"{settings.redis_prefix}:ratelimit:login:*")])
    assert len(keys) == 2 and keys[1].endswith(":address:10.0.0.1")
    assert "x.example" not in keys[0]  # the account key is a digest, not the address
    ttls = [await stores.redis.ttl(k) for k in keys]
    assert all(0 < ttl <= settings.login_window_s for ttl in ttls)


async def test_success_resets_the_account_and_returns_the_address_attempt(stores: Stores, settings: Settings) -> None:
    for _ in range(3):
        await admit_login(redis=stores.redis, settings=settings, email="b@x.example", client_ip="10.0.0.2")

    await forgive_login(redis=stores.redis, settings=settings, email="b@x.example", client_ip="10.0.0.2")
    after = await admit_login(redis=stores.redis, settings=settings, email="b@x.example", client_ip="10.0.0.2")

    assert (after.account_count, after.address_count) == (1, 3)
    assert address_limit(settings) > settings.login_max_attempts


async def test_forgiving_an_expired_address_counter_does_not_go_negative(stores: Stores, settings: Settings) -> None:
    await forgive_login(redis=stores.redis, settings=settings, email="c@x.example", client_ip="10.0.0.3")

    assert await stores.redis.get(f"{settings.redis_prefix}:ratelimit:login:address:10.0.0.3") is None
