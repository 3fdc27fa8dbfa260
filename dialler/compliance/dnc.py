"""Do-not-call management: the compliance desk and supervisors add and remove numbers (audited, with a
reason), search the list, and load the TPS/CTPS file.

How the product treats the TPS. The Telephone Preference Service and its corporate twin (CTPS) bind
unsolicited *marketing* calls (PECR reg. 21), and a registration takes effect for marketing 28 days
after it is added. Our calls are service calls to customers about claims they made, which the TPS does
not bind; we screen them anyway, conservatively: a number on the loaded file is never dialled, from
the moment it is loaded (no 28-day grace), until an authorised person removes it with a reason. A TPS
load never overrides an entry that is already listed for another reason (a customer's own request keeps
its source and its reason).

After any change the caller re-places the customers who have the number
(:func:`dialler.queues.rebuild.recompute`), so that the queues follow in the same request.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dialler.audit.service import AuditContext, record_ctx
from dialler.compliance.models import DoNotCall
from dialler.errors import Conflict, Invalid, NotFound
from dialler.queues.phones import PHONE_REASONS, normalise_phone

MANUAL_SOURCES: Final = ("customer", "complaint", "review")
REASON_MAX = 2000
BATCH = 50_000
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
    already_listed: int = 0
    invalid_count: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (line number, why), the first ones
    new_numbers: set[str] = field(default_factory=set)


async def _lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    rest = b""
    async for chunk in chunks:
        rest += chunk
        *whole, rest = rest.split(b"\n")
        for line in whole:
            yield line.decode("utf-8", errors="replace").rstrip("\r")
    if rest:
        yield rest.decode("utf-8", errors="replace").rstrip("\r")


def _number_field(line: str) -> str:
    """One number per line, or the CSV the TPS file comes in (the number in the first column)."""
    if "," not in line and '"' not in line:
        return line.strip()
    return next(csv.reader([line]), [""])[0].strip() if line.strip() else ""


_TPS_UPSERT = text(
    "INSERT INTO do_not_call (phone_e164, source, reason, created_at)"
    " SELECT p, 'tps', 'TPS/CTPS file', :at FROM unnest(CAST(:phones AS varchar[])) AS p"
    " ON CONFLICT (phone_e164) DO NOTHING RETURNING phone_e164"
)


async def load_tps(postgres: AsyncEngine, chunks: AsyncIterable[bytes], *, at: datetime) -> TpsLoad:
    """Stream a TPS/CTPS file into the list (source ``tps``): every valid number upserted in batches
    (loading the same file again adds nothing), invalid lines reported by line number, the rest loaded."""
    result = TpsLoad()
    batch: list[str] = []

    async def flush() -> None:
        if not batch:
            return
        unique = sorted(set(batch))
        async with postgres.begin() as conn:
            # One array parameter per batch: no per-row statement to build, one round trip.
            new = set((await conn.execute(_TPS_UPSERT, {"phones": unique, "at": at})).scalars())
        result.loaded += len(new)
        result.already_listed += len(unique) - len(new)
        result.new_numbers |= new
        batch.clear()

    async for line in _lines(chunks):
        result.lines += 1
        raw = _number_field(line)
        if not raw:
            continue
        if result.lines == 1 and not any(c.isdigit() for c in raw):
            continue  # a header row
        check = normalise_phone(raw)
        if check.e164 is None:
            result.invalid_count += 1
            if len(result.invalid) < INVALID_REPORTED:
                result.invalid.append((result.lines, PHONE_REASONS.get(check.reason or "", "invalid")))
            continue
        batch.append(check.e164)
        if len(batch) >= BATCH:
            await flush()
    await flush()
    return result


_USERS_WITH_PHONE = text("SELECT id, phone_number FROM users WHERE deleted_at IS NULL AND phone_number IS NOT NULL")


async def customers_with_numbers(replica: AsyncEngine, numbers: set[str]) -> list[int]:
    """Every customer whose number is one of ``numbers`` (one pass over the replica's customers: the
    replica stores numbers as typed, with no index to look them up by)."""
    if not numbers:
        return []
    found: list[int] = []
    async with replica.connect() as conn:
        result = await conn.stream(_USERS_WITH_PHONE)
        async for rows in result.partitions(10_000):
            found.extend(int(r.id) for r in rows if normalise_phone(r.phone_number).e164 in numbers)
    return sorted(found)
