"""The record and the lock behind "nobody rung twice", on the real PostgreSQL."""

from __future__ import annotations

import pytest

from dialler.outbound import attempts
from dialler.runtime import Stores


async def test_one_try_at_a_time_per_request_and_the_lock_is_freed_however_the_try_ends(stores: Stores) -> None:
    key = attempts.dial_key("0b9e4a4e-0000-4000-8000-000000000001")
    async with attempts.exclusive(stores.carrier_locks, key):
        with pytest.raises(attempts.AttemptBusy):
            async with attempts.exclusive(stores.carrier_locks, key):
                pass
        async with attempts.exclusive(stores.carrier_locks, attempts.sms_key(1)):  # another request: free
            pass
    with pytest.raises(RuntimeError, match="the try failed"):
        async with attempts.exclusive(stores.carrier_locks, key):
            raise RuntimeError("the try failed")
    async with attempts.exclusive(stores.carrier_locks, key):  # released both times
        pass


async def test_an_attempt_is_recorded_before_each_request_and_settled_once(stores: Stores) -> None:
    key = attempts.sms_key(7)
    assert await attempts.find(stores.postgres, key) is None
    first = await attempts.begin(stores.postgres, key, channel="sms", digest=attempts.body_digest("one"))
    second = await attempts.begin(stores.postgres, key, channel="sms", digest=attempts.body_digest("two"))
    found = await attempts.find(stores.postgres, key)
    assert found is not None
    assert (found.requests, found.started_at, found.body_digest, found.sid) == (
        2,
        second,
        attempts.body_digest("two"),
        None,
    )
    assert second >= first
    await attempts.settle(stores.postgres, key, "SM1")
    await attempts.settle(stores.postgres, key, "SM2")  # the first sid stands
    settled = await attempts.find(stores.postgres, key)
    assert settled is not None and settled.sid == "SM1" and settled.settled_at is not None
