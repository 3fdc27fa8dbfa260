"""Dispositions: the outcome an agent records for a call, and what each one does. One table, one home.

| code                 | contact | customer afterwards                         | also                               |
|----------------------|---------|---------------------------------------------|------------------------------------|
| signed_on_call       | yes     | leaves the queues (CDC confirms signing)    | magic link often sent on the call  |
| docs_promised        | yes     | requeued after the minimum gap              | follow-up SMS with an upload link  |
| callback_requested   | yes     | leaves the queues until the callback is due | books a CallbackWorkflow (a time) |
| not_interested       | yes     | requeued after 7 days                       |                                    |
| wrong_number         | no      | leaves the queues                           | number goes on the do-not-call list |
| no_answer            | no      | requeued after the minimum gap              | missed-call SMS                    |
| voicemail            | no      | requeued after the minimum gap              | missed-call SMS                    |
| busy                 | no      | requeued after the minimum gap              |                                    |
| do_not_call          | yes     | leaves the queues                           | number goes on the do-not-call list |
| deceased             | yes     | leaves the queues                           | flagged for the main app (review)  |
| vulnerable_flagged   | yes     | requeued for trained agents only            | supervisor review                  |
| complaint            | yes     | leaves the queues                           | supervisor review; no further contact |
| no_outcome           | —       | requeued after the minimum gap              | set by the system on wrap-up timeout |

"Requeued" means the queue rules decide afresh with the new attempt counted (the compliance gates
then give the not-before time); "leaves the queues" releases the lease without requeueing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from dialler.errors import Invalid


class Disposition(StrEnum):
    SIGNED_ON_CALL = "signed_on_call"
    DOCS_PROMISED = "docs_promised"
    CALLBACK_REQUESTED = "callback_requested"
    NOT_INTERESTED = "not_interested"
    WRONG_NUMBER = "wrong_number"
    NO_ANSWER = "no_answer"
    VOICEMAIL = "voicemail"
    BUSY = "busy"
    DO_NOT_CALL = "do_not_call"
    DECEASED = "deceased"
    VULNERABLE_FLAGGED = "vulnerable_flagged"
    COMPLAINT = "complaint"
    NO_OUTCOME = "no_outcome"  # system only


@dataclass(frozen=True)
class Effects:
    contact: bool  # the customer was reached (for contact-rate reporting)
    requeue: bool
    do_not_call: bool = False
    books_callback: bool = False
    # The follow-up text, if any: "upload_link" texts a magic link to upload the documents of the first
    # pending requirement; "missed_call" texts that we tried to call (at most one a day).
    sends_sms: str | None = None
    needs_review: bool = False
    requeue_after_days: int = 0  # on top of the gates' own not-before time
    agent_selectable: bool = True


EFFECTS: Final[dict[Disposition, Effects]] = {
    Disposition.SIGNED_ON_CALL: Effects(contact=True, requeue=False),
    Disposition.DOCS_PROMISED: Effects(contact=True, requeue=True, sends_sms="upload_link"),
    Disposition.CALLBACK_REQUESTED: Effects(contact=True, requeue=False, books_callback=True),
    Disposition.NOT_INTERESTED: Effects(contact=True, requeue=True, requeue_after_days=7),
    Disposition.WRONG_NUMBER: Effects(contact=False, requeue=False, do_not_call=True),
    Disposition.NO_ANSWER: Effects(contact=False, requeue=True, sends_sms="missed_call"),
    Disposition.VOICEMAIL: Effects(contact=False, requeue=True, sends_sms="missed_call"),
    Disposition.BUSY: Effects(contact=False, requeue=True),
    Disposition.DO_NOT_CALL: Effects(contact=True, requeue=False, do_not_call=True),
    Disposition.DECEASED: Effects(contact=True, requeue=False, needs_review=True),
    Disposition.VULNERABLE_FLAGGED: Effects(contact=True, requeue=True, needs_review=True),
    Disposition.COMPLAINT: Effects(contact=True, requeue=False, needs_review=True),
    Disposition.NO_OUTCOME: Effects(contact=False, requeue=True, agent_selectable=False),
}

AGENT_DISPOSITIONS: Final = tuple(d for d, e in EFFECTS.items() if e.agent_selectable)
# Outcomes that make sense only when the customer answered.
NEEDS_ANSWERED_CALL: Final = frozenset(
    {
        Disposition.SIGNED_ON_CALL,
        Disposition.DOCS_PROMISED,
        Disposition.CALLBACK_REQUESTED,
        Disposition.NOT_INTERESTED,
        Disposition.COMPLAINT,
    }
)
# Outcomes that say how a dial went: only after one (a customer who was never rung was not "no answer",
# and must not get the "we tried to call you" text those outcomes send).
NEEDS_DIALLED_CALL: Final = frozenset({Disposition.NO_ANSWER, Disposition.VOICEMAIL, Disposition.BUSY})
NOTES_MAX = 2000


class InvalidOutcome(Invalid, ValueError):
    """The outcome breaks a rule; the message says which, for the agent."""


def check_outcome(
    disposition: str, *, callback_at_given: bool, notes: str | None, answered: bool, dialled: bool = True
) -> Disposition:
    """Validate an agent's outcome (the fields each disposition requires). Returns the disposition."""
    try:
        code = Disposition(disposition)
    except ValueError:
        raise InvalidOutcome(
            f"unknown disposition {disposition!r}; expected one of {', '.join(AGENT_DISPOSITIONS)}"
        ) from None
    effects = EFFECTS[code]
    if not effects.agent_selectable:
        raise InvalidOutcome(f"{code} is set by the system, not by an agent")
    if effects.books_callback and not callback_at_given:
        raise InvalidOutcome("callback_requested needs a callback time")
    if not effects.books_callback and callback_at_given:
        raise InvalidOutcome(f"a callback time is only taken with callback_requested, not {code}")
    if code in NEEDS_ANSWERED_CALL and not answered:
        raise InvalidOutcome(f"{code} needs a call the customer answered")
    if code in NEEDS_DIALLED_CALL and not dialled:
        raise InvalidOutcome(f"{code} is only recorded after a call was dialled")
    if code in (Disposition.COMPLAINT, Disposition.VULNERABLE_FLAGGED) and not (notes and notes.strip()):
        raise InvalidOutcome(f"{code} needs a note for the supervisor's review")
    if notes is not None and len(notes) > NOTES_MAX:
        raise InvalidOutcome(f"notes are limited to {NOTES_MAX} characters")
    return code
