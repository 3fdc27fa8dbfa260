"""Report periods: a range of UK calendar days (``Europe/London`` by default), inclusive at both ends.

A day runs from local midnight to the next local midnight, so the last Sunday of March is 23 hours
long and the last Sunday of October 25. Hours are bucketed on UTC hour boundaries, which are also
local hour boundaries (the UK offset is a whole hour), so the 25-hour day has 25 buckets, the
repeated 01:00 told apart by its offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dialler.errors import Invalid

MAX_DAYS = 366
# Days outside these years are a typo, not a report (and near date.min/max the arithmetic overflows).
FIRST_YEAR, LAST_YEAR = 2000, 2999


@dataclass(frozen=True)
class Period:
    first_day: date
    last_day: date  # inclusive
    tz: str = "Europe/London"
    # The business clock's offset (dialler.clock): stored instants are real, days are business days.
    offset: timedelta = timedelta(0)

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    @property
    def start(self) -> datetime:
        """The real instant the first day began."""
        return local_midnight(self.first_day, self.tz) - self.offset

    @property
    def end(self) -> datetime:
        """The real instant the day after the last began (exclusive)."""
        return local_midnight(self.last_day + timedelta(days=1), self.tz) - self.offset

    def hours(self) -> list[datetime]:
        """Every hour's start (UTC) in the period: 23, 24 or 25 of them per day."""
        out, at = [], self.start
        while at < self.end:
            out.append(at)
            at += timedelta(hours=1)
        return out


def local_midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def period(
    first_day: date, last_day: date | None = None, *, tz: str = "Europe/London", offset: timedelta = timedelta(0)
) -> Period:
    """A validated period: the last day not before the first, and at most MAX_DAYS days."""
    last = first_day if last_day is None else last_day
    for day in (first_day, last):
        if not FIRST_YEAR <= day.year <= LAST_YEAR:
            raise Invalid(f"{day:%d/%m/%Y} is outside the years a report can cover ({FIRST_YEAR}–{LAST_YEAR}).")
    if last < first_day:
        raise Invalid(f"The period ends ({last:%d/%m/%Y}) before it starts ({first_day:%d/%m/%Y}).")
    found = Period(first_day, last, tz, offset)
    if found.days > MAX_DAYS:
        raise Invalid(f"A report covers at most {MAX_DAYS} days; this period has {found.days}.")
    return found


def uk_date(at: datetime, tz: str = "Europe/London") -> str:
    """dd/mm/yyyy of an instant in UK local time (what Excel in the UK reads as a date)."""
    return at.astimezone(ZoneInfo(tz)).strftime("%d/%m/%Y")


def uk_time(at: datetime, tz: str = "Europe/London") -> str:
    """dd/mm/yyyy HH:MM in UK local time, with the zone's abbreviation when the hour repeats or skips."""
    local = at.astimezone(ZoneInfo(tz))
    return f"{local:%d/%m/%Y %H:%M} {local.tzname()}"
