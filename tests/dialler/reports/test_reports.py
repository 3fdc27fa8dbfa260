"""The reports against seeded PostgreSQL rows, with every expected figure worked out by hand below.

The period is Sunday 25/10/2026, the day the clocks go back: it runs from 23:00 UTC on the 24th to
00:00 UTC on the 26th, 25 hours. Rows just before the start and exactly at the end (00:00 UTC on the
26th, which belongs to the next day) must not count.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from dialler.errors import Invalid
from dialler.reports import queries
from dialler.reports.csv import agents_csv, hourly_csv
from dialler.reports.periods import period, uk_time
from dialler.runtime import Stores
from tests.support.reports import seed, z

DST_DAY = period(date(2026, 10, 25))
NOW = datetime(2026, 11, 20, tzinfo=UTC)


def test_uk_days_are_local_midnight_to_midnight() -> None:
    assert (DST_DAY.start, DST_DAY.end) == (z(24, 23), z(26, 0))
    assert len(DST_DAY.hours()) == 25
    labels = [uk_time(h) for h in DST_DAY.hours()]
    # The repeated hour is told apart by its zone.
    assert labels[1:4] == ["25/10/2026 01:00 BST", "25/10/2026 01:00 GMT", "25/10/2026 02:00 GMT"]
    spring = period(date(2026, 3, 29))
    assert len(spring.hours()) == 23
    assert period(date(2026, 1, 1), date(2026, 1, 31)).days == 31


def test_bad_periods_are_refused_with_a_reason() -> None:
    with pytest.raises(Invalid, match="before it starts"):
        period(date(2026, 2, 2), date(2026, 2, 1))
    with pytest.raises(Invalid, match="at most 366 days"):
        period(date(2025, 1, 1), date(2026, 1, 2))
    assert period(date(2025, 1, 1), date(2026, 1, 1)).days == 366
    with pytest.raises(Invalid, match="outside the years"):
        period(date(1, 1, 1))
    with pytest.raises(Invalid, match="outside the years"):
        period(date(2026, 1, 1), date.max)


@pytest.fixture
async def zoe(stores: Stores) -> int:
    async with AsyncSession(stores.postgres) as session:
        return await seed(session)


async def test_agent_time_split_is_clipped_to_the_uk_day(stores: Stores, zoe: int) -> None:
    async with stores.postgres.connect() as conn:
        (row,) = await queries.agent_report(conn, DST_DAY, now=NOW, agent_id=zoe)

    # available 23:00→01:30 (2.5 h, the stint began before the day) + 23:30→00:00 (cut at the end)
    assert row.available_s == 9000 + 1800
    assert (row.on_call_s, row.wrap_up_s, row.break_s) == (1800, 600, 3600)
    assert row.break_by_reason == {"lunch": 3600}
    assert row.logged_in_s == 10800 + 1800 + 600 + 3600  # offline 03:10→23:30 is not logged in
    assert (row.calls, row.contacts) == (2, 1)  # 01:30 and 01:45; 22:30 on the 24th and 00:00 on the 26th are out
    assert row.calls_per_hour == round(2 / (16800 / 3600), 2)
    assert row.outcomes == {"signed_on_call": 1}


async def test_queue_report_counts_attempts_contacts_conversions_and_callbacks(stores: Stores, zoe: int) -> None:
    async with stores.postgres.connect() as conn:
        report = await queries.queue_report(conn, DST_DAY, conversion_days=7)

    unsigned = next(q for q in report.queues if q.queue == "unsigned")
    assert (unsigned.attempts, unsigned.outcomes, unsigned.contacts, unsigned.contact_rate) == (2, 1, 1, 1.0)
    assert (unsigned.customers_called, unsigned.signatures, unsigned.documents) == (2, 1, 0)
    assert unsigned.conversion_rate == 0.5
    assert report.callbacks.model_dump() == {"due": 2, "kept": 1, "missed": 1, "rebooked": 1, "cancelled": 0}


async def test_abandoned_rate_rolls_over_24_hours_per_queue(stores: Stores, zoe: int) -> None:
    async with stores.postgres.connect() as conn:
        report = await queries.compliance_report(conn, DST_DAY)

    assert (report.answered, report.abandoned, report.rate) == (2, 1, 0.5)
    unsigned = {h.hour: h for h in report.hours if h.queue == "unsigned"}
    assert len(unsigned) == 25
    first = unsigned[z(24, 23)]  # the window reaches back into the 24th: the 22:30 call, answered
    assert (first.answered_24h, first.abandoned_24h, first.rate_24h, first.over_ceiling) == (1, 0, 0.0, False)
    at_0100 = unsigned[z(25, 1)]  # 22:30 (answered), 01:30 (answered), 01:45 (abandoned)
    assert (at_0100.answered, at_0100.abandoned) == (2, 1)
    assert (at_0100.answered_24h, at_0100.abandoned_24h) == (3, 1)
    assert at_0100.over_ceiling and at_0100.over_target
    last = unsigned[z(25, 23)]  # 00:00→23:59 on the 25th: the 22:30 call on the 24th has left the window
    assert (last.answered_24h, last.abandoned_24h) == (2, 1)
    assert [(r.path, r.reason, r.refused) for r in report.refusals] == [
        ("dial", "calling_hours", 2),
        ("dial", "tps", 1),
    ]


async def test_messaging_counts_texts_stops_and_links(stores: Stores, zoe: int) -> None:
    async with stores.postgres.connect() as conn:
        report = await queries.messaging_report(conn, DST_DAY)

    assert (report.texts_sent, report.texts_delivered, report.texts_failed, report.texts_received) == (4, 1, 2, 1)
    assert report.stops == 1
    assert (report.links_sent, report.links_opened, report.links_completed) == (2, 1, 1)


async def test_hourly_calls_and_contacts_and_their_csv(stores: Stores, zoe: int) -> None:
    async with stores.postgres.connect() as conn:
        hours = await queries.hourly_report(conn, DST_DAY)
        agents = await queries.agent_report(conn, DST_DAY, now=NOW)

    assert len(hours) == 25
    assert {h.hour: (h.calls, h.contacts) for h in hours if h.calls or h.contacts} == {
        z(25, 1): (2, 0),
        z(25, 2): (0, 1),
    }
    text = "".join(hourly_csv(DST_DAY, hours))
    assert text.startswith("\ufeffDate,Hour (UK),Calls,Contacts\r\n")
    assert "25/10/2026,25/10/2026 01:00 GMT,2,0\r\n" in text
    encoded = "".join(agents_csv(DST_DAY, agents)).encode("utf-8")
    assert encoded.startswith(b"\xef\xbb\xbf")
    assert "Zoë Ångström".encode() in encoded and b"25/10/2026,25/10/2026" in encoded
