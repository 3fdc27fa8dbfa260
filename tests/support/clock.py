"""The compliance clock for tests: shifted into calling hours whatever the hour the suite runs at."""

from __future__ import annotations


def in_hours_offset_s() -> int:
    """Shift the compliance clock (dialler.clock) to a Wednesday 11:00 in London, so that tests that
    dial or book callbacks pass whatever the hour or day they run at. Real elapsed time is kept."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from dialler.compliance.gates import bank_holidays

    london = datetime.now(UTC).astimezone(ZoneInfo("Europe/London"))
    target = london + timedelta(days=(2 - london.weekday()) % 7 or 7)
    while target.date() in bank_holidays("GB", "ANY", target.year):  # no nation closed
        target += timedelta(days=7)
    target = target.replace(hour=11, minute=0, second=0, microsecond=0)
    return int((target - london).total_seconds())


CLOCK_OFFSET_S = in_hours_offset_s()
