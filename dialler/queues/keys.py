"""Redis key layout of the queue engine.

Every key carries the same ``{q}`` hash tag (``<prefix>:{q}:...``), so all of them hash to one slot
and every Lua script may touch any of them on Redis Cluster. The price is that the whole queue state
lives on one shard; at the sizes we run (hundreds of thousands of members, hundreds of agents) that
is a few tens of MB and a few thousand script calls per second, well within one node.

Layout (``R`` = ``<prefix>:{q}``):

=================================  ======  =================================================================
key                                type    holds
=================================  ======  =================================================================
``R:queue:<name>``                 zset    user id -> score, one per queue; lower is called sooner
``R:not_before``                   hash    user id -> epoch before which the user is not offered
``R:vulnerable``                   set     user ids offered only to agents trained for them
``R:reservations``                 hash    user id -> ``"<agent id>|<reserved_until epoch>"``
``R:lease:<user id>``              hash    agent, token, queue, score, expires_at + ``r_*`` restore
``R:lease_expiry``                 zset    user id -> expires_at of its lease
``R:lease_agents``                 hash    agent id -> user id it holds
``R:token``                        string  fencing-token counter (INCR)
``R:rebuild``                      string  run id of the rebuild in progress (TTL)
``R:built``                        string  run id of the last rebuild swapped in; absent on a fresh or
                                           flushed Redis, where the next rebuild is a fill, not drift
``R:rebuild:dirty``                set     user ids changed incrementally while it runs
``R:rebuild:pending``              set     dirty user ids not yet copied into staging
``R:rebuild:done:<run id>``        string  JSON drift of a finished swap (TTL; makes swap idempotent)
``R:rebuild:done:<run id>:dirty``  set     that run's dirty user ids, kept as long as the drift
``R:stage:<run id>:...``           *       staging copies of queue/not_before/vulnerable/reservations + meta
=================================  ======  =================================================================

The not_before / vulnerable / reservation structures only hold users that are *queued*: taking a
lease moves a user's metadata into the lease's restore fields, so a rebuild can swap them wholesale.
"""

from __future__ import annotations

from dataclasses import dataclass

QUEUES: tuple[str, ...] = ("callbacks", "unsigned", "outstanding_requests")
"""Queue names in priority order. The Lua scripts rely on this order for KEYS[1..3]."""

HASH_TAG = "{q}"


def _check_part(kind: str, value: str) -> None:
    # A brace would move the hash tag; a colon would break the Lua-side parsing of queue names.
    if not value or any(c in value for c in "{}") or (kind == "queue" and ":" in value):
        raise ValueError(f"invalid {kind} for a queue key: {value!r}")


@dataclass(frozen=True)
class StagingKeys:
    """Staging copies of the swappable structures for one rebuild run."""

    queues: tuple[str, ...]
    not_before: str
    vulnerable: str
    reservations: str
    meta: str

    def swappable(self) -> list[str]:
        """The six keys in the same order as :meth:`QueueKeys.swappable` (KEYS layout of a keyset)."""
        return [*self.queues, self.not_before, self.vulnerable, self.reservations]

    def all(self) -> list[str]:
        return [*self.swappable(), self.meta]


@dataclass(frozen=True)
class QueueKeys:
    prefix: str

    def __post_init__(self) -> None:
        _check_part("prefix", self.prefix)

    @property
    def root(self) -> str:
        return f"{self.prefix}:{HASH_TAG}"

    def queue(self, name: str) -> str:
        _check_part("queue", name)
        return f"{self.root}:queue:{name}"

    @property
    def not_before(self) -> str:
        return f"{self.root}:not_before"

    @property
    def vulnerable(self) -> str:
        return f"{self.root}:vulnerable"

    @property
    def reservations(self) -> str:
        return f"{self.root}:reservations"

    @property
    def lease_prefix(self) -> str:
        return f"{self.root}:lease:"

    def lease(self, user_id: int) -> str:
        return f"{self.lease_prefix}{user_id}"

    @property
    def lease_expiry(self) -> str:
        return f"{self.root}:lease_expiry"

    @property
    def lease_agents(self) -> str:
        return f"{self.root}:lease_agents"

    @property
    def token(self) -> str:
        return f"{self.root}:token"

    @property
    def rebuild(self) -> str:
        return f"{self.root}:rebuild"

    @property
    def built(self) -> str:
        return f"{self.root}:built"

    @property
    def dirty(self) -> str:
        return f"{self.root}:rebuild:dirty"

    @property
    def pending(self) -> str:
        return f"{self.root}:rebuild:pending"

    def done(self, run_id: str) -> str:
        _check_part("run id", run_id)
        return f"{self.root}:rebuild:done:{run_id}"

    def done_dirty(self, run_id: str) -> str:
        return f"{self.done(run_id)}:dirty"

    def swappable(self) -> list[str]:
        """Live keys a rebuild replaces: the three queues, not_before, vulnerable, reservations."""
        return [*(self.queue(q) for q in QUEUES), self.not_before, self.vulnerable, self.reservations]

    def base(self) -> list[str]:
        """KEYS[1..12] of every script, in the order ``lua/lib.lua`` expects."""
        return [
            *self.swappable(),
            self.lease_expiry,
            self.lease_agents,
            self.token,
            self.rebuild,
            self.dirty,
            self.pending,
        ]

    def staging(self, run_id: str) -> StagingKeys:
        _check_part("run id", run_id)
        root = f"{self.root}:stage:{run_id}"
        return StagingKeys(
            queues=tuple(f"{root}:queue:{q}" for q in QUEUES),
            not_before=f"{root}:not_before",
            vulnerable=f"{root}:vulnerable",
            reservations=f"{root}:reservations",
            meta=f"{root}:meta",
        )

    @property
    def match_all(self) -> str:
        """SCAN pattern for every key of this engine (braces are literal in Redis globs)."""
        return f"{self.root}:*"
