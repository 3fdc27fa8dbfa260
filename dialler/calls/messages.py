"""What flows in and out of CallSessionWorkflow: ids and codes only, never personal data (Temporal
keeps payloads in its history, and supervisors read that history in the Web UI)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from dialler.comms.messages import MagicLinkInput


class CallState(StrEnum):
    RESERVED = "reserved"
    DIALING = "dialing"
    RINGING = "ringing"
    IN_PROGRESS = "in_progress"
    ENDED = "ended"
    WRAP_UP = "wrap_up"
    CLOSED = "closed"


# Twilio's CallStatus values, ranked: a status never moves the call backwards.
TWILIO_STATUS_RANK = {
    "queued": 0,
    "initiated": 0,
    "ringing": 1,
    "in-progress": 2,
    "answered": 2,
    "completed": 3,
    "busy": 3,
    "no-answer": 3,
    "failed": 3,
    "canceled": 3,
}
END_REASONS = {
    "completed": "completed",
    "busy": "busy",
    "no-answer": "no_answer",
    "failed": "failed",
    "canceled": "canceled",
}


def call_workflow_id(user_id: int) -> str:
    """One open session per customer: the workflow id is the business key (id conflict: fail)."""
    return f"call-{user_id}"


@dataclass(frozen=True)
class CallSessionInput:
    session_id: str
    user_id: int
    agent_id: int
    queue: str
    lease_token: int
    progressive: bool = False
    wrap_up_timeout_s: int = 300
    lease_renew_every_s: int = 40
    max_call_s: int = 3 * 3600
    # How long the agent may hold a customer on screen before dialling (preview); then the customer goes
    # back to the queue with no attempt counted.
    preview_limit_s: int = 90
    # A call the session placed is asked about at the carrier when its status callbacks may have been
    # lost (Twilio does not retry them): this long after the dial, then this often while it is live.
    carrier_check_after_s: int = 75
    carrier_check_every_s: int = 45
    # A predictive call placed by the queue's pacer with no agent yet: ``agent_id`` is the call's pool
    # id (negative, no agent's) until the answer claims a ready agent (``AgentClaimed``).
    pooled: bool = False


def agent_or_none(agent_id: int) -> int | None:
    """The agent a session's records name: none while a pooled call has no agent (its pool id)."""
    return agent_id if agent_id > 0 else None


@dataclass(frozen=True)
class ClaimedAgentInput:
    """A pooled session asks which agent the answer claimed (the webhook wrote it on its row)."""

    session_id: str


@dataclass(frozen=True)
class AgentClaimed:
    """A pooled call was answered and this ready agent claimed for it (the lease names them now)."""

    agent_id: int
    call_sid: str | None = None


@dataclass(frozen=True)
class DialRequest:
    agent_id: int
    browser_call_sid: str | None = None  # set when the agent's browser placed the call (twilio mode)


@dataclass(frozen=True)
class CallStatusEvent:
    call_sid: str
    status: str  # Twilio CallStatus
    sequence: int = 0
    duration_s: int | None = None
    answered_by: str | None = None


@dataclass(frozen=True)
class CheckCallInput:
    """The session asks the carrier for its call's status (its status callbacks may have been lost)."""

    session_id: str
    call_sid: str


@dataclass(frozen=True)
class AbandonedEvent:
    call_sid: str


@dataclass(frozen=True)
class OutcomeInput:
    agent_id: int
    disposition: str
    notes: str | None = None
    callback_at: datetime | None = None


@dataclass(frozen=True)
class OutcomeAccepted:
    session_id: str
    disposition: str


@dataclass(frozen=True)
class TakeReceivedInput:
    """The session asks for the outcome the API kept for it (``dialler.calls.received``)."""

    session_id: str


@dataclass(frozen=True)
class ReceivedOutcomeRead:
    """An outcome the API kept for the session, and when it took it (the moment its rules are judged at)."""

    outcome: OutcomeInput
    received_at: datetime


@dataclass(frozen=True)
class CallSessionView:
    """The live state for the agent's screen (Query)."""

    session_id: str
    user_id: int
    agent_id: int
    queue: str
    state: str
    call_sid: str | None
    end_reason: str | None
    disposition: str | None
    answered: bool
    started_at: datetime
    wrap_up_deadline: datetime | None
    progressive: bool = False
    answered_by: str | None = None  # the carrier's answering-machine verdict, when detection is on


@dataclass(frozen=True)
class OpenSessionInput:
    session_id: str
    workflow_id: str
    user_id: int
    agent_id: int
    queue: str
    lease_token: int
    progressive: bool
    started_at: datetime


@dataclass(frozen=True)
class PlaceCallInput:
    session_id: str
    workflow_id: str
    user_id: int
    agent_id: int
    lease_token: int
    progressive: bool


@dataclass(frozen=True)
class PresenceInput:
    agent_id: int
    state: str
    user_id: int | None = None


@dataclass(frozen=True)
class SessionProgress:
    session_id: str
    state: str
    call_sid: str | None = None
    at: datetime | None = None
    end_reason: str | None = None
    presence: PresenceInput | None = None  # the agent's presence moves with the call, in the same step
    answered: bool = False
    wrap_up_deadline: datetime | None = None
    answered_by: str | None = None
    # This step also records the call's end (ended_at, end_reason): the session writes the end with the
    # wrap-up that follows it at once, in one write, as nothing reads the momentary "ended" in between.
    ended: bool = False


@dataclass(frozen=True)
class RenewLeaseInput:
    user_id: int
    lease_token: int


@dataclass(frozen=True)
class FinishInput:
    session_id: str
    workflow_id: str
    user_id: int
    agent_id: int
    lease_token: int
    disposition: str
    notes: str | None
    callback_at: datetime | None
    end_reason: str | None
    answered: bool
    abandoned: bool
    finished_at: datetime
    # A call the customer made to us (InboundCallWorkflow): a contact, never an attempt (the caps and
    # gaps count the calls we make).
    returned_call: bool = False


@dataclass(frozen=True)
class FinishResult:
    requeued: bool
    not_before: float | None = None


@dataclass(frozen=True)
class FollowUpInput:
    """The text a disposition asks for (``Effects.sends_sms``) after a call to ``user_id``."""

    user_id: int
    agent_id: int
    kind: str  # "upload_link" | "missed_call"


@dataclass(frozen=True)
class FollowUp:
    """What to send: a text from a template, or a magic link (which sends its own text)."""

    template: str | None = None
    link: MagicLinkInput | None = None
