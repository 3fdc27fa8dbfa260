"""Which queue a customer belongs in, or the stable reason why none.

Pure: :func:`classify` sees only :class:`CustomerFacts`, which the batch rebuild and the change-data
path both build set-based from the replica (soft-deleted claims and requirements are already left
out of the counts), so both paths agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from dialler.compliance.gates import RECORD_REASONS, record_block
from dialler.queues.phones import PHONE_REASONS, normalise_phone

__all__ = [
    "ACTIVE_CLAIM_STATUSES",
    "QUEUE_PRIORITY",
    "REASONS",
    "CustomerFacts",
    "Placement",
    "QueueName",
    "classify",
    "reason_text",
]


class QueueName(StrEnum):
    CALLBACKS = "callbacks"
    UNSIGNED = "unsigned"
    OUTSTANDING = "outstanding_requests"


# A customer sits in at most one queue: the first of these that applies.
QUEUE_PRIORITY: Final[tuple[QueueName, ...]] = (
    QueueName.CALLBACKS,
    QueueName.UNSIGNED,
    QueueName.OUTSTANDING,
)

ACTIVE_CLAIM_STATUSES: Final = ("new", "documents_required", "in_progress", "submitted_to_lender")
INVALID_PHONE_PREFIX: Final = "invalid_phone:"

# Stable codes: supervisors filter and count on them, so never reword a key, only add new ones.
REASONS: Final[dict[str, str]] = {
    # queued
    "callback_due": "a booked callback is due",
    "unsigned": "has an active claim but has not signed",
    "outstanding_requirements": "signed, with documents or information still pending",
    # not queued, in the order they are checked
    # the customer's record: the compliance gate's codes and wording
    **{str(code): text for code, text in RECORD_REASONS.items()},
    "no_active_claim": "no active claim (all closed or deleted)",
    "nothing_to_chase": "signed and no pending requirement: nothing to chase",
}


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    user_id: int
    status: str
    is_enabled: bool
    deleted: bool
    signed: bool
    phone_raw: str | None
    active_claims: int  # active status and not soft-deleted
    pending_requirements: int  # PENDING, not soft-deleted, on an active not-deleted claim
    oldest_active_claim_at: datetime | None  # UTC-aware
    has_live_callback_due: bool = False
    postcode: str | None = None  # the nation whose bank holidays apply
    updated_at: int | None = None  # the replica row's updated_at (epoch s): the facts' version

    def __post_init__(self) -> None:
        if self.active_claims < 0 or self.pending_requirements < 0:
            raise ValueError(f"user {self.user_id}: claim and requirement counts cannot be negative")
        at = self.oldest_active_claim_at
        if at is not None and (at.tzinfo is None or at.utcoffset() is None):
            raise ValueError(f"user {self.user_id}: oldest_active_claim_at must be timezone-aware")


@dataclass(frozen=True, slots=True)
class Placement:
    queue: QueueName | None
    reason: str  # a key of REASONS, or "invalid_phone:<phone reason>"
    phone_e164: str | None
    vulnerable: bool

    @property
    def queued(self) -> bool:
        return self.queue is not None

    @property
    def reason_text(self) -> str:
        return reason_text(self.reason)


def reason_text(code: str) -> str:
    """Human text for a placement reason code; unknown codes are returned as they are."""
    if code.startswith(INVALID_PHONE_PREFIX):
        phone_code = code.removeprefix(INVALID_PHONE_PREFIX)
        return f"no callable phone number: {PHONE_REASONS.get(phone_code, phone_code)}"
    return REASONS.get(code, code)


def classify(facts: CustomerFacts) -> Placement:
    """The queue for this customer, or ``queue=None`` with the first reason that rules them out."""
    # The replica's collation is case-insensitive, so 'Active' can exist there.
    status = facts.status.strip().lower()
    vulnerable = status == "vulnerable"
    phone = normalise_phone(facts.phone_raw)

    def out(reason: str) -> Placement:
        return Placement(None, reason, phone.e164, vulnerable)

    # The record rules (deceased first, deleted, disabled, inactive) are the compliance gate's.
    blocked = record_block(status, facts.deleted, facts.is_enabled)
    if blocked is not None:
        return out(str(blocked))
    if facts.active_claims < 1:
        return out("no_active_claim")

    queue: QueueName
    if facts.has_live_callback_due:
        queue, reason = QueueName.CALLBACKS, "callback_due"
    elif not facts.signed:
        queue, reason = QueueName.UNSIGNED, "unsigned"
    elif facts.pending_requirements > 0:
        queue, reason = QueueName.OUTSTANDING, "outstanding_requirements"
    else:
        return out("nothing_to_chase")

    # Checked last so that "why not" names the business reason first when there is one.
    if phone.reason is not None:
        return out(f"{INVALID_PHONE_PREFIX}{phone.reason}")
    return Placement(queue, reason, phone.e164, vulnerable)
