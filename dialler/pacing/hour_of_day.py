"""Which calls a queue's estimates learn from: those of the same local hour of day over recent days
(answer rates, talk times differ between 09:00 and 18:00), or the last 24 h while that hour has too
few. Pure: the live loader (``dialler.pacing.floor``) and the simulator (``bench/pacing_sim.py``) both
apply :func:`enough_for_hour_of_day`, and the loader reads the windows of :func:`same_hour_windows`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["HOUR_OF_DAY_DAYS", "HOUR_OF_DAY_MIN_CALLS", "enough_for_hour_of_day", "same_hour_windows"]

HOUR_OF_DAY_DAYS = 7
"""The days (today and the ones before) whose calls of this hour the estimates learn from."""
HOUR_OF_DAY_MIN_CALLS = 50
"""Fewer calls than this in the hour (a new queue, an hour rarely dialled): learn from the last 24 h."""


def enough_for_hour_of_day(calls: int) -> bool:
    """The hour's own calls are enough to estimate it from; otherwise the last 24 h's, whatever the hour."""
    return calls >= HOUR_OF_DAY_MIN_CALLS


def same_hour_windows(now: datetime, timezone: str, *, days: int = HOUR_OF_DAY_DAYS) -> list[tuple[datetime, datetime]]:
    """The UTC intervals of the local hour of day ``now`` is in, today (up to ``now``) and on the
    ``days - 1`` days before: on a clock-change day the hour is whatever that day's local clock said."""
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    windows = []
    for back in range(days):
        day = (local - timedelta(days=back)).date()
        start = datetime(day.year, day.month, day.day, local.hour, tzinfo=zone)
        start_utc = start.astimezone(UTC)
        end_utc = (start + timedelta(hours=1)).astimezone(UTC)
        windows.append((start_utc, min(end_utc, now.astimezone(UTC))))
    return windows
