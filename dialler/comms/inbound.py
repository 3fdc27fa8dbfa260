"""What an inbound text asks of the rest of the system, as the input of ``InboundSmsWorkflow``.

The webhook records the text and its opt-out (or opt-in) in PostgreSQL within the request: every
"may we text / call" check reads the opt-out table, so a STOP is honoured from that commit on. The
fan-out (queues, live callbacks, the confirmation text) then runs in the workflow, retried by Temporal.
Only ids travel: no number, no text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OPT_OUT = "opt_out"
OPT_IN = "opt_in"
CANCEL_CALLBACK = "cancel_callback"

STOP_REASON = "the customer opted out by SMS (STOP)"
CANCEL_REASON = "the customer replied CANCEL to the callback text"


@dataclass(frozen=True)
class InboundSmsInput:
    action: str  # OPT_OUT | OPT_IN | CANCEL_CALLBACK
    conversation_id: int
    message_id: int
    user_ids: list[int] = field(default_factory=list)
    opt_out_episode: int | None = None  # one STOP confirmation per standing opt-out


def inbound_sms_workflow_id(message_sid: str) -> str:
    """One fan-out per text Twilio delivered: its retry of the same MessageSid finds this id taken."""
    return f"inbound-sms-{message_sid}"
