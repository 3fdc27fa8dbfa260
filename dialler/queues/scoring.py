"""The priority score of a queued customer: lower score = called sooner (Redis ZRANGE order).

The score is one integer built from bit fields, most significant first, and stored as a float.
It stays below 2**53, so a Redis score (an IEEE double) holds it exactly, and comparing scores
compares the fields lexicographically: each criterion only matters when all those above it tie.

=====  ==========================  ======  =========================================================
 bits   field                       width   meaning (lower value = called sooner)
=====  ==========================  ======  =========================================================
 52-51  queue tier                  2       0 callbacks, 1 unsigned, 2 outstanding_requests
                                            (QUEUE_PRIORITY order, so scores compare across queues)
 -- callbacks --
 50-20  due second                  31      seconds from 2020-01-01 UTC to ``due_at`` (to 2088): the
                                            earlier the due time, the later the callback, the sooner
                                            called; to the second, so that callbacks queued ahead of
                                            their time (not-before = due) sort after every due one
 19-0   user_id                     20      tie-break, lower id first; ids above 1,048,575 capped
 -- unsigned and outstanding_requests --
 50-45  attempts_total              6       0 = never contacted, so never-contacted customers come
                                            first, then fewer attempts; capped at 63
 44-30  oldest active claim day     15      days from 2000-01-01 (UTC): older claims first; capped
                                            to 0..32767 (year 2089); no claim date sorts last
 29-24  63 - pending requirements   6       more pending requirements first; capped at 63
 23-0   user_id                     24      deterministic tie-break, lower id first; ids above
                                            16,777,215 are capped (Redis then orders equal scores
                                            by member, which is still deterministic)
=====  ==========================  ======  =========================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from dialler.queues.eligibility import QUEUE_PRIORITY, QueueName

__all__ = ["MAX_SCORE", "explain_score", "queue_score"]

_USER_BITS: Final = 24
_PENDING_BITS: Final = 6
_DAY_BITS: Final = 15
_ATTEMPT_BITS: Final = 6
_DUE_BITS: Final = 31
_CALLBACK_USER_BITS: Final = 20
_BODY_BITS: Final = 51
_TIER_BITS: Final = 2
assert _ATTEMPT_BITS + _DAY_BITS + _PENDING_BITS + _USER_BITS == _BODY_BITS
assert _DUE_BITS + _CALLBACK_USER_BITS == _BODY_BITS
assert _TIER_BITS + _BODY_BITS == 53

MAX_SCORE: Final = (1 << 53) - 1
DUE_EPOCH: Final = datetime(2020, 1, 1, tzinfo=UTC)
CLAIM_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class _Fields:
    tier: int
    due_second: int
    attempts: int
    claim_day: int
    pending: int
    user: int


def _cap(value: int, bits: int) -> int:
    return min(max(value, 0), (1 << bits) - 1)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value


def _fields(
    queue: QueueName | str,
    attempts_total: int,
    oldest_active_claim_at: datetime | None,
    pending_requirements: int,
    user_id: int,
    due_at: datetime | None,
) -> _Fields:
    queue = QueueName(queue)
    if attempts_total < 0 or pending_requirements < 0 or user_id < 0:
        raise ValueError("attempts_total, pending_requirements and user_id must be >= 0")
    due_second = 0
    if queue is QueueName.CALLBACKS:
        if due_at is None:
            raise ValueError("a callback score needs due_at")
        # Floor keeps the order for instants before the epoch, then the cap clamps them.
        due_second = _cap(math.floor((_aware(due_at, "due_at") - DUE_EPOCH).total_seconds()), _DUE_BITS)
    if oldest_active_claim_at is None:
        claim_day = (1 << _DAY_BITS) - 1  # unknown age: after every dated claim
    else:
        claim_day = _cap((_aware(oldest_active_claim_at, "oldest_active_claim_at") - CLAIM_EPOCH).days, _DAY_BITS)
    return _Fields(
        tier=QUEUE_PRIORITY.index(queue),
        due_second=due_second,
        attempts=_cap(attempts_total, _ATTEMPT_BITS),
        claim_day=claim_day,
        pending=_cap(pending_requirements, _PENDING_BITS),
        user=_cap(user_id, _CALLBACK_USER_BITS if queue is QueueName.CALLBACKS else _USER_BITS),
    )


def _compose(f: _Fields) -> int:
    if f.tier == 0:
        body = f.due_second << _CALLBACK_USER_BITS | f.user
    else:
        inverted_pending = (1 << _PENDING_BITS) - 1 - f.pending
        body = (
            f.attempts << (_DAY_BITS + _PENDING_BITS + _USER_BITS)
            | f.claim_day << (_PENDING_BITS + _USER_BITS)
            | inverted_pending << _USER_BITS
            | f.user
        )
    return f.tier << _BODY_BITS | body


def queue_score(
    queue: QueueName | str,
    *,
    attempts_total: int,
    oldest_active_claim_at: datetime | None,
    pending_requirements: int,
    user_id: int,
    due_at: datetime | None = None,
) -> float:
    """The Redis score of a customer in ``queue`` (see the module docstring for the layout)."""
    tier = _CHASE_TIER.get(queue)
    if (
        tier is not None
        and attempts_total >= 0
        and pending_requirements >= 0
        and user_id >= 0
        and (oldest_active_claim_at is None or oldest_active_claim_at.utcoffset() is not None)
    ):
        # The rebuild scores 300,000 customers of the two chase queues: the same fields and caps as
        # _fields/_compose (which hold the definition, and check anything else), without building them.
        if oldest_active_claim_at is None:
            claim_day = _DAY_MAX
        else:
            claim_day = min(max((oldest_active_claim_at - CLAIM_EPOCH).days, 0), _DAY_MAX)
        return float(
            tier << _BODY_BITS
            | min(attempts_total, _ATTEMPT_MAX) << (_DAY_BITS + _PENDING_BITS + _USER_BITS)
            | claim_day << (_PENDING_BITS + _USER_BITS)
            | (_PENDING_MAX - min(pending_requirements, _PENDING_MAX)) << _USER_BITS
            | min(user_id, _USER_MAX)
        )
    fields = _fields(queue, attempts_total, oldest_active_claim_at, pending_requirements, user_id, due_at)
    return float(_compose(fields))


_CHASE_TIER: Final[dict[str, int]] = {
    str(q): QUEUE_PRIORITY.index(q) for q in (QueueName.UNSIGNED, QueueName.OUTSTANDING)
}
_DAY_MAX: Final = (1 << _DAY_BITS) - 1
_ATTEMPT_MAX: Final = (1 << _ATTEMPT_BITS) - 1
_PENDING_MAX: Final = (1 << _PENDING_BITS) - 1
_USER_MAX: Final = (1 << _USER_BITS) - 1


def explain_score(
    queue: QueueName | str,
    *,
    attempts_total: int,
    oldest_active_claim_at: datetime | None,
    pending_requirements: int,
    user_id: int,
    due_at: datetime | None = None,
) -> str:
    """One line saying which criteria produced the score, as capped values."""
    f = _fields(queue, attempts_total, oldest_active_claim_at, pending_requirements, user_id, due_at)
    score = _compose(f)
    name = QUEUE_PRIORITY[f.tier]
    if name is QueueName.CALLBACKS:
        assert due_at is not None
        parts = f"callback due {due_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC (earlier due first)"
    else:
        claim = "unknown" if oldest_active_claim_at is None else f"{oldest_active_claim_at:%Y-%m-%d}"
        contacted = "never contacted" if f.attempts == 0 else f"{f.attempts} attempt(s)"
        parts = f"{contacted}, oldest active claim {claim}, {f.pending} pending requirement(s)"
    return f"{name} (tier {f.tier}): {parts}, user {user_id} -> score {score}"
