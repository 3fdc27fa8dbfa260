"""What flows in and out of the SMS and magic-link workflows and activities: ids, codes and times only.

Never a phone number, a message body or a token: Temporal keeps payloads in its history, which
supervisors browse in the Web UI. A free-text message is written to ``sms_messages`` by the API first
and travels by id; a magic link's token exists only inside the activity that sends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class MagicLinkPurpose(StrEnum):
    SIGN = "sign"
    UPLOAD = "upload"


class SendStatus(StrEnum):
    """How a send ended, from the workflow's point of view (delivery comes later, by webhook)."""

    SENT = "sent"  # handed to the carrier (Twilio says queued/sent)
    BLOCKED = "blocked"  # not sent: opted out, do-not-call, no mobile number
    FAILED = "failed"  # the carrier refused it, or retries ran out


@dataclass(frozen=True)
class SendSmsInput:
    """One text. Exactly one of ``message_id`` (prepared by the API) and ``template`` is set.

    The recipient is the prepared message's conversation, else ``conversation_id``'s number (replies to
    inbound texts, possibly from a number with no customer), else customer ``user_id``'s mobile."""

    user_id: int | None = None
    template: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    message_id: int | None = None
    conversation_id: int | None = None
    agent_id: int | None = None


@dataclass(frozen=True)
class SendSmsRequest:
    """The activity's input: the text and the idempotency key (workflow id + step)."""

    idempotency_key: str
    sms: SendSmsInput


@dataclass(frozen=True)
class SmsOutcome:
    status: str  # a SendStatus
    message_id: int | None = None
    reason: str | None = None


def sms_workflow_id(kind: str, key: str | int) -> str:
    """``sms-<kind>-<key>``: e.g. ``sms-agent-<uuid>``, ``sms-stop-<conversation>-<episode>``."""
    return f"sms-{kind}-{key}"


@dataclass(frozen=True)
class MagicLinkInput:
    user_id: int
    purpose: str  # a MagicLinkPurpose
    claim_id: int | None = None
    requirement_id: int | None = None
    agent_id: int | None = None
    ttl_s: int = 72 * 3600


@dataclass(frozen=True)
class IssueMagicLinkInput:
    workflow_id: str
    link: MagicLinkInput


@dataclass(frozen=True)
class MagicLinkIssued:
    link_id: int
    expires_at: datetime
    send: SmsOutcome


@dataclass(frozen=True)
class LinkUsed:
    link_id: int


@dataclass(frozen=True)
class RecordLinkResultInput:
    link_id: int
    unsent_status: str | None = None  # a SendStatus, set when the text never went out (blocked / failed)


@dataclass(frozen=True)
class MagicLinkResult:
    link_id: int
    result: str  # used | expired | blocked | failed


@dataclass(frozen=True)
class MagicLinkView:
    link_id: int | None
    status: str  # sending | waiting | used | expired | blocked | failed
    expires_at: datetime | None


def magic_link_workflow_id(user_id: int, purpose: str, unique: str) -> str:
    return f"magic-link-{user_id}-{purpose}-{unique}"
