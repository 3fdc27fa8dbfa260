"""CallbackWorkflow's inputs, signals, updates and query results (ids and times, no personal data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class CallbackStatus(StrEnum):
    SCHEDULED = "scheduled"  # booked, timer running
    DUE = "due"  # in the callbacks queue, reserved for the booking agent
    OPEN = "open"  # in the callbacks queue, any callback agent may take it
    COMPLETED = "completed"
    MISSED = "missed"
    CANCELLED = "cancelled"


LIVE = (CallbackStatus.SCHEDULED, CallbackStatus.DUE, CallbackStatus.OPEN)


def callback_workflow_id(user_id: int) -> str:
    """One live callback per customer: the workflow id is the business key."""
    return f"callback-{user_id}"


@dataclass(frozen=True)
class CallingHours:
    """The calling rules a workflow needs to validate a time, carried in its input (no config reads
    in workflow code). Built from settings by the code that starts the workflow."""

    weekday: tuple[str, str] = ("08:00", "20:00")
    saturday: tuple[str, str] | None = ("09:00", "17:00")
    timezone: str = "Europe/London"
    clock_offset_s: int = 0  # see dialler.clock: the frame calling hours are judged in


@dataclass(frozen=True)
class CallbackTimings:
    grace_s: int = 600
    expiry_s: int = 7200
    rebook_missed: bool = True
    reminder_s: int = 900
    # Compliance check and queueing this long before due (Settings.callback_prepare_s); the queue
    # then makes the customer callable at the due second. Inputs recorded before it existed get this.
    prepare_s: int = 600


@dataclass(frozen=True)
class BookCallbackInput:
    user_id: int
    due_at: datetime
    booked_by_agent_id: int | None
    source: str = "agent"  # call | agent | supervisor | customer
    call_session_id: str | None = None
    hours: CallingHours = field(default_factory=CallingHours)
    timings: CallbackTimings = field(default_factory=CallbackTimings)
    rebooked_from: str | None = None  # run id of the missed callback this one replaces
    history: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RescheduleInput:
    due_at: datetime
    by_agent_id: int | None = None


@dataclass(frozen=True)
class CancelInput:
    reason: str
    by_agent_id: int | None = None


@dataclass(frozen=True)
class CompleteInput:
    disposition: str
    call_session_id: str | None = None


@dataclass(frozen=True)
class SettleCallbackInput:
    user_id: int
    disposition: str
    call_session_id: str | None = None


@dataclass(frozen=True)
class CallbackView:
    user_id: int
    status: str
    due_at: datetime
    owner_agent_id: int | None
    reserved_until: datetime | None
    history: list[str]


@dataclass(frozen=True)
class MirrorInput:
    """The PostgreSQL copy of the callback, written at every change (idempotent upsert by run)."""

    run_key: str
    workflow_id: str
    user_id: int
    status: str
    due_at: datetime
    booked_by_agent_id: int | None
    owner_agent_id: int | None
    source: str
    reason: str | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class DueCheck:
    """What the world says when the callback falls due: go ahead, cancel, or move."""

    action: str  # proceed | cancel | move
    reason: str | None = None
    move_to: datetime | None = None


@dataclass(frozen=True)
class EnqueueInput:
    user_id: int


@dataclass(frozen=True)
class PrepareInput:
    """Check a callback due at ``due_at`` against the rules of now and, if it goes ahead, queue the
    customer for it (not callable before ``due_at``)."""

    user_id: int
    due_at: datetime


REQUEUE_ALWAYS = "always"
REQUEUE_IF_MISSING = "if_missing"  # only if neither in the callbacks queue nor leased (self-healing)


@dataclass(frozen=True)
class TransitionInput:
    """One status change of a callback: the mirror row, then the customer's queue placement."""

    mirror: MirrorInput
    requeue: str = REQUEUE_ALWAYS  # REQUEUE_ALWAYS | REQUEUE_IF_MISSING
