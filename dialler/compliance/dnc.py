"""Do-not-call management: the compliance desk and supervisors add and remove numbers (audited, with a
reason), search the list, and load the TPS/CTPS file.

How the product treats the TPS. The Telephone Preference Service and its corporate twin (CTPS) bind
unsolicited *marketing* calls (PECR reg. 21), and a registration takes effect for marketing 28 days
after it is added. Our calls are service calls to customers about claims they made, which the TPS does
not bind; we screen them anyway, conservatively: a number on the loaded file is never dialled, from
the moment it is loaded (no 28-day grace), until an authorised person removes it with a reason. A TPS
load never overrides an entry that is already listed for another reason (a customer's own request keeps
its source and its reason).

After any change the customers who have the number are re-placed
(:func:`dialler.queues.rebuild.recompute`), so that the queues follow in the same request: by the
caller for one number, by :func:`load_tps_and_replace` for a file.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from dialler.audit.service import AuditContext, record_ctx
from dialler.comms.service import customers_with_phone
from dialler.compliance.models import DoNotCall
from dialler.errors import Conflict, Invalid, NotFound
from dialler.queues.phones import PHONE_REASONS, normalise_phone, normalise_phone_uncached
from dialler.queues.rebuild import Laps, recompute
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores

MANUAL_SOURCES: Final = ("customer", "complaint", "review")
REASON_MAX = 2000
INVALID_REPORTED = 1_000  # line numbers reported per upload; the count covers every invalid line


def valid_number(raw: str) -> str:
    """The E.164 form of a number typed by a person, or :class:`Invalid` saying why not."""
    check = normalise_phone(raw, allow_fictional=True)
    if check.e164 is None:
        raise Invalid(f"Not a UK number we could dial: {check.reason_text}.")
    return check.e164


def _reason(reason: str) -> str:
    why = reason.strip()
    if not why:
        raise Invalid("Give a reason.")
    if len(why) > REASON_MAX:
        raise Invalid(f"A reason is limited to {REASON_MAX} characters.")
    return why


async def add(
    session: AsyncSession, ctx: AuditContext, *, phone: str, reason: str, source: str = "customer"
) -> tuple[DoNotCall, bool]:
    """List ``phone`` (already E.164) with a reason. Returns the entry and whether it is new; an entry
    already listed keeps its source and reason (adding again changes nothing)."""
    if source not in MANUAL_SOURCES:
        raise Invalid(f"source is one of {', '.join(MANUAL_SOURCES)}")
    why = _reason(reason)
    inserted = await session.scalar(
        insert(DoNotCall)
        .values(phone_e164=phone, source=source, reason=why, added_by_agent_id=ctx.actor_agent_id)
        .on_conflict_do_nothing(index_elements=["phone_e164"])
        .returning(DoNotCall.phone_e164)
    )
    if inserted is not None:
        await record_ctx(
            ctx,
            session=session,
            action="dnc.added",
            subject_type="do_not_call",
            subject_id=_masked(phone),
            details={"source": source, "reason": why},
        )
    await session.commit()
    entry = await session.get(DoNotCall, phone, populate_existing=True)
    assert entry is not None
    return entry, inserted is not None


async def remove(session: AsyncSession, ctx: AuditContext, *, phone: str, reason: str) -> DoNotCall:
    """Take ``phone`` off the list, with a reason (audited, with the entry's source and reason)."""
    why = _reason(reason)
    entry = await session.scalar(select(DoNotCall).where(DoNotCall.phone_e164 == phone).with_for_update())
    if entry is None:
        raise NotFound("This number is not on the do-not-call list.")
    if entry.source == "customer" and len(why) < 10:
        # The customer asked not to be called: undoing that needs more than a word.
        raise Conflict("Removing a number the customer asked us not to call needs a full reason.")
    await session.delete(entry)
    await record_ctx(
        ctx,
        session=session,
        action="dnc.removed",
        subject_type="do_not_call",
        subject_id=_masked(phone),
        details={"source": entry.source, "listed_reason": entry.reason, "reason": why},
    )
    await session.commit()
    return entry


_USER_PHONE = text("SELECT phone_number FROM users WHERE id = :id")


async def customer_number(replica: AsyncEngine, user_id: int) -> str:
    """The customer's number as the queues dial it (E.164), or :class:`Invalid` when they have none."""
    async with replica.connect() as conn:
        raw = await conn.scalar(_USER_PHONE, {"id": user_id})
    e164 = normalise_phone(raw).e164 if raw else None
    if e164 is None:
        raise Invalid("This customer has no number we could dial: nothing to list.")
    return e164


def _masked(phone: str) -> str:
    """The audit row names the number without spelling it out (the list itself holds it)."""
    return phone[:-6] + "******" if len(phone) > 6 else "******"


async def search(
    session: AsyncSession, *, number: str | None, source: str | None, limit: int, after: str | None
) -> list[DoNotCall]:
    """Entries in number order; ``number``: digits the number contains (any form people type)."""
    query = select(DoNotCall).order_by(DoNotCall.phone_e164).limit(limit)
    if number:
        digits = "".join(c for c in number if c.isdigit())
        if digits.startswith("0"):
            digits = digits[1:]  # a national form: the E.164 number holds it after +44
        query = query.where(DoNotCall.phone_e164.contains(digits, autoescape=True))
    if source:
        query = query.where(DoNotCall.source == source)
    if after:
        query = query.where(DoNotCall.phone_e164 > after)
    return list((await session.scalars(query)).all())


@dataclass
class TpsLoad:
    lines: int = 0
    loaded: int = 0  # new entries
    already_listed: int = 0  # distinct valid numbers of the file that were listed before
    invalid_count: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (line number, why), the first ones
    customers: list[int] = field(default_factory=list)  # whose number the load listed: to re-place


def _number_field(line: str) -> str:
    """One number per line, or the CSV the TPS file comes in (the number in the first column)."""
    if '"' in line:
        return next(csv.reader([line]), [""])[0].strip()
    return line.split(",", 1)[0].strip()


def _parse(lines: list[bytes], result: TpsLoad) -> list[tuple[str]]:
    """The valid numbers of these lines (as COPY rows); each invalid line counted and the first ones
    reported by line number. A plain loop over a block of lines: per-line awaits cost more than the
    validation itself at a million lines."""
    valid: list[tuple[str]] = []
    for line in lines:
        result.lines += 1
        raw = _number_field(line.decode("utf-8", errors="replace").rstrip("\r"))
        if not raw:
            continue
        if result.lines == 1 and not any(c.isdigit() for c in raw):
            continue  # a header row
        check = normalise_phone_uncached(raw)
        if check.e164 is None:
            result.invalid_count += 1
            if len(result.invalid) < INVALID_REPORTED:
                result.invalid.append((result.lines, PHONE_REASONS.get(check.reason or "", "invalid")))
            continue
        valid.append((check.e164,))
    return valid


async def _blocks(chunks: AsyncIterable[bytes]) -> AsyncIterator[list[bytes]]:
    """The complete lines of each chunk (a line split across chunks is completed by the next)."""
    rest = b""
    async for chunk in chunks:
        *whole, rest = (rest + chunk).split(b"\n")
        if whole:
            yield whole
    if rest:
        yield [rest]


# The whole file is staged with COPY, then listed in set-based statements: its distinct numbers
# (hashed once, no sort to count them), of which those not yet listed (an anti-join, far cheaper
# than a million ON CONFLICT probes when the file is loaded again) are inserted in index order and
# kept aside for the customers' lookup, without returning a million numbers to Python.
# ON CONFLICT still guards against a number listed by someone else meanwhile.
_STAGE = (
    "CREATE TEMPORARY TABLE tps_upload (phone_e164 varchar(16) NOT NULL) ON COMMIT DROP",
    "CREATE TEMPORARY TABLE tps_new (phone_e164 varchar(16) NOT NULL) ON COMMIT DROP",
    "CREATE TEMPORARY TABLE tps_customers (id bigint NOT NULL, phone_number text NOT NULL) ON COMMIT DROP",
)
_DISTINCT = text("CREATE TEMPORARY TABLE tps_distinct ON COMMIT DROP AS SELECT DISTINCT phone_e164 FROM tps_upload")
_DISTINCT_COUNT = text("SELECT count(*) FROM tps_distinct")
_LIST_NEW = text(
    "WITH listed AS ("
    " INSERT INTO do_not_call (phone_e164, source, reason, created_at)"
    " SELECT d.phone_e164, 'tps', 'TPS/CTPS file', CAST(:at AS timestamptz) FROM tps_distinct d"
    " WHERE NOT EXISTS (SELECT 1 FROM do_not_call x WHERE x.phone_e164 = d.phone_e164)"
    " ORDER BY d.phone_e164 ON CONFLICT (phone_e164) DO NOTHING RETURNING phone_e164)"
    " INSERT INTO tps_new SELECT phone_e164 FROM listed"
)
_USERS_WITH_PHONE = text("SELECT id, phone_number FROM users WHERE deleted_at IS NULL AND phone_number IS NOT NULL")
# A customer's number as typed, reduced to the E.164 form of a UK number: the digits without the
# international prefix, the country code or the trunk 0 (+44 (0)161..., 0044..., 0161...). Only a
# candidate: each match is confirmed by normalise_phone, the one rule. A number this misses (typed
# with non-ASCII digits) is still refused at the dial, where the gate reads the list by its E.164 form.
_CUSTOMERS_OF_NEW = text(
    "SELECT c.id, c.phone_number, n.phone_e164 FROM tps_customers c JOIN tps_new n ON n.phone_e164 ="
    " '+44' || regexp_replace(regexp_replace(c.phone_number, '[^0-9]', '', 'g'), '^(00)?(44)?0?', '')"
)


async def load_tps(
    postgres: AsyncEngine,
    replica: AsyncEngine,
    chunks: AsyncIterable[bytes],
    *,
    at: datetime,
    laps: Laps | None = None,
) -> TpsLoad:
    """Stream a TPS/CTPS file into the list (source ``tps``): every valid number listed (loading the
    same file again adds nothing), invalid lines reported by line number, the rest loaded; and the
    customers whose number was newly listed, for the caller to re-place. One transaction: the file
    is listed whole or not at all. ``laps``: wall time per phase (the bench)."""
    lap = laps or (lambda _phase: None)
    result = TpsLoad()
    async with postgres.begin() as conn:
        driver = (await conn.get_raw_connection()).driver_connection  # asyncpg's, for COPY
        assert driver is not None
        copy = driver.copy_records_to_table
        for statement in _STAGE:
            await conn.execute(text(statement))
        async for block in _blocks(chunks):
            valid = _parse(block, result)
            lap("read and validate")
            if valid:
                await copy("tps_upload", records=valid, columns=["phone_e164"])
                lap("copy")
        await conn.execute(_DISTINCT)
        uploaded = int(await conn.scalar(_DISTINCT_COUNT) or 0)
        result.loaded = (await conn.execute(_LIST_NEW, {"at": at})).rowcount
        result.already_listed = uploaded - result.loaded
        lap("list")
        if result.loaded:
            result.customers = await _customers_of_new_numbers(conn, replica, copy)
        lap("customers affected")
    lap("commit")
    return result


async def replace_holders(stores: Stores, phone: str, *, besides: int | None = None) -> int:
    """Re-place every customer who has ``phone`` (a household shares one), ``besides`` the one the
    caller re-places itself: a listed number leaves the queues for all of them at once, not at the
    next rebuild. Returns how many were re-placed."""
    users = [u for u in await customers_with_phone(replica=stores.replica, phone=phone) if u != besides]
    if users:
        await recompute(stores, queue_engine(stores), users)
    return len(users)


async def load_tps_and_replace(
    stores: Stores, chunks: AsyncIterable[bytes], *, at: datetime, laps: Laps | None = None
) -> TpsLoad:
    """The upload's whole path (``POST /compliance/do-not-call/tps`` and its bench): the file listed,
    then the customers with a newly listed number re-placed, so they leave the queues at once."""
    result = await load_tps(stores.postgres, stores.replica, chunks, at=at, laps=laps)
    if result.customers:
        await recompute(stores, queue_engine(stores), result.customers)
        if laps is not None:
            laps("re-placement")
    return result


async def _customers_of_new_numbers(
    conn: AsyncConnection, replica: AsyncEngine, copy: Callable[..., Awaitable[object]]
) -> list[int]:
    """The customers whose number is in ``tps_new``: the replica's numbers (stored as typed, with no
    index to look them up by) copied beside it and joined in PostgreSQL, one set-based pass."""
    async with replica.connect() as rconn:
        users = await rconn.stream(_USERS_WITH_PHONE)
        async for rows in users.partitions(20_000):
            await copy("tps_customers", records=[tuple(r) for r in rows], columns=["id", "phone_number"])
    matched = await conn.execute(_CUSTOMERS_OF_NEW)
    return sorted({int(r.id) for r in matched if normalise_phone(r.phone_number).e164 == r.phone_e164})
