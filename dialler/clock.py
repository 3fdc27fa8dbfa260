"""The one clock the business reads.

Always the real UTC time in production. A training or demo stack (and the test suite) may shift it
with ``DIALLER_CLOCK_OFFSET_S`` so that calling hours are open whatever the hour: an evening demo
otherwise has nobody to call. Production refuses an offset (see ``Settings``).

Two readings of the same clock, never ``datetime.now`` elsewhere for business time:

* :func:`now` — the business clock: "is this a time we may call?", "today" on the board, the time of
  day a text or a screen names. Under an offset it is ahead of the real time by the offset.
* :func:`instant` — the real instant, which is what is stored (due times, attempts, messages) and what
  Temporal timers and leases run on. ``now(s) == instant() + offset(s)``.

A stored instant is shown or judged by adding :func:`offset` (the UI does the same with the
``clock_offset_s`` of /ui/config); a time picked on the business clock is stored by subtracting it.
Workflows never read this module: they get the offset in their input (``CallingHours.clock_offset_s``)
and add it to ``workflow.now()``, which keeps them deterministic.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dialler.config import Settings


def instant() -> datetime:
    """The real UTC instant: what is stored and what timers run on."""
    return datetime.now(UTC)


def now(settings: Settings) -> datetime:
    """The business clock (compliance rules, "today", times named to people)."""
    return instant() + offset(settings)


def offset(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.clock_offset_s)


def day_start(settings: Settings, at: datetime | None = None) -> datetime:
    """The real instant at which the business clock's calling-timezone day containing ``at`` (a real
    instant; default now) began: "today" for reports, which under an offset is the shifted day."""
    shifted = (instant() if at is None else at) + offset(settings)
    local = shifted.astimezone(ZoneInfo(settings.calling_timezone))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.astimezone(UTC) - offset(settings)
