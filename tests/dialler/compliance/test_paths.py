"""Every path that contacts a customer asks the one compliance gate and gets the same answer from the
same facts: queue placement (the rebuild's and CDC's decision), the callback's due check, the last
check before a dial, and a text. Real replica (MariaDB), PostgreSQL and Redis; the facts are written
where the main app and the dialler write them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.callbacks import CallbackActivities
from activities.calls import CallActivities
from dialler import clock
from dialler.calls.messages import PlaceCallInput
from dialler.comms.service import text_decision
from dialler.compliance.records import recent_decisions
from dialler.config import Settings
from dialler.integrations.twilio import TwilioTelephony
from dialler.queues import rebuild
from dialler.runtime import Stores

TS = "2024-01-15 10:00:00"
SHARED = "+447700900555"


async def add_customer(
    replica: AsyncEngine,
    user_id: int,
    *,
    phone: str,
    status: str = "active",
    deleted: bool = False,
    postcode: str | None = "M14 5TQ",
) -> None:
    """An unsigned customer with one active claim (the unsigned queue), as the main app writes one."""
    async with replica.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, first_name, last_name, phone_number, postcode, status, created_at,"
                " updated_at, deleted_at) VALUES (:id, 'Ada', 'Lovelace', :phone, :postcode, :status, :ts, :ts,"
                " :deleted)"
            ),
            {
                "id": user_id,
                "phone": phone,
                "postcode": postcode,
                "status": status,
                "ts": TS,
                "deleted": TS if deleted else None,
            },
        )
        await conn.execute(
            text(
                "INSERT INTO claims (id, user_id, lender, type, status, created_at, updated_at)"
                " VALUES (:id, :user, 'Black Horse', 'motor_finance', 'new', :ts, :ts)"
            ),
            {"id": user_id * 10, "user": user_id, "ts": TS},
        )


async def add_attempts(
    postgres: AsyncEngine, user_id: int, phone: str, ats: list[datetime], abandoned: bool = False
) -> None:
    async with postgres.begin() as conn:
        for at in ats:
            await conn.execute(
                text(
                    "INSERT INTO contact_attempts (user_id, phone_e164, channel, result, abandoned, attempted_at)"
                    " VALUES (:u, :p, 'voice', :r, :a, :at)"
                ),
                {"u": user_id, "p": phone, "r": "abandoned" if abandoned else "no_answer", "a": abandoned, "at": at},
            )


@dataclass(frozen=True)
class Answer:
    allowed: bool
    rule: str | None


async def placement_answer(stores: Stores, user_id: int, now: datetime) -> Answer:
    decisions = await rebuild.decisions_for(
        replica=stores.replica, postgres=stores.postgres, now=now, settings=stores.settings, user_ids=[user_id]
    )
    decision = decisions[0]
    if decision.entry is None:
        return Answer(False, decision.reason)
    if decision.entry.not_before is not None and decision.entry.not_before > now.timestamp():
        assert decision.blocked_by is not None
        return Answer(False, str(decision.blocked_by.rule))
    return Answer(True, None)


async def callback_answer(stores: Stores, client: Client, user_id: int) -> tuple[str, str | None]:
    check = await CallbackActivities(stores, client)._check(user_id, at=None)
    return check.action, check.reason


async def dial_answer(stores: Stores, telephony: TwilioTelephony, user_id: int) -> tuple[Answer, str | None]:
    session_id = str(uuid.uuid4())
    acts = CallActivities(stores, telephony)
    try:
        await acts._last_check(PlaceCallInput(session_id, f"call-{user_id}", user_id, 1, 1, False))
    except ApplicationError as exc:
        assert exc.type == "NotCallable" and exc.non_retryable
    async with stores.postgres.connect() as conn:
        recorded = [d for d in await recent_decisions(conn, user_id=user_id) if d.call_session_id == session_id]
    assert len(recorded) == 1  # every dial's decision is on record, allowed or not
    decision = recorded[0]
    explanation = None if decision.allowed else decision.reasons[0].split(": ", 1)[1]
    return Answer(decision.allowed, decision.blocking_rule), explanation


async def sms_answer(stores: Stores, user_id: int, phone: str) -> Answer:
    async with stores.sessions() as session:
        decision = await text_decision(
            session=session, phone=phone, template=None, user_id=user_id, replica=stores.replica
        )
    blocking = decision.blocking
    return Answer(decision.allowed, None if blocking is None else str(blocking.rule))


# Each row: the facts to write, then the answer for a call (placement, callback, dial) and for a text.
# ``booked``: the callback's answer where it differs, because a time the customer booked lifts the
# attempt limits and the gap (and nothing else).
CASES: list[dict[str, Any]] = [
    {"id": "callable", "voice": None, "sms": None},
    {"id": "do-not-call", "dnc": True, "voice": "do_not_call", "sms": "do_not_call"},
    {"id": "opted-out", "opt_out": True, "voice": "opted_out", "sms": "opted_out"},
    {"id": "deceased", "status": "deceased", "voice": "deceased", "sms": "deceased"},
    {"id": "deleted", "deleted": True, "voice": "deleted", "sms": "deleted"},
    {"id": "inactive", "status": "inactive", "voice": "inactive", "sms": None},
    {"id": "abandoned-72h", "abandoned_h": 1, "voice": "abandoned_cooloff", "sms": None},
    {
        "id": "daily-cap",
        "own_attempts_min": [300, 200, 100],
        "voice": "max_attempts_per_day",
        "sms": None,
        "booked": None,
    },
    {"id": "gap", "own_attempts_min": [30], "voice": "min_gap", "sms": None, "booked": None},
    {
        "id": "number-cap",
        "other_attempts_min": [300, 200, 100],
        "voice": "number_max_attempts_per_day",
        "sms": None,
        "booked": None,
    },
]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
async def test_every_path_gives_the_same_answer_from_the_same_facts(
    case: dict[str, Any],
    stores: Stores,
    replica_writer: AsyncEngine,
    temporal_client: Client,
    telephony: TwilioTelephony,
) -> None:
    now = clock.now(stores.settings)  # the compliance clock: a Wednesday 11:00 in London
    user_id, other = 41, 42
    await add_customer(
        replica_writer,
        user_id,
        phone="07700 900555",
        status=case.get("status", "active"),
        deleted=case.get("deleted", False),
    )
    await add_customer(replica_writer, other, phone="+44 7700 900555")  # the same number, typed differently
    async with stores.postgres.begin() as conn:
        if case.get("dnc"):
            await conn.execute(
                text("INSERT INTO do_not_call (phone_e164, source) VALUES (:p, 'customer')"), {"p": SHARED}
            )
        if case.get("opt_out"):
            await conn.execute(text("INSERT INTO opt_outs (phone_e164, keyword) VALUES (:p, 'STOP')"), {"p": SHARED})
    if "abandoned_h" in case:
        await add_attempts(stores.postgres, other, SHARED, [now - timedelta(hours=case["abandoned_h"])], abandoned=True)
    minutes = [now - timedelta(minutes=m) for m in case.get("own_attempts_min", [])]
    await add_attempts(stores.postgres, user_id, SHARED, minutes)
    others = [now - timedelta(minutes=m) for m in case.get("other_attempts_min", [])]
    await add_attempts(stores.postgres, other, SHARED, others)

    voice = Answer(case["voice"] is None, case["voice"])
    placed = await placement_answer(stores, user_id, now)
    dialled, refusal = await dial_answer(stores, telephony, user_id)
    action, reason = await callback_answer(stores, temporal_client, user_id)
    texted = await sms_answer(stores, user_id, SHARED)

    assert placed == voice
    assert dialled == voice
    booked = case.get("booked", case["voice"])
    assert (action == "proceed") is (booked is None)
    if booked is not None:
        assert action in ("cancel", "move") and reason == refusal  # one wording, whichever path refuses
    assert texted == Answer(case["sms"] is None, case["sms"])


async def test_two_customers_sharing_a_number_share_its_attempt_limits(
    stores: Stores, replica_writer: AsyncEngine, telephony: TwilioTelephony
) -> None:
    """Caps count per number as well as per customer: three calls to the number today (to either
    customer) use up the number's day, whoever is called next."""
    now = clock.now(stores.settings)
    await add_customer(replica_writer, 51, phone="07700 900555")
    await add_customer(replica_writer, 52, phone="07700900555")
    await add_customer(replica_writer, 53, phone="07700 900777")  # a number of its own
    await add_attempts(stores.postgres, 51, SHARED, [now - timedelta(hours=h) for h in (6, 5)])
    await add_attempts(stores.postgres, 52, SHARED, [now - timedelta(hours=4, minutes=30)])
    await add_attempts(stores.postgres, 53, "+447700900777", [now - timedelta(hours=h) for h in (6, 5)])

    # 51 has two of its own, 52 one: neither is at the customer cap (3), the number is.
    for user_id in (51, 52):
        placed = await placement_answer(stores, user_id, now)
        dialled, _ = await dial_answer(stores, telephony, user_id)
        assert placed == dialled == Answer(False, "number_max_attempts_per_day")
    # Two on a number of one's own: callable.
    assert await placement_answer(stores, 53, now) == Answer(True, None)
    assert (await dial_answer(stores, telephony, 53))[0] == Answer(True, None)


