"""Login rate limit: fixed windows per account and per client address, in Redis.

Every attempt is counted *before* the password is checked (so a burst of parallel guesses cannot
slip past a check-then-count race); a successful sign-in gives its attempt back. The net effect is a
limit on failures. The account counter is keyed by a digest of the email, whether or not the account
exists, so a blocked answer says nothing about existence.

The address limit is a multiple of the account limit: a whole call-centre floor signs in from one NAT
address at 09:00, and their successes do not count, but a few typos each must not lock the floor out.

Keys: ``<prefix>:ratelimit:login:account:<digest>`` and ``<prefix>:ratelimit:login:address:<ip>``.
INCR and EXPIRE NX go in one pipeline per attempt; each key's pair is independent (no MULTI across
keys, which Redis Cluster would refuse), and re-sending EXPIRE NX on every attempt repairs a key
that ever lost its TTL.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from dialler.audit.service import email_digest
from dialler.config import Settings

ADDRESS_LIMIT_FACTOR = 4

# A plain DECR on a key that expired meanwhile would create it at -1 without a TTL.
_DECR_IF_POSITIVE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Admission:
    allowed: bool
    retry_after_s: int
    account_count: int
    address_count: int


def _keys(settings: Settings, email: str, client_ip: str | None) -> tuple[str, str]:
    base = f"{settings.redis_prefix}:ratelimit:login"
    return f"{base}:account:{email_digest(email)}", f"{base}:address:{client_ip or 'unknown'}"


def address_limit(settings: Settings) -> int:
    return settings.login_max_attempts * ADDRESS_LIMIT_FACTOR


async def admit_login(*, redis: Redis, settings: Settings, email: str, client_ip: str | None) -> Admission:
    """Counts one attempt; ``allowed`` is false once either counter is over its limit."""
    account_key, address_key = _keys(settings, email, client_ip)
    window = settings.login_window_s
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incr(account_key)
        pipe.expire(account_key, window, nx=True)
        pipe.incr(address_key)
        pipe.expire(address_key, window, nx=True)
        pipe.ttl(account_key)
        pipe.ttl(address_key)
        account_count, _, address_count, _, account_ttl, address_ttl = await pipe.execute()
    over_account = account_count > settings.login_max_attempts
    over_address = address_count > address_limit(settings)
    waits = [ttl for over, ttl in ((over_account, account_ttl), (over_address, address_ttl)) if over]
    return Admission(
        allowed=not waits,
        retry_after_s=max((max(ttl, 1) for ttl in waits), default=0),
        account_count=account_count,
        address_count=address_count,
    )


async def give_back_login(*, redis: Redis, settings: Settings, email: str, client_ip: str | None) -> None:
    """An attempt that never reached the password check (the database did not answer) is not a failure:
    both counters get it back, so agents retrying through an outage are not locked out afterwards."""
    for key in _keys(settings, email, client_ip):
        await redis.eval(_DECR_IF_POSITIVE, 1, key)  # type: ignore[misc]


async def forgive_login(*, redis: Redis, settings: Settings, email: str, client_ip: str | None) -> None:
    """After a successful sign-in: the account starts afresh and the address gets its attempt back."""
    account_key, address_key = _keys(settings, email, client_ip)
    await redis.delete(account_key)
    await redis.eval(_DECR_IF_POSITIVE, 1, address_key)  # type: ignore[misc]
