"""The Redis queue engine: who is offered next, under an atomic, fenced lease.

Every state change is one Lua script (``lua/*.lua``, with ``lua/lib.lua`` prepended), so no customer
is ever leased to two agents and a customer sits in at most one queue. Time never comes from the
Redis clock: each method takes ``now`` (epoch seconds), which keeps the scripts deterministic and the
tests free of sleeps. Key layout: :mod:`dialler.queues.keys`.

Leases are fenced: each carries a token from a global counter, and :meth:`QueueEngine.renew` /
:meth:`QueueEngine.release` are refused with :class:`StaleLease` unless the token is the current one
and the lease has not expired. An expired lease puts its customer back (reaped at the start of every
``next_call``, by ``reap_expired``, or by the stale renew/release that notices it).

Batch rebuild (``QueueRebuildWorkflow``), in this order:

1. ``begin_rebuild(run_id)`` *before* reading the replica. From then on every incremental placement
   change (upsert, remove, release, lease expiry) records the user in a dirty set.
2. ``stage_many(run_id, entries)`` from the fan-out activities, as often as needed (idempotent). Every
   entry must carry its compliance gates (``not_before``): the swap replaces the live gates.
3. ``swap(run_id, now=...)`` once all staging is done. In short chunks (Redis stays responsive) it
   copies the dirty users' live placement into staging and counts the drift; then one short atomic
   script catches up with the last changes, drops leased users from staging (their lease's restore
   placement becomes the rebuild's) and RENAMEs staging over live; old structures are freed by UNLINK
   in the background. Dirty users keep their *live* placement because the snapshot may predate
   their change and must not undo a gate set by a call outcome. The swap returns those dirty user
   ids: re-derive and ``upsert``/``remove`` them after the swap, so that anything the snapshot saw
   later than the incremental path is applied too. ``swap`` is idempotent per run id (the result is
   kept for a day). Peak memory during a rebuild is live + staging, about twice the queues.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from dialler.errors import Conflict
from dialler.queues.keys import QUEUES, QueueKeys

__all__ = [
    "QUEUES",
    "AgentAlreadyHoldsLease",
    "AgentNotAvailable",
    "Drift",
    "Lease",
    "NextCall",
    "QueueDrift",
    "QueueEngine",
    "QueueEntry",
    "RebuildNotActive",
    "StaleLease",
]

# Redis runs every complete command in a client's read buffer (~16 KB) before serving anyone else,
# so what bounds the stall a batch causes for next_call is server time per script x scripts per read.
_BATCH = 100  # entries per script call in the batch methods: ~0.3-0.8 ms of server time each
_PIPELINE = 20  # scripts per round trip in the batch methods
_STAGE_BATCH = 250  # entries per stage.lua call: a dozen variadic commands, ~1-2 ms of server time
_DRIFT_CHUNK = 250  # members per drift pre-pass call (~0.5-1.5 ms); one per round trip, never pipelined
_DRIFT_LANES = 4  # drift calls in flight per queue, each on its own connection
_DONE_TTL_S = 24 * 3600


# --------------------------------------------------------------------------- values and errors


@dataclass(frozen=True)
class QueueEntry:
    user_id: int
    queue: str
    score: float
    not_before: float | None = None
    vulnerable: bool = False
    reserved_for_agent: int | None = None
    reserved_until: float | None = None

    def __post_init__(self) -> None:
        if self.queue not in QUEUES:
            raise ValueError(f"unknown queue {self.queue!r}")
        if not math.isfinite(self.score):
            raise ValueError("score must be finite")
        if (self.reserved_for_agent is None) != (self.reserved_until is None):
            raise ValueError("reserved_for_agent and reserved_until go together")


@dataclass(frozen=True)
class Lease:
    user_id: int
    agent_id: int
    token: int
    queue: str
    score: float
    expires_at: float
    session_id: str | None = None
    """The call session this lease is for: the one record of who holds whom (agent, customer, session)."""


@dataclass(frozen=True)
class NextCall:
    """Outcome of a next_call: the lease, or why the scanned heads of the queues were not eligible."""

    lease: Lease | None
    scanned: int = 0
    blocked_not_before: int = 0
    blocked_vulnerable: int = 0
    blocked_reserved: int = 0


@dataclass(frozen=True)
class QueueDrift:
    added: int
    removed: int
    rescored: int
    live_before: int
    live_after: int


@dataclass(frozen=True)
class Drift:
    """What a rebuild changed. Counts exclude leased and dirty users; under concurrent changes they
    are approximate by at most the number of those changes (the pre-pass runs before the swap)."""

    run_id: str
    queues: Mapping[str, QueueDrift]
    dirty_user_ids: tuple[int, ...]
    """Changed incrementally during the rebuild; kept live. Re-derive and upsert/remove them."""
    leased_user_ids: tuple[int, ...]
    """Leased at swap time and present in staging: their lease restores the rebuild's placement."""