def _offset_to(settings: Settings, london_wall: datetime) -> Settings:
    """Settings whose compliance clock reads ``london_wall`` (Europe/London) now."""
    from zoneinfo import ZoneInfo

    target = london_wall.replace(tzinfo=ZoneInfo("Europe/London"))
    return settings.model_copy(update={"clock_offset_s": int((target - datetime.now(UTC)).total_seconds())})


@pytest.mark.parametrize(
    ("day", "closed_for"),
    [
        (datetime(2026, 1, 2, 11), {"scot", "unknown"}),  # New Year Holiday: Scotland only
        (datetime(2026, 11, 30, 11), {"scot", "unknown"}),  # St Andrew's Day (a Monday)
        (datetime(2025, 12, 1, 11), {"scot", "unknown"}),  # St Andrew's Day substitute (30 Nov was a Sunday)
        (datetime(2027, 7, 12, 11), {"ni", "unknown"}),  # Battle of the Boyne: Northern Ireland only
        (datetime(2026, 4, 6, 11), {"eng", "ni", "unknown"}),  # Easter Monday: not in Scotland
    ],
)
async def test_bank_holidays_follow_the_customers_nation_at_the_dial(
    day: datetime,
    closed_for: set[str],
    settings: Settings,
    stores: Stores,  # an emptied database
    replica_writer: AsyncEngine,
    telephony: TwilioTelephony,
) -> None:
    """The last check before a dial, on the real stores, with the compliance clock on that day."""
    customers = {"eng": ("SW1A 1AA", 61), "scot": ("EH1 1YZ", 62), "ni": ("BT1 5GS", 63), "unknown": (None, 64)}
    for postcode, user_id in customers.values():
        await add_customer(replica_writer, user_id, phone=f"07700 9006{user_id}", postcode=postcode)
    on_the_day = Stores.open(_offset_to(settings, day))
    try:
        for nation, (_, user_id) in customers.items():
            answer, _ = await dial_answer(on_the_day, telephony, user_id)
            if nation in closed_for:
                assert answer == Answer(False, "calling_window"), nation
            else:
                assert answer == Answer(True, None), nation
            placed = await placement_answer(on_the_day, user_id, clock.now(on_the_day.settings))
            assert placed.allowed is (nation not in closed_for), nation  # held in the queue, not offered
    finally:
        await on_the_day.close()
