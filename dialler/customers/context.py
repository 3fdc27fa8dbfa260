"""The customer context an agent works from during a call.

Read from the replica (who, claims, pending requirements) and PostgreSQL (contact history, open
callback, notes), and cached in Redis so that "next call" answers in a blink; change data capture
drops the cached copy when the customer's rows change, so the agent never works from stale data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import date, datetime

from pydantic import BaseModel
from redis.asyncio import Redis
from sqlalchemy import Row, bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine

from dialler.integrations.masking import mask_phone
from dialler.queues.eligibility import ACTIVE_CLAIM_STATUSES
from dialler.queues.phones import normalise_phone

CACHE_TTL_S = 600
RECENT_ATTEMPTS = 10
RECENT_NOTES = 10


class ClaimRead(BaseModel):
    id: int
    lender: str
    type: str
    status: str
    active: bool
    created_at: datetime


class RequirementRead(BaseModel):
    id: int
    claim_id: int
    type: str
    reason: str | None


class AttemptRead(BaseModel):
    attempted_at: datetime
    result: str
    agent_id: int | None


class CallbackRead(BaseModel):
    id: int
    due_at: datetime
    status: str
    owner_agent_id: int | None


class NoteRead(BaseModel):
    created_at: datetime
    agent_id: int | None
    body: str


class CustomerContext(BaseModel):
    user_id: int
    first_name: str
    last_name: str
    status: str
    signed: bool
    phone_masked: str | None
    date_of_birth: date | None  # identity check on the call
    postcode: str | None
    claims: list[ClaimRead]
    pending_requirements: list[RequirementRead]
    recent_attempts: list[AttemptRead]
    open_callback: CallbackRead | None
    notes: list[NoteRead]


_USER = text(
    "SELECT id, first_name, last_name, status, current_signature_file_id IS NOT NULL AS signed, phone_number,"
    " date_of_birth, postcode FROM users WHERE id = :id AND deleted_at IS NULL"
)
_CLAIMS = text(
    "SELECT id, lender, type, status, created_at FROM claims"
    " WHERE user_id = :id AND deleted_at IS NULL ORDER BY created_at"
)
_REQUIREMENTS = text(
    "SELECT id, claim_id, type, reason FROM claim_requirements"
    " WHERE claim_id IN :claims AND status = 'PENDING' AND deleted_at IS NULL ORDER BY id"
).bindparams(bindparam("claims", expanding=True))
_ATTEMPTS = text(
    "SELECT attempted_at, result, agent_id FROM contact_attempts"
    " WHERE user_id = :id ORDER BY attempted_at DESC LIMIT :n"
)
_CALLBACK = text(
    "SELECT id, due_at, status, owner_agent_id FROM callbacks"
    " WHERE user_id = :id AND status IN ('scheduled', 'due', 'open') LIMIT 1"
)
_NOTES = text(
    "SELECT created_at, agent_id, body FROM customer_notes WHERE user_id = :id ORDER BY created_at DESC LIMIT :n"
)


async def load_context(*, replica: AsyncEngine, postgres: AsyncEngine, user_id: int) -> CustomerContext | None:
    # The two databases are read side by side: the agent waits for the slower one, not for both.
    replica_part, dialler_part = await asyncio.gather(_read_replica(replica, user_id), _read_dialler(postgres, user_id))
    user, claims, requirements = replica_part
    if user is None:
        return None
    attempts, callback, notes = dialler_part
    e164 = normalise_phone(user.phone_number).e164
    return CustomerContext(
        user_id=user.id,
        first_name=user.first_name,
        last_name=user.last_name,
        status=user.status,
        signed=bool(user.signed),
        phone_masked=mask_phone(e164) if e164 else None,
        date_of_birth=user.date_of_birth,
        postcode=user.postcode,
        claims=[
            ClaimRead(
                id=c.id,
                lender=c.lender,
                type=c.type,
                status=c.status,
                active=c.status in ACTIVE_CLAIM_STATUSES,
                created_at=c.created_at,
            )
            for c in claims
        ],
        pending_requirements=[
            RequirementRead(id=r.id, claim_id=r.claim_id, type=r.type, reason=r.reason) for r in requirements
        ],
        recent_attempts=[
            AttemptRead(attempted_at=a.attempted_at, result=a.result, agent_id=a.agent_id) for a in attempts
        ],
        open_callback=None if callback is None else CallbackRead(**callback._mapping),
        notes=[NoteRead(created_at=n.created_at, agent_id=n.agent_id, body=n.body) for n in notes],
    )


async def _read_replica(replica: AsyncEngine, user_id: int) -> tuple[Row | None, Sequence[Row], Sequence[Row]]:
    async with replica.connect() as conn:
        user = (await conn.execute(_USER, {"id": user_id})).one_or_none()
        if user is None:
            return None, [], []
        claims = (await conn.execute(_CLAIMS, {"id": user_id})).all()
        active_ids = [c.id for c in claims if c.status in ACTIVE_CLAIM_STATUSES]
        requirements = (await conn.execute(_REQUIREMENTS, {"claims": active_ids})).all() if active_ids else []
    return user, claims, requirements


async def _read_dialler(postgres: AsyncEngine, user_id: int) -> tuple[Sequence[Row], Row | None, Sequence[Row]]:
    # Autocommit: three reads need no transaction, which saves the BEGIN and ROLLBACK round trips.
    async with postgres.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        attempts = (await conn.execute(_ATTEMPTS, {"id": user_id, "n": RECENT_ATTEMPTS})).all()
        callback = (await conn.execute(_CALLBACK, {"id": user_id})).one_or_none()
        notes = (await conn.execute(_NOTES, {"id": user_id, "n": RECENT_NOTES})).all()
    return attempts, callback, notes


def cache_key(prefix: str, user_id: int) -> str:
    return f"{prefix}:ctx:{user_id}"


def version_key(prefix: str, user_id: int) -> str:
    return f"{prefix}:ctxv:{user_id}"


# Caches a context only if no change was announced (``forget``) since its version was read, i.e. while
# it was being loaded: a load that read the databases before a change cannot cache the old data.
_STORE = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


async def get_context(
    *, redis: Redis, prefix: str, replica: AsyncEngine, postgres: AsyncEngine, user_id: int
) -> CustomerContext | None:
    cached, version = await redis.mget(cache_key(prefix, user_id), version_key(prefix, user_id))
    if cached:
        return CustomerContext.model_validate_json(cached)
    context = await load_context(replica=replica, postgres=postgres, user_id=user_id)
    if context is not None:
        await redis.eval(  # type: ignore[misc]
            _STORE,
            2,
            cache_key(prefix, user_id),
            version_key(prefix, user_id),
            context.model_dump_json(),
            CACHE_TTL_S,
            version or "0",
        )
    return context


_FORGET = """
for i = 1, #KEYS, 2 do
  redis.call('INCR', KEYS[i]); redis.call('EXPIRE', KEYS[i], ARGV[1]); redis.call('DEL', KEYS[i + 1])
end
return #KEYS / 2
"""
_FORGET_CHUNK = 1000


async def forget(redis: Redis, prefix: str, user_ids: list[int]) -> None:
    """Drop cached contexts after the customers' data changed (CDC, a new attempt, a note), and bump
    their versions so that a load already under way does not cache what it read before the change."""
    if not user_ids:
        return
    # One script per chunk of customers (each customer's bump and delete atomic, as before): a change
    # batch can touch tens of thousands, and three commands each cost more than the recompute.
    async with redis.pipeline(transaction=False) as pipe:
        for start in range(0, len(user_ids), _FORGET_CHUNK):
            keys = [
                key
                for user_id in user_ids[start : start + _FORGET_CHUNK]
                for key in (version_key(prefix, user_id), cache_key(prefix, user_id))
            ]
            pipe.eval(_FORGET, len(keys), *keys, 2 * CACHE_TTL_S)  # the version outlives any load under way
        await pipe.execute()
