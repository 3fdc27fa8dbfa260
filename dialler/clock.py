"""The wall clock the compliance rules read.

Always the real UTC time in production. A training or demo stack (and the test suite) may shift it
with ``DIALLER_CLOCK_OFFSET_S`` so that calling hours are open whatever the hour: an evening demo
otherwise has nobody to call. Production refuses an offset (see ``Settings``). Temporal timers keep
real time; only "is this a time we may call?" and the contact history use this clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dialler.config import Settings


def now(settings: Settings) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=settings.clock_offset_s)


def offset(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.clock_offset_s)
