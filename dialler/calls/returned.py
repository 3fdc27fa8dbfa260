"""What flows in and out of InboundCallWorkflow (a customer's returned call, journey 7): ids and codes
only, never a phone number or a name (Temporal keeps payloads in its history).

The Twilio webhook decides where the call goes (it must answer at once, from PostgreSQL and Redis:
:mod:`dialler.calls.inbound`); the workflow owns what follows the routing: the agent held while it
rings, the session once they answer (on_call → wrap-up → outcome → available), and the outcome,
recorded as contact and never as an attempt (a call the customer made does not count toward the caps
on the calls we make)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

# The queue a returned call's session is filed under (reports: calls and contacts by queue).
RETURNED_QUEUE = "inbound"
# The namespace of a returned call's session id: the id is derived from Twilio's CallSid, so every
# webhook of the call (and every retry) names the same session.
_SESSION_NAMESPACE = uuid.UUID("6c1b8a8e-3f4e-4d3c-9a53-0b1e6f6f2a11")


def inbound_call_workflow_id(call_sid: str) -> str:
    """One workflow per returned call: Twilio's CallSid is its business key."""
    return f"inbound-call-{call_sid}"


def call_sid_of(workflow_id: str) -> str | None:
    prefix = "inbound-call-"
    return workflow_id[len(prefix) :] if workflow_id.startswith(prefix) else None


def returned_session_id(call_sid: str) -> str:
    return str(uuid.uuid5(_SESSION_NAMESPACE, call_sid))


@dataclass(frozen=True)
class InboundCallInput:
    call_sid: str  # the caller's leg
    session_id: str
    agent_id: int  # the agent the webhook rang
    user_id: int | None  # None: a number we do not know
    routing: str  # routed_last_agent | routed_queue | routed_any
    received_at: datetime
    ring_timeout_s: int = 15
    wrap_up_timeout_s: int = 300
    max_call_s: int = 3 * 3600


@dataclass(frozen=True)
class OpenReturnedSession:
    session_id: str
    workflow_id: str
    call_sid: str
    user_id: int
    agent_id: int
    started_at: datetime
    answered_at: datetime


@dataclass(frozen=True)
class ReturnedCallStep:
    """A step of the returned call: its row in inbound_calls, the session's (if one was opened) and
    the agent's presence, moved together."""

    call_sid: str
    session_id: str | None
    agent_id: int
    user_id: int | None
    state: str  # in_progress | ended | wrap_up
    at: datetime
    presence: str | None = None
    end_reason: str | None = None
    answered: bool = False
