"""The booking rules of a callback: when it may be booked, the calling hours and timings it carries,
and when it is prepared. Shared by the API (validating a booking), the workflow client (booking) and
CallbackWorkflow (rescheduling, preparing); pure, so the workflow sandbox may run them.


A callback is prepared (compliance check, then queued with a not-before of its due time) some time
inside the prepare window before its due time, not at its start: callbacks booked for the same
minute would otherwise all be prepared in the same minute, and that burst is exactly what preparing
ahead is meant to avoid. Each customer gets a fixed offset into the first half of the window, from
their id, so the work of a crowded minute is spread over half the window and is still done with at
least half of it to spare.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from temporalio import workflow

from dialler.callbacks.messages import CallbackTimings, CallingHours
from dialler.compliance import gates
from dialler.config import Settings

MIN_LEAD = timedelta(minutes=1)
_GOLDEN = 2654435761  # Knuth's multiplicative hash: consecutive ids land far apart in [0, 1)


def spread_fraction(user_id: int) -> float:
    """A fixed, evenly spread fraction in [0, 1) for a customer."""
    return ((user_id * _GOLDEN) % 2**32) / 2**32


def prepare_at(due_at: datetime, user_id: int, prepare_s: int) -> datetime:
    """When the customer's callback is prepared: between due − prepare_s and due − prepare_s / 2."""
    window = timedelta(seconds=prepare_s)
    return due_at - window + (window / 2) * spread_fraction(user_id)


def calling_hours(settings: Settings) -> CallingHours:
    return CallingHours(
        weekday=settings.weekday_hours,
        saturday=settings.saturday_hours,
        timezone=settings.calling_timezone,
        clock_offset_s=settings.clock_offset_s,
    )


def callback_timings(settings: Settings) -> CallbackTimings:
    return CallbackTimings(
        grace_s=settings.callback_grace_s,
        expiry_s=settings.callback_expiry_s,
        rebook_missed=settings.callback_rebook_missed,
        reminder_s=settings.callback_reminder_s,
        prepare_s=settings.callback_prepare_s,
    )


# _calendar: the calling rules read bank holidays, which the holidays library computes lazily (it
# imports country modules and reads translation files the first time a year is asked for): the same
# result for a given library version, but the sandbox forbids those reads, so without this a
# validator or signal fails on the first date of a year the worker process has not computed yet.


def rules_for(hours: CallingHours) -> gates.CallingRules:
    def parse(pair: tuple[str, str]) -> tuple[time, time]:
        return (time.fromisoformat(pair[0]), time.fromisoformat(pair[1]))

    return gates.CallingRules(
        timezone=hours.timezone,
        weekday_hours=parse(hours.weekday),
        saturday_hours=None if hours.saturday is None else parse(hours.saturday),
    )


def bookable_problem(due_at: datetime, now: datetime, hours: CallingHours) -> str | None:
    """Why a callback cannot be booked at ``due_at`` (None when it can), naming the next allowed slot."""
    with workflow.unsafe.sandbox_unrestricted():  # see _calendar
        return _bookable_problem(due_at, now, hours)


def _bookable_problem(due_at: datetime, now: datetime, hours: CallingHours) -> str | None:
    rules = rules_for(hours)
    if due_at.tzinfo is None:
        return "the callback time needs a timezone"
    shift = timedelta(seconds=hours.clock_offset_s)  # see dialler.clock
    if due_at < now + MIN_LEAD:
        slot = gates.next_allowed_slots(now + MIN_LEAD + shift, rules, 1)[0] - shift
        return f"the callback time must be in the future; next allowed slot {slot.isoformat()}"
    window = gates.calling_window(due_at + shift, rules)
    if not window.allowed:
        slot = gates.next_allowed_slots(due_at + shift, rules, 1)[0] - shift
        return f"{window.explanation}; next allowed slot {slot.isoformat()}"
    return None
