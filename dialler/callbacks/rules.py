"""When a callback is prepared: pure timing rules shared by CallbackWorkflow and its tests.

A callback is prepared (compliance check, then queued with a not-before of its due time) some time
inside the prepare window before its due time, not at its start: callbacks booked for the same
minute would otherwise all be prepared in the same minute, and that burst is exactly what preparing
ahead is meant to avoid. Each customer gets a fixed offset into the first half of the window, from
their id, so the work of a crowded minute is spread over half the window and is still done with at
least half of it to spare.
"""

from __future__ import annotations

from datetime import datetime, timedelta

_GOLDEN = 2654435761  # Knuth's multiplicative hash: consecutive ids land far apart in [0, 1)


def spread_fraction(user_id: int) -> float:
    """A fixed, evenly spread fraction in [0, 1) for a customer."""
    return ((user_id * _GOLDEN) % 2**32) / 2**32


def prepare_at(due_at: datetime, user_id: int, prepare_s: int) -> datetime:
    """When the customer's callback is prepared: between due − prepare_s and due − prepare_s / 2."""
    window = timedelta(seconds=prepare_s)
    return due_at - window + (window / 2) * spread_fraction(user_id)
