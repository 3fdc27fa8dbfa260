"""QueueEngine against the real Redis: leases, eligibility, fencing, placement and the rebuild swap.

Each test gets its own key prefix; every key under it is removed afterwards (SCAN + UNLINK), so the
shared Redis is never flushed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from dialler.queues.engine import (
    AgentAlreadyHoldsLease,
    AgentNotAvailable,
    QueueEngine,
    QueueEntry,
    RebuildNotActive,
    StaleLease,
)
from dialler.queues.keys import QUEUES
from tests.support.redis import REDIS_URL, unlink_prefix

TTL = 30
T0 = 1_700_000_000.0
ALL = list(QUEUES)
RUN_1 = "queue-rebuild-2025-01-01T06:00:00Z"  # Schedule-started workflow ids carry colons


@pytest_asyncio.fixture(scope="session")
async def redis_client() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def engine(redis_client: Redis) -> AsyncIterator[QueueEngine]:
    prefix = f"test-qengine-{uuid.uuid4().hex[:12]}"
    yield QueueEngine(redis_client, prefix=prefix, lease_ttl_s=TTL)
    await unlink_prefix(redis_client, prefix)


def entry(user_id: int, queue: str = "unsigned", score: float = 0.0, **kw: object) -> QueueEntry:
    return QueueEntry(user_id=user_id, queue=queue, score=score, **kw)  # type: ignore[arg-type]


async def take(engine: QueueEngine, agent: int, *, queues: list[str] = ALL, trained: bool = False, now: float = T0):
    return await engine.next_call(agent_id=agent, queues=queues, trained_vulnerable=trained, now=now)


# --------------------------------------------------------------------------- ordering & eligibility


async def test_priority_order_across_queues_and_by_score(engine: QueueEngine) -> None:
    await engine.upsert_many(
        [
            entry(1, "outstanding_requests", 1.0),
            entry(2, "unsigned", 5.0),
            entry(3, "unsigned", 2.0),
            entry(4, "callbacks", 99.0),
        ]
    )
    got = []
    for agent in range(4):
        lease = await take(engine, agent)
        assert lease is not None
        got.append((lease.user_id, lease.queue))
    assert got == [(4, "callbacks"), (3, "unsigned"), (2, "unsigned"), (1, "outstanding_requests")]
    assert await take(engine, 9) is None


async def test_agent_only_gets_its_queues_in_its_order(engine: QueueEngine) -> None:
    await engine.upsert_many(
        [entry(1, "callbacks", 0.0), entry(2, "unsigned", 0.0), entry(3, "outstanding_requests", 0)]
    )
    lease = await take(engine, 1, queues=["outstanding_requests", "unsigned"])
    assert lease is not None and lease.user_id == 3
    lease = await take(engine, 2, queues=["unsigned"])
    assert lease is not None and lease.user_id == 2
    with pytest.raises(ValueError):
        await take(engine, 3, queues=["nope"])


async def test_not_before_is_skipped_until_due(engine: QueueEngine) -> None:
    await engine.upsert_many([entry(1, score=1.0, not_before=T0 + 60), entry(2, score=2.0)])
    first = await take(engine, 1)
    assert first is not None and first.user_id == 2
    assert await take(engine, 2) is None
    due = await take(engine, 2, now=T0 + 60)
    assert due is not None and due.user_id == 1


async def test_vulnerable_only_for_trained_agents(engine: QueueEngine) -> None:
    await engine.upsert(entry(1, score=1.0, vulnerable=True))
    detail = await engine.next_call_detailed(agent_id=1, queues=ALL, trained_vulnerable=False, now=T0)
    assert detail.lease is None and detail.blocked_vulnerable == 1 and detail.scanned == 1
    lease = await take(engine, 2, trained=True)
    assert lease is not None and lease.user_id == 1


async def test_reservation_for_booking_agent_then_anyone(engine: QueueEngine) -> None:
    await engine.upsert_many(
        [
            entry(1, "callbacks", 0.0, reserved_for_agent=7, reserved_until=T0 + 300),
            entry(2, "callbacks", 0.0, reserved_for_agent=7, reserved_until=T0 + 300),
        ]
    )
    detail = await engine.next_call_detailed(agent_id=8, queues=ALL, trained_vulnerable=False, now=T0)
    assert detail.lease is None and detail.blocked_reserved == 2
    mine = await take(engine, 7)
    assert mine is not None and mine.user_id in (1, 2)
    await engine.release(user_id=mine.user_id, token=mine.token, requeue=None, now=T0 + 1)
    assert await take(engine, 8, now=T0 + 299) is None
    lapsed = await take(engine, 8, now=T0 + 300)
    assert lapsed is not None and lapsed.user_id == 3 - mine.user_id


async def test_blocked_reasons_are_counted(engine: QueueEngine) -> None:
    await engine.upsert_many(
        [
            entry(1, not_before=T0 + 1),
            entry(2, vulnerable=True),
            entry(3, "callbacks", reserved_for_agent=5, reserved_until=T0 + 1),
        ]
    )
    detail = await engine.next_call_detailed(agent_id=1, queues=ALL, trained_vulnerable=False, now=T0)
    assert (detail.lease, detail.scanned) == (None, 3)
    assert (detail.blocked_not_before, detail.blocked_vulnerable, detail.blocked_reserved) == (1, 1, 1)


# --------------------------------------------------------------------------- leases


async def test_concurrent_agents_never_share_a_customer(engine: QueueEngine) -> None:
    await engine.upsert_many([entry(u, QUEUES[u % 3], float(u)) for u in range(1, 31)])
    results = await asyncio.gather(*(take(engine, agent) for agent in range(100, 150)))
    leases = [lease for lease in results if lease is not None]
    assert len(leases) == 30
    assert len({lease.user_id for lease in leases}) == 30
    assert len({lease.token for lease in leases}) == 30
    assert await engine.depths() == dict.fromkeys(QUEUES, 0)
    for lease in leases:
        assert await engine.lease_of_agent(lease.agent_id) == lease


async def test_agent_already_holding_a_lease_is_refused(engine: QueueEngine) -> None:
    await engine.upsert_many([entry(1, score=1.0), entry(2, score=2.0)])
    lease = await take(engine, 5)
    assert lease is not None
    with pytest.raises(AgentAlreadyHoldsLease) as err:
        await take(engine, 5)
    assert err.value.user_id == lease.user_id and err.value.agent_id == 5
    assert await engine.position(2) == ("unsigned", 2.0)


async def test_expired_lease_requeues_via_reap(engine: QueueEngine) -> None:
    await engine.upsert(entry(1, "callbacks", 3.5, vulnerable=True, not_before=T0 - 10))
    lease = await take(engine, 5, trained=True)
    assert lease is not None and lease.expires_at == T0 + TTL
    assert await engine.reap_expired(now=T0 + TTL - 1) == []
    assert await engine.reap_expired(now=T0 + TTL) == [1]
    assert await engine.lease_of(1) is None and await engine.lease_of_agent(5) is None
    assert await engine.position(1) == ("callbacks", 3.5)
    # the stored entry came back whole: still vulnerable
    assert await take(engine, 6, now=T0 + TTL) is None
    again = await take(engine, 5, trained=True, now=T0 + TTL)
    assert again is not None and again.user_id == 1 and again.token > lease.token


async def test_expired_lease_requeues_via_next_call(engine: QueueEngine) -> None:
    await engine.upsert(entry(1, score=1.0))
    first = await take(engine, 5)
    assert first is not None
    assert await take(engine, 6, now=T0 + TTL - 1) is None
    second = await take(engine, 6, now=T0 + TTL)
    assert second is not None and second.user_id == 1 and second.agent_id == 6
    # the first agent's lease is gone: its own next call is not refused
    assert await take(engine, 5, now=T0 + TTL) is None


async def test_renew_extends_and_fences(engine: QueueEngine) -> None:
    await engine.upsert(entry(1, score=1.0))
    lease = await take(engine, 5)
    assert lease is not None
    renewed = await engine.renew(user_id=1, token=lease.token, now=T0 + 20)
    assert renewed.expires_at == T0 + 20 + TTL and renewed.agent_id == 5 and renewed.token == lease.token
    assert await engine.reap_expired(now=T0 + TTL) == []
    with pytest.raises(StaleLease) as err:
        await engine.renew(user_id=1, token=lease.token + 1, now=T0 + 21)
    assert err.value.reason == "token"
    with pytest.raises(StaleLease) as err:
        await engine.renew(user_id=2, token=lease.token, now=T0 + 21)
    assert err.value.reason == "no_lease"


async def test_renew_or_release_after_expiry_is_stale_and_requeues(engine: QueueEngine) -> None:
    await engine.upsert_many([entry(1, score=1.0), entry(2, score=2.0)])
    a = await take(engine, 5)
    b = await take(engine, 6)
    assert a is not None and b is not None
    with pytest.raises(StaleLease) as err:
        await engine.renew(user_id=a.user_id, token=a.token, now=T0 + TTL)
    assert err.value.reason == "expired"
    with pytest.raises(StaleLease):
        await engine.release(user_id=b.user_id, token=b.token, requeue=None, now=T0 + TTL + 1)
    assert await engine.depths() == {"callbacks": 0, "unsigned": 2, "outstanding_requests": 0}


async def test_old_token_refused_after_someone_else_took_the_customer(engine: QueueEngine) -> None:
    await engine.upsert(entry(1, score=1.0))
    old = await take(engine, 5)
    assert old is not None
    new = await take(engine, 6, now=T0 + TTL)
    assert new is not None and new.token > old.token
    with pytest.raises(StaleLease):
        await engine.release(user_id=1, token=old.token, requeue=None, now=T0 + TTL)
    with pytest.raises(StaleLease):
        await engine.renew(user_id=1, token=old.token, now=T0 + TTL)
    assert await engine.lease_of(1) == new


async def test_release_without_requeue_leaves_the_queues(engine: QueueEngine) -> None:
    await engine.upsert(entry(1, score=1.0))
    lease = await take(engine, 5)
    assert lease is not None
    await engine.release(user_id=1, token=lease.token, requeue=None, now=T0 + 1)
    assert await engine.lease_of(1) is None and await engine.position(1) is None
    assert await engine.lease_of_agent(5) is None
    assert await take(engine, 5, now=T0 + 1) is None
    with pytest.raises(StaleLease):
        await engine.release(user_id=1, token=lease.token, requeue=None, now=T0 + 1)


async def test_release_with_requeue_and_not_before(engine: QueueEngine) -> None:
    await engine.upsert(entry(1, score=1.0))
    lease = await take(engine, 5)
    assert lease is not None
    back = entry(1, "outstanding_requests", 4.0, not_before=T0 + 3600)
    await engine.release(user_id=1, token=lease.token, requeue=back, now=T0 + 10)
    assert await engine.position(1) == ("outstanding_requests", 4.0)
    assert await take(engine, 5, now=T0 + 3599) is None
    later = await take(engine, 5, now=T0 + 3600)
    assert later is not None and later.user_id == 1 and later.queue == "outstanding_requests"
    with pytest.raises(ValueError):
        await engine.release(user_id=1, token=later.token, requeue=entry(2), now=T0 + 3600)


# --------------------------------------------------------------------------- placement


async def test_upsert_keeps_one_queue_and_updates_metadata(engine: QueueEngine) -> None:
    await engine.upsert(entry(1, "unsigned", 1.0, vulnerable=True, not_before=T0 + 100))
    await engine.upsert(entry(1, "callbacks", 2.0))
    assert await engine.depths() == {"callbacks": 1, "unsigned": 0, "outstanding_requests": 0}
    assert await engine.position(1) == ("callbacks", 2.0)
    lease = await take(engine, 1)  # no longer vulnerable nor gated
    assert lease is not None and lease.user_id == 1


async def test_upsert_while_leased_sets_the_restore_placement(engine: QueueEngine) -> None:
    await engine.upsert(entry(1, "unsigned", 1.0))
    lease = await take(engine, 5)
    assert lease is not None
    await engine.upsert(entry(1, "outstanding_requests", 7.0, not_before=T0 + 500))
    assert await engine.position(1) is None
    assert await engine.lease_of(1) == lease
    await engine.renew(user_id=1, token=lease.token, now=T0 + 1)  # the agent keeps the lease
    assert await engine.reap_expired(now=T0 + 1 + TTL) == [1]
    assert await engine.position(1) == ("outstanding_requests", 7.0)
    assert await take(engine, 6, now=T0 + 499) is None


async def test_remove_while_leased_restores_nothing(engine: QueueEngine) -> None:
    await engine.upsert(entry(1, "unsigned", 1.0))
    lease = await take(engine, 5)
    assert lease is not None
    await engine.remove(1)
    assert await engine.lease_of(1) == lease
    assert await engine.reap_expired(now=T0 + TTL) == [1]
    assert await engine.position(1) is None and await engine.depths() == dict.fromkeys(QUEUES, 0)


async def test_release_requeue_overrides_upsert_made_during_the_lease(engine: QueueEngine) -> None:
    await engine.upsert(entry(1, "unsigned", 1.0))
    lease = await take(engine, 5)
    assert lease is not None
    await engine.upsert(entry(1, "callbacks", 0.5))
    await engine.release(user_id=1, token=lease.token, requeue=None, now=T0 + 1)
    assert await engine.position(1) is None


async def test_batch_upsert_remove_page_snapshot(engine: QueueEngine) -> None:
    entries = [entry(u, QUEUES[u % 3], float(u % 97)) for u in range(1, 2001)]
    await engine.upsert_many(entries)
    depths = await engine.depths()
    assert sum(depths.values()) == 2000 and depths["callbacks"] == 666
    snap = await engine.snapshot("unsigned")
    assert snap == {e.user_id: e.score for e in entries if e.queue == "unsigned"}
    page = await engine.page("unsigned", offset=0, limit=5)
    assert [s for _, s in page] == sorted(snap.values())[:5]
    assert await engine.page("unsigned", offset=10_000, limit=5) == []
    await engine.remove_many(list(range(1, 1001)))
    assert sum((await engine.depths()).values()) == 1000
    assert await engine.position(1000) is None and await engine.position(1001) is not None


async def test_works_with_a_bytes_client(redis_client: Redis) -> None:
    prefix = f"test-qengine-{uuid.uuid4().hex[:12]}"
    raw = Redis.from_url(REDIS_URL)  # decode_responses=False
    try:
        eng = QueueEngine(raw, prefix=prefix, lease_ttl_s=TTL)
        await eng.upsert(entry(1, "callbacks", 1.0))
        lease = await take(eng, 5)
        assert lease is not None and lease.queue == "callbacks"
        assert await eng.lease_of_agent(5) == lease
        await eng.release(user_id=1, token=lease.token, requeue=entry(1, score=2.0), now=T0)
        assert await eng.page("unsigned", offset=0, limit=1) == [(1, 2.0)]
        await eng.begin_rebuild("r1")
        await eng.stage_many("r1", [entry(2)])
        drift = await eng.swap("r1", now=T0)
        assert drift.queues["unsigned"].added == 1 and drift.dirty_user_ids == ()
    finally:
        await raw.aclose()
        await unlink_prefix(redis_client, prefix)


# --------------------------------------------------------------------------- rebuild


async def test_rebuild_swap_drift_and_leased_users(engine: QueueEngine, redis_client: Redis) -> None:
    await engine.upsert_many(
        [
            entry(1, "unsigned", 1.0),  # unchanged
            entry(2, "unsigned", 2.0),  # rescored
            entry(3, "unsigned", 3.0),  # removed
            entry(4, "outstanding_requests", 4.0),  # moves to callbacks
            entry(5, "unsigned", 0.1),  # leased below
        ]
    )
    lease = await take(engine, 9)
    assert lease is not None and lease.user_id == 5
    assert await engine.begin_rebuild(RUN_1) is True
    assert await engine.begin_rebuild(RUN_1) is False
    staged = [
        entry(1, "unsigned", 1.0),
        entry(2, "unsigned", 2.5),
        entry(4, "callbacks", 4.0, reserved_for_agent=3, reserved_until=T0 + 10),
        entry(5, "outstanding_requests", 9.0, not_before=T0 + 1000),
        entry(6, "outstanding_requests", 6.0, vulnerable=True),  # added
    ]
    await engine.stage_many(RUN_1, staged[:3])
    await engine.stage_many(RUN_1, staged)  # fan-out retry: idempotent
    drift = await engine.swap(RUN_1, now=T0)

    q = drift.queues
    assert (q["unsigned"].added, q["unsigned"].removed, q["unsigned"].rescored) == (0, 1, 1)
    assert (q["callbacks"].added, q["callbacks"].removed, q["callbacks"].rescored) == (1, 0, 0)
    assert (q["outstanding_requests"].added, q["outstanding_requests"].removed) == (1, 1)
    assert (q["unsigned"].live_before, q["unsigned"].live_after) == (3, 2)
    assert drift.leased_user_ids == (5,) and drift.dirty_user_ids == ()

    assert await engine.snapshot("unsigned") == {1: 1.0, 2: 2.5}
    assert await engine.snapshot("callbacks") == {4: 4.0}
    assert await engine.snapshot("outstanding_requests") == {6: 6.0}  # leased 5 excluded
    assert await engine.lease_of(5) == lease
    # metadata was swapped too: 4 reserved for agent 3, 6 vulnerable
    assert await take(engine, 1, queues=["callbacks", "outstanding_requests"]) is None
    got = await take(engine, 3, queues=["callbacks"])
    assert got is not None and got.user_id == 4
    await engine.release(user_id=4, token=got.token, requeue=None, now=T0)
    # the leased user's expiry restores the rebuild's placement, gate included
    assert await engine.reap_expired(now=T0 + TTL) == [5]
    assert await engine.position(5) == ("outstanding_requests", 9.0)
    assert await take(engine, 2, queues=["outstanding_requests"], now=T0 + TTL) is None
    # staging and the marker are gone, live keys carry no TTL, and a retried swap returns the same drift
    stage_keys = [k async for k in redis_client.scan_iter(match=f"{engine.keys.root}:stage:*")]
    assert stage_keys == []
    assert await redis_client.ttl(engine.keys.queue("unsigned")) == -1
    assert await engine.swap(RUN_1, now=T0) == drift


@pytest.mark.parametrize("pre_sync", [True, False], ids=["synced-before-swap", "left-to-atomic-swap"])
async def test_dirty_users_keep_their_live_placement(
    engine: QueueEngine, pre_sync: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not pre_sync:  # as if every change landed after the last chunked sync

        async def no_sync(staging_keys: list[str]) -> None:
            return None

        monkeypatch.setattr(engine, "_sync_dirty", no_sync)
    await engine.upsert_many([entry(1, "unsigned", 1.0), entry(2, "unsigned", 2.0), entry(3, "unsigned", 3.0)])
    await engine.upsert(entry(9, "unsigned", 9.0))  # before the run: not dirty
    await engine.begin_rebuild("run-2")
    # the snapshot is read here: it knows 1, 2, 3 as they were
    snapshot = [entry(1, "unsigned", 1.0), entry(2, "unsigned", 2.0), entry(3, "unsigned", 3.0)]
    # meanwhile: a call on 1 ends with a gate, 2 is removed by CDC, 4 arrives by CDC
    lease = await take(engine, 5)
    assert lease is not None and lease.user_id == 1
    await engine.release(user_id=1, token=lease.token, requeue=entry(1, "unsigned", 5.0, not_before=T0 + 900), now=T0)
    await engine.remove(2)
    await engine.upsert(entry(4, "callbacks", 0.0))
    await engine.stage_many("run-2", snapshot)
    drift = await engine.swap("run-2", now=T0)

    assert drift.dirty_user_ids == (1, 2, 4)
    assert await engine.swap("run-2", now=T0) == drift  # an activity retry gets the same answer
    assert await engine.position(1) == ("unsigned", 5.0)
    assert await engine.position(2) is None
    assert await engine.position(4) == ("callbacks", 0.0)
    assert await engine.position(9) is None  # not dirty, not staged: removed by the rebuild
    assert drift.queues["unsigned"].removed == 1 and drift.queues["unsigned"].rescored == 0
    # the gate set by the call outcome survived the swap
    got = await take(engine, 6, queues=["unsigned"], now=T0 + 1)
    assert got is not None and got.user_id == 3
    # after the swap nothing is tracked any more: the next run starts clean
    await engine.upsert(entry(7, "unsigned", 7.0))
    await engine.begin_rebuild("run-3")
    await engine.stage_many("run-3", [])
    assert (await engine.swap("run-3", now=T0)).dirty_user_ids == ()
    assert await engine.depths() == dict.fromkeys(QUEUES, 0)


async def test_dirty_leased_user_keeps_its_restore_placement(engine: QueueEngine) -> None:
    await engine.upsert(entry(1, "unsigned", 1.0))
    await engine.begin_rebuild("run-4")
    lease = await take(engine, 5)
    assert lease is not None
    await engine.upsert(entry(1, "callbacks", 0.5))  # CDC during the lease and the rebuild
    await engine.stage_many("run-4", [entry(1, "unsigned", 1.0)])
    drift = await engine.swap("run-4", now=T0)
    assert drift.dirty_user_ids == (1,) and drift.leased_user_ids == (1,)
    assert await engine.position(1) is None
    await engine.reap_expired(now=T0 + TTL)
    assert await engine.position(1) == ("callbacks", 0.5)


async def test_restaging_moves_a_user_between_staged_queues(engine: QueueEngine) -> None:
    await engine.begin_rebuild("run-5")
    await engine.stage_many("run-5", [entry(1, "unsigned", 1.0, vulnerable=True)])
    await engine.stage_many("run-5", [entry(1, "outstanding_requests", 2.0)])
    await engine.swap("run-5", now=T0)
    assert await engine.depths() == {"callbacks": 0, "unsigned": 0, "outstanding_requests": 1}
    got = await take(engine, 1)  # the retry's placement won, vulnerable flag included
    assert got is not None and got.queue == "outstanding_requests"


async def test_staging_in_bulk_keeps_each_users_last_entry_and_its_metadata(engine: QueueEngine) -> None:
    await engine.begin_rebuild("run-6")
    many = [entry(u, "unsigned" if u % 2 else "outstanding_requests", float(u)) for u in range(1, 1_201)]
    first = [
        entry(1, "callbacks", 0.5, vulnerable=True, not_before=T0 + 60, reserved_for_agent=7, reserved_until=T0 + 600),
        *many[1:],
    ]
    await engine.stage_many("run-6", first)  # several script calls
    # a retry: user 1 moved queue and lost its gates; user 2 appears twice, the last entry wins
    await engine.stage_many("run-6", [entry(2, "callbacks", 9.0), *many[:3], entry(2, "unsigned", 2.5)])
    drift = await engine.swap("run-6", now=T0)

    assert await engine.position(1) == ("unsigned", 1.0)
    assert await engine.position(2) == ("unsigned", 2.5)
    assert await engine.depths() == {"callbacks": 0, "unsigned": 601, "outstanding_requests": 599}
    assert drift.queues["unsigned"].added == 601 and drift.queues["callbacks"].added == 0
    got = await take(engine, 8, queues=["unsigned"])  # no gate, reservation or vulnerable flag left on 1
    assert got is not None and got.user_id == 1


async def test_swap_refused_unless_the_run_is_current_and_staged(engine: QueueEngine) -> None:
    await engine.upsert(entry(1))
    with pytest.raises(RebuildNotActive):
        await engine.swap("never-begun", now=T0)
    await engine.begin_rebuild("old")
    await engine.stage_many("old", [entry(2)])
    await engine.begin_rebuild("new")  # supersedes "old"
    with pytest.raises(RebuildNotActive):
        await engine.swap("old", now=T0)
    with pytest.raises(RebuildNotActive):  # nothing staged for "new"
        await engine.swap("new", now=T0)
    assert await engine.snapshot("unsigned") == {1: 0.0}
    await engine.discard_staging("old")
    await engine.discard_staging("new")
    with pytest.raises(RebuildNotActive):
        await engine.swap("new", now=T0)


async def test_give_back_restores_an_unused_lease_in_one_step(engine: QueueEngine, redis_client: Redis) -> None:
    """A lease whose call session could not start goes back exactly as it was taken: queue, score,
    gates and reservation, and the agent holds nobody (the next-call undo is this one script)."""
    await engine.upsert(entry(1, "callbacks", 5.0, vulnerable=True, reserved_for_agent=7, reserved_until=T0 + 60))
    offer = await engine.next_call_detailed(agent_id=7, queues=ALL, trained_vulnerable=True, now=T0, session_id="s")
    assert offer.lease is not None and offer.lease.session_id == "s"

    await engine.give_back(user_id=1, token=offer.lease.token, now=T0 + 1)

    assert await engine.position(1) == ("callbacks", 5.0)
    assert await engine.lease_of(1) is None and await engine.lease_of_agent(7) is None
    assert await redis_client.sismember(engine.keys.vulnerable, "1")  # type: ignore[misc]
    assert await redis_client.hget(engine.keys.reservations, "1") is not None
    with pytest.raises(StaleLease):  # once only: a second undo finds nothing of its own
        await engine.give_back(user_id=1, token=offer.lease.token, now=T0 + 2)


async def test_next_call_with_a_presence_key_leases_only_to_an_available_agent(
    engine: QueueEngine, redis_client: Redis
) -> None:
    await engine.upsert(entry(1))
    presence = f"{engine.keys.root}:presence:7"
    await redis_client.hset(presence, mapping={"state": "break", "reason": "lunch", "since": "1"})  # type: ignore[misc]

    with pytest.raises(AgentNotAvailable) as refused:
        await engine.next_call_detailed(agent_id=7, queues=ALL, trained_vulnerable=False, now=T0, presence_key=presence)
    await redis_client.hset(presence, "state", "available")  # type: ignore[misc]
    offer = await engine.next_call_detailed(
        agent_id=7, queues=ALL, trained_vulnerable=False, now=T0, presence_key=presence
    )

    assert refused.value.state == "break"
    assert offer.lease is not None and offer.lease.user_id == 1
    with pytest.raises(ValueError):  # another hash slot: not one atomic step
        await engine.next_call_detailed(agent_id=8, queues=ALL, trained_vulnerable=False, now=T0, presence_key="x")


# --------------------------------------------------------------------------- leases follow sessions


async def test_an_open_session_reclaims_its_lapsed_lease_and_nobody_else_is_offered_the_customer(
    engine: QueueEngine,
) -> None:
    """The worker was away longer than the TTL: the lease lapsed and the customer went back to the
    head of the queue, where every other agent would get them (and then a 409). The session's next
    renewal re-takes it: out of the queue, the same agent and token, and released normally."""
    await engine.upsert_many([entry(1, score=1.0), entry(2, score=2.0)])
    lease = await take(engine, 5)
    assert lease is not None and lease.user_id == 1
    assert await engine.reap_expired(now=T0 + TTL) == [1]
    assert await engine.position(1) == ("unsigned", 1.0)

    later = T0 + TTL + 5
    assert await engine.reclaim(user_id=1, agent_id=5, token=lease.token, session_id="s-1", now=later) == "reclaimed"
    assert await engine.position(1) is None
    held = await engine.lease_of(1)
    assert held is not None and (held.agent_id, held.token, held.session_id) == (5, lease.token, "s-1")
    assert held.expires_at == later + TTL
    other = await take(engine, 6, now=later)
    assert other is not None and other.user_id == 2  # not customer 1
    # The call ends: released with the session's own token.
    await engine.release(user_id=1, token=lease.token, requeue=None, now=later + 1)
    assert await engine.lease_of(1) is None and await engine.lease_of_agent(5) is None


async def test_a_session_reclaims_a_lease_redis_lost_and_later_tokens_stay_greater(
    engine: QueueEngine, redis_client: Redis
) -> None:
    await engine.upsert_many([entry(1, score=1.0), entry(2, score=2.0)])
    lease = await take(engine, 5)
    assert lease is not None
    await unlink_prefix(redis_client, engine.keys.root)  # Redis flushed
    await engine.upsert(entry(1, score=1.0))  # the rebuild/CDC put the customer back in a queue

    assert await engine.reclaim(user_id=1, agent_id=5, token=lease.token, session_id=None, now=T0 + 1) == "reclaimed"
    assert await engine.position(1) is None
    assert await engine.renew(user_id=1, token=lease.token, now=T0 + 2)
    await engine.upsert(entry(2, score=2.0))
    fresh = await take(engine, 6, now=T0 + 3)
    assert fresh is not None and fresh.user_id == 2 and fresh.token > lease.token  # the fence survives the flush
    assert await engine.reclaim(user_id=1, agent_id=5, token=lease.token, session_id=None, now=T0 + 4) == "renewed"


async def test_a_reclaim_never_breaks_another_agents_live_lease(engine: QueueEngine) -> None:
    await engine.upsert(entry(1, score=1.0))
    old = await take(engine, 5)
    assert old is not None
    new = await take(engine, 6, now=T0 + TTL)  # lapsed, and another agent has the customer now
    assert new is not None and new.user_id == 1
    with pytest.raises(StaleLease) as err:
        await engine.reclaim(user_id=1, agent_id=5, token=old.token, session_id=None, now=T0 + TTL + 1)
    assert err.value.reason == "held_by_another"
    assert await engine.lease_of(1) == new