class StaleLease(Conflict):
    def __init__(self, user_id: int, reason: str) -> None:
        super().__init__(f"stale lease for user {user_id}: {reason}")
        self.user_id = user_id
        self.reason = reason  # "no_lease" | "token" | "expired"


class AgentAlreadyHoldsLease(Conflict):
    def __init__(self, agent_id: int, user_id: int) -> None:
        super().__init__(f"agent {agent_id} already holds the lease of user {user_id}")
        self.agent_id = agent_id
        self.user_id = user_id


class AgentNotAvailable(Conflict):
    """next_call with a presence key, for an agent whose presence is not ``available``."""

    def __init__(self, agent_id: int, state: str) -> None:
        super().__init__(f"agent {agent_id} is {state or 'unknown'}, not available")
        self.agent_id = agent_id
        self.state = state


class RebuildNotActive(Conflict):
    """swap() for a run that is not the rebuild in progress (expired, superseded) or has no staging."""


# --------------------------------------------------------------------------- helpers


@cache
def _script_source(name: str) -> str:
    lua = files("dialler.queues") / "lua"
    return (lua / "lib.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# Arguments are handed to redis-py as bytes: its per-argument encoding of str/int/float costs about
# three times as much client CPU as the script call needs otherwise (11 keys + args per call).
_QUEUE_B = {q: q.encode() for q in QUEUES}
_Key = bytes | str
_Arg = bytes | str | int


def _f(value: float) -> bytes:
    return repr(float(value)).encode()


def _i(value: int) -> bytes:
    return b"%d" % value


def _num(value: float | None) -> bytes:
    return b"" if value is None else _f(value)


def _entry_args(entry: QueueEntry) -> list[bytes]:
    reservation = b""
    if entry.reserved_for_agent is not None:
        reservation = b"%d|%s" % (entry.reserved_for_agent, _num(entry.reserved_until))
    return [
        _i(entry.user_id),
        _QUEUE_B[entry.queue],
        _f(entry.score),
        _num(entry.not_before),
        b"1" if entry.vulnerable else b"0",
        reservation,
    ]


def _stage_args(entries: Iterable[QueueEntry]) -> list[bytes]:
    """stage.lua's arguments: per queue (score, user) pairs in ZADD's order, then the metadata."""
    pairs: dict[str, list[bytes]] = {q: [] for q in QUEUES}
    not_before: list[bytes] = []
    vulnerable: list[bytes] = []
    reservations: list[bytes] = []
    for e in entries:
        user = _i(e.user_id)
        pairs[e.queue] += (_f(e.score), user)
        if e.not_before is not None:
            not_before += (user, _f(e.not_before))
        if e.vulnerable:
            vulnerable.append(user)
        if e.reserved_for_agent is not None:
            reservations += (user, b"%d|%s" % (e.reserved_for_agent, _num(e.reserved_until)))
    args: list[bytes] = []
    for group in (*(pairs[q] for q in QUEUES), not_before):
        args += (_i(len(group) // 2), *group)
    args += (_i(len(vulnerable)), *vulnerable)
    args += (_i(len(reservations) // 2), *reservations)
    return args


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _check_queues(queues: Iterable[str]) -> list[bytes]:
    names = list(queues)
    unknown = [q for q in names if q not in QUEUES]
    if unknown:
        raise ValueError(f"unknown queues {unknown!r}")
    return [_QUEUE_B[q] for q in names]


def _int_list(raw: Any) -> tuple[int, ...]:
    # cjson encodes an empty Lua table as {} rather than [].
    return tuple(sorted(int(u) for u in raw)) if isinstance(raw, list) else ()


def _drift_from_json(raw: str, dirty: Iterable[Any]) -> Drift:
    doc = json.loads(raw)
    queues = {q: QueueDrift(**{k: int(v) for k, v in doc["queues"][q].items()}) for q in QUEUES}
    return Drift(
        run_id=doc["run_id"],
        queues=queues,
        dirty_user_ids=tuple(sorted(int(_s(u)) for u in dirty)),
        leased_user_ids=_int_list(doc.get("leased")),
    )


# --------------------------------------------------------------------------- engine


class QueueEngine:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        lease_ttl_s: int,
        scan_limit: int = 100,
        reap_batch: int = 50,
        rebuild_ttl_s: int = 6 * 3600,
    ) -> None:
        if lease_ttl_s <= 0 or scan_limit <= 0 or reap_batch <= 0:
            raise ValueError("lease_ttl_s, scan_limit and reap_batch must be positive")
        self._redis = redis
        self.keys = QueueKeys(prefix)
        self.lease_ttl_s = lease_ttl_s
        self._scan_limit = scan_limit
        self._reap_batch = reap_batch
        self._rebuild_ttl_s = rebuild_ttl_s
        self._base: list[_Key] = [k.encode() for k in self.keys.base()]
        self._lp = self.keys.lease_prefix.encode()
        self._next_call = self._load("next_call")
        self._renew = self._load("renew")
        self._reclaim = self._load("reclaim")
        self._release = self._load("release")
        self._give_back = self._load("give_back")
        self._claim = self._load("claim")
        self._reap = self._load("reap")
        self._upsert = self._load("upsert")
        self._remove = self._load("remove")
        self._begin = self._load("begin_rebuild")
        self._stage = self._load("stage")
        self._drift = self._load("drift")
        self._sync = self._load("sync_dirty")
        self._swap = self._load("swap")

    def _load(self, name: str) -> AsyncScript:
        return self._redis.register_script(_script_source(name))

    # ----------------------------------------------------------------------- leases

    async def next_call(
        self, *, agent_id: int, queues: Sequence[str], trained_vulnerable: bool, now: float
    ) -> Lease | None:
        """Lease the best eligible customer of the agent's queues (in the given priority order)."""
        result = await self.next_call_detailed(
            agent_id=agent_id, queues=queues, trained_vulnerable=trained_vulnerable, now=now
        )
        return result.lease

    async def next_call_detailed(
        self,
        *,
        agent_id: int,
        queues: Sequence[str],
        trained_vulnerable: bool,
        now: float,
        session_id: str | None = None,
        presence_key: str | None = None,
    ) -> NextCall:
        """As :meth:`next_call`, with why nobody was leased. ``session_id`` is kept in the lease (the
        session it is for); with ``presence_key`` the lease is taken only if that hash's state is
        ``available`` (checked in the same atomic step; else :class:`AgentNotAvailable`). The key
        must share the engine's hash tag (``keys.root``)."""
        if presence_key is not None and not presence_key.startswith(self.keys.root + ":"):
            raise ValueError("the presence key must live under the engine's hash tag")
        expires_at = now + self.lease_ttl_s
        args: list[Any] = [
            self._lp,
            _i(agent_id),
            _f(now),
            _f(expires_at),
            b"1" if trained_vulnerable else b"0",
            self._reap_batch,
            self._scan_limit,
            (session_id or "").encode(),
            (presence_key or "").encode(),
            *_check_queues(queues),
        ]
        reply = await self._next_call(keys=self._base, args=args)
        tag = _s(reply[0])
        if tag == "lease":
            lease = Lease(
                user_id=int(reply[1]),
                agent_id=agent_id,
                token=int(reply[2]),
                queue=_s(reply[3]),
                score=float(reply[4]),
                expires_at=expires_at,
                session_id=session_id or None,
            )
            return NextCall(lease=lease)
        if tag == "held":
            raise AgentAlreadyHoldsLease(agent_id, int(reply[1]))
        if tag == "busy":
            raise AgentNotAvailable(agent_id, _s(reply[1]))
        return NextCall(None, *(int(x) for x in reply[1:5]))

    async def renew(self, *, user_id: int, token: int, now: float) -> Lease:
        expires_at = now + self.lease_ttl_s
        reply = await self._renew(keys=self._base, args=[self._lp, _i(user_id), _i(token), _f(now), _f(expires_at)])
        if _s(reply[0]) != "ok":
            raise StaleLease(user_id, _s(reply[1]))
        return Lease(user_id, int(reply[1]), token, _s(reply[2]), float(reply[3]), expires_at)

    async def reclaim(self, *, user_id: int, agent_id: int, token: int, session_id: str | None, now: float) -> str:
        """Re-take the lease of an open call session (its agent and token) when Redis lost it or it
        lapsed: ``"renewed"`` if it was still there, ``"reclaimed"`` if it was made again (the customer
        taken out of the queue if they were requeued meanwhile). Raises :class:`StaleLease` when
        another agent holds a live lease on the customer, or this agent a live one on another: the
        fence is never broken."""
        args = [self._lp, _i(user_id), _i(agent_id), _i(token), _f(now), _f(now + self.lease_ttl_s)]
        reply = await self._reclaim(keys=self._base, args=[*args, (session_id or "").encode()])
        if _s(reply[0]) != "ok":
            raise StaleLease(user_id, _s(reply[1]))
        return _s(reply[1])

    async def claim(
        self, *, user_id: int, token: int, pool_id: int, candidates: Sequence[tuple[int, str]], now: float
    ) -> int | None:
        """Hand a pooled call's lease (held by ``pool_id``) to the first of ``candidates`` (agent id,
        presence key) who is available and holds no customer, atomically: the agent id, or None when
        nobody could take it. Raises :class:`StaleLease` when the lease is not the pooled call's any more."""
        for _, key in candidates:
            if not key.startswith(self.keys.root + ":"):
                raise ValueError("the presence keys must live under the engine's hash tag")
        args: list[Any] = [self._lp, _i(user_id), _i(token), _f(now), str(pool_id).encode()]
        for agent_id, key in candidates:
            args += [_i(agent_id), key.encode()]
        reply = await self._claim(keys=self._base, args=args)
        tag = _s(reply[0])
        if tag == "ok":
            return int(reply[1])
        if tag == "none":
            return None
        raise StaleLease(user_id, _s(reply[1]))

    async def give_back(self, *, user_id: int, token: int, now: float) -> None:
        """Undo a lease that was never used, in one atomic step: the customer goes back exactly where
        it was taken from (its placement, gates and reservation). Raises StaleLease if the lease is
        not this one any more (then there is nothing of ours to undo)."""
        reply = await self._give_back(keys=self._base, args=[self._lp, _i(user_id), _i(token), _f(now)])
        if _s(reply[0]) != "ok":
            raise StaleLease(user_id, _s(reply[1]))

    async def release(self, *, user_id: int, token: int, requeue: QueueEntry | None, now: float) -> None:
        """End the lease; requeue with ``requeue`` or take the customer out of the queues.

        On StaleLease the caller no longer owns the customer: to still record its placement use
        :meth:`upsert`, which is unfenced and respects a newer lease.
        """
        if requeue is not None and requeue.user_id != user_id:
            raise ValueError("requeue entry is for another user")
        placement = [b"1", *_entry_args(requeue)[1:]] if requeue else [b"0", b"", b"", b"", b"", b""]
        reply = await self._release(keys=self._base, args=[self._lp, _i(user_id), _i(token), _f(now), *placement])
        if _s(reply[0]) != "ok":
            raise StaleLease(user_id, _s(reply[1]))

    async def reap_expired(self, *, now: float, limit: int = 1000) -> list[int]:
        reply = await self._reap(keys=self._base, args=[self._lp, _f(now), limit])
        return [int(u) for u in reply]

    async def lease_of(self, user_id: int) -> Lease | None:
        """The stored lease, even if expired and not yet reaped (compare ``expires_at`` with now)."""
        raw = await self._redis.hgetall(self.keys.lease(user_id))
        if not raw:
            return None
        f = {_s(k): _s(v) for k, v in raw.items()}
        return Lease(
            user_id=user_id,
            agent_id=int(f["agent"]),
            token=int(f["token"]),
            queue=f["queue"],
            score=float(f["score"]),
            expires_at=float(f["expires_at"]),
            session_id=f.get("session") or None,
        )

    async def lease_of_agent(self, agent_id: int) -> Lease | None:
        user = await self._redis.hget(self.keys.lease_agents, str(agent_id))
        if user is None:
            return None
        lease = await self.lease_of(int(_s(user)))
        return lease if lease is not None and lease.agent_id == agent_id else None

    # ----------------------------------------------------------------------- placement

    async def upsert(self, entry: QueueEntry) -> None:
        """Place the customer in exactly ``entry.queue``; if leased, only its restore placement."""
        await self._upsert(keys=self._base, args=[self._lp, *_entry_args(entry)])

    async def remove(self, user_id: int) -> None:
        """Take the customer out of every queue; if leased, its lease will restore nothing."""
        await self._remove(keys=self._base, args=[self._lp, user_id])

    async def upsert_many(self, entries: Sequence[QueueEntry]) -> None:
        """Each chunk of ``_BATCH`` entries is atomic; the batch as a whole is not."""
        arg_lists = [[self._lp, *(a for e in chunk for a in _entry_args(e))] for chunk in _chunks(entries, _BATCH)]
        await self._pipelined(self._upsert, self._base, arg_lists)

    async def remove_many(self, user_ids: Sequence[int]) -> None:
        arg_lists = [[self._lp, *map(_i, chunk)] for chunk in _chunks(user_ids, _BATCH)]
        await self._pipelined(self._remove, self._base, arg_lists)

    async def _pipelined(self, script: AsyncScript, keys: list[_Key], arg_lists: Sequence[Sequence[_Arg]]) -> None:
        # Short scripts let other clients in between; a bounded pipeline keeps round trips few
        # without queueing seconds of work behind one reply (redis-py's default read timeout is 5 s).
        for group in _chunks(arg_lists, _PIPELINE):
            async with self._redis.pipeline(transaction=False) as pipe:
                for args in group:
                    await script(keys=keys, args=args, client=pipe)
                await pipe.execute()

    # ----------------------------------------------------------------------- reads

    async def depths(self) -> dict[str, int]:
        async with self._redis.pipeline(transaction=True) as pipe:
            for q in QUEUES:
                pipe.zcard(self.keys.queue(q))
            counts = await pipe.execute()
        return dict(zip(QUEUES, (int(c) for c in counts), strict=True))

    async def page(self, queue: str, *, offset: int, limit: int) -> list[tuple[int, float]]:
        _check_queues([queue])
        if limit <= 0:
            return []
        key = self.keys.queue(queue)
        rows: list[Any] = await self._redis.zrange(key, offset, offset + limit - 1, withscores=True)
        return [(int(_s(u)), float(s)) for u, s in rows]

    async def ready_heads(self, queue: str, *, limit: int, now: float) -> list[int]:
        """The first ``limit`` customers of ``queue`` whose next allowed time has passed, best first:
        those next-call takes next (whether a given agent may also depends on vulnerability and
        callback reservations). Scans at most four times ``limit`` entries."""
        page = [user_id for user_id, _ in await self.page(queue, offset=0, limit=4 * limit)]
        if not page:
            return []
        not_before = await self._redis.hmget(self.keys.not_before, [str(u) for u in page])
        return [u for u, nb in zip(page, not_before, strict=True) if nb is None or float(nb) <= now][:limit]

    async def position(self, user_id: int) -> tuple[str, float] | None:
        """Queue and score of a queued customer; None if it is in no queue (or leased)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for q in QUEUES:
                pipe.zscore(self.keys.queue(q), str(user_id))
            scores = await pipe.execute()
        for q, s in zip(QUEUES, scores, strict=True):
            if s is not None:
                return q, float(s)
        return None

    async def snapshot(self, queue: str) -> dict[int, float]:
        """All members of a queue. Uses ZSCAN so a large queue never blocks Redis; not a point-in-time
        view if the queue changes meanwhile."""
        _check_queues([queue])
        out: dict[int, float] = {}
        async for member, score in self._redis.zscan_iter(self.keys.queue(queue), count=5000):
            out[int(_s(member))] = float(score)
        return out

    # ----------------------------------------------------------------------- rebuild

    async def begin_rebuild(self, run_id: str) -> bool:
        """Mark ``run_id`` as the rebuild in progress; True if this call started it (idempotent)."""
        self.keys.staging(run_id)  # validates the run id
        reply = await self._begin(keys=self._base, args=[self._lp, run_id, self._rebuild_ttl_s])
        return int(reply) == 1

    async def stage_many(self, run_id: str, entries: Sequence[QueueEntry]) -> None:
        """Write entries into the run's staging keys. Idempotent (for a user given twice, the last entry
        counts); an empty call still marks the run as staged (so a rebuild that finds nobody can swap in
        empty queues)."""
        keys: list[_Key] = [*self._base, *self.keys.staging(run_id).all()]
        unique = list({e.user_id: e for e in entries}.values())
        chunks = list(_chunks(unique, _STAGE_BATCH)) if unique else [()]
        arg_lists: list[list[_Arg]] = [[self._lp, self._rebuild_ttl_s, *_stage_args(chunk)] for chunk in chunks]
        await self._pipelined(self._stage, keys, arg_lists)

    async def swap(self, run_id: str, *, now: float) -> Drift:
        """Count the drift, then atomically replace the live queues with the run's staging.

        Call once every ``stage_many`` of the run has finished. Raises RebuildNotActive if the run is
        not the rebuild in progress or staged nothing. ``now`` is kept for symmetry and logging: the
        swap itself does not depend on time.
        """
        del now
        staging = self.keys.staging(run_id)
        raw = await self._redis.get(self.keys.done(run_id))
        if raw is None:
            current = await self._redis.get(self.keys.rebuild)
            if current is None or _s(current) != run_id:
                raise RebuildNotActive(f"run {run_id!r} is not the rebuild in progress")
            if not await self._redis.exists(staging.meta):
                raise RebuildNotActive(f"run {run_id!r} staged nothing")
            # Copy the users changed so far into staging in short chunks, count the drift, catch up
            # with the changes made meanwhile: the atomic script is left with a handful of users.
            await self._sync_dirty(staging.swappable())
            prepass = await self._drift_prepass(staging.swappable())
            await self._sync_dirty(staging.swappable())
            keys: list[_Key] = [*self._base, *staging.all(), self.keys.done(run_id), self.keys.done_dirty(run_id)]
            reply = await self._swap(keys=keys, args=[self._lp, run_id, _DONE_TTL_S, json.dumps(prepass)])
            tag = _s(reply[0])
            if tag not in ("ok", "done"):
                raise RebuildNotActive(f"swap of run {run_id!r} refused: {tag} {_s(reply[1])!r}".strip())
            raw = reply[1]
        await self._redis.set(self.keys.built, run_id)  # the next rebuild compares with something real
        dirty = [u async for u in self._redis.sscan_iter(self.keys.done_dirty(run_id), count=1000)]
        return _drift_from_json(_s(raw), dirty)

    async def lost(self) -> bool:
        """Whether the store has lost the queues since they were last built: no rebuild swapped in since
        Redis was emptied (a flush, a new instance, a fresh install). CDC and outcomes put back only the
        customers they touch; only a rebuild brings back the rest."""
        return not await self._redis.exists(self.keys.built)

    async def unfilled(self) -> bool:
        """Whether the queues have never been filled: no rebuild swapped in since Redis was last
        emptied (a fresh install, a flush) and nobody queued or leased. A rebuild then fills them
        rather than correcting them, so what it adds is not drift. Queues placed some other way (CDC,
        a recompute) are compared as usual: what a rebuild changes there is drift."""
        if await self._redis.exists(self.keys.built):
            return False
        return sum(await self._cards([*(self.keys.queue(q) for q in QUEUES), self.keys.lease_expiry])) == 0

    async def discard_staging(self, run_id: str) -> None:
        """Drop a failed run's staging (it would expire anyway) and its marker if still current."""
        await self._redis.unlink(*self.keys.staging(run_id).all())
        current = await self._redis.get(self.keys.rebuild)
        if current is not None and _s(current) == run_id:
            await self._redis.unlink(self.keys.rebuild, self.keys.dirty, self.keys.pending)

    async def _sync_dirty(self, staging_keys: list[str]) -> None:
        keys: list[_Key] = [*self._base, *staging_keys]
        for _ in range(1000):  # bounded: under a storm of changes the swap script takes the rest
            synced, pending = await self._sync(keys=keys, args=[self._lp, _BATCH, self._rebuild_ttl_s])
            if int(pending) == 0 or int(synced) < _BATCH:
                return

    async def _drift_prepass(self, staging_keys: list[str]) -> dict[str, dict[str, int]]:
        keys: list[_Key] = [*self._base, *staging_keys]
        cards = await self._cards([*staging_keys[:3], *(self.keys.queue(q) for q in QUEUES)])
        # Each queue is walked in a few lanes side by side, one connection each: Redis serves the
        # lanes (and everyone else) one short script at a time, and the round trips overlap.
        lanes = [
            self._drift_walk(keys, q, range(start, cards[i], _DRIFT_CHUNK * _DRIFT_LANES))
            for i, q in enumerate(QUEUES)
            for start in range(0, _DRIFT_CHUNK * _DRIFT_LANES, _DRIFT_CHUNK)
        ]
        walked = await asyncio.gather(*lanes)
        out: dict[str, dict[str, int]] = {}
        for i, q in enumerate(QUEUES):
            added, rescored, in_both = (
                sum(w[k] for w in walked[i * _DRIFT_LANES : (i + 1) * _DRIFT_LANES]) for k in range(3)
            )
            # Leases taken during the walk shrink the live queue: never report fewer than none removed.
            out[q] = {"added": added, "rescored": rescored, "removed": max(0, cards[3 + i] - in_both)}
        return out

    async def _drift_walk(self, keys: list[_Key], queue: str, starts: range) -> tuple[int, int, int]:
        added = rescored = in_both = 0
        for start in starts:
            reply = await self._drift(keys=keys, args=[self._lp, queue, start, start + _DRIFT_CHUNK - 1])
            added += int(reply[1])
            rescored += int(reply[2])
            in_both += int(reply[3])
        return added, rescored, in_both

    async def _cards(self, keys: list[str]) -> list[int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.zcard(k)
            return [int(c) for c in await pipe.execute()]
