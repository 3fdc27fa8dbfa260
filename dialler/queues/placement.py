"""Where one customer belongs right now: the single decision shared by the batch rebuild and
change data capture (so that the two paths can never disagree on a rule).

    replica facts + dialler facts ──classify──▶ queue or reason
                                  ──gates─────▶ excluded (do-not-call, opt-out) or not-before time
                                  ──score─────▶ position in the queue

A booked callback holds the customer out of every queue until it is prepared: from
``callback_prepare`` before its due time it sits in the callbacks queue with a not-before of the due
time, reserved for its owner until due + grace. The Redis queue then makes the customer callable at
the due second and hands it to any agent after the grace, with no timer firing at the deadline
(``CallbackWorkflow`` checks compliance and queues it between due − prepare and due − prepare/2,
ahead of the rush). A due callback is callable now, reserved until due + grace; an open one is
callable by any callback agent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from dialler.compliance import gate, gates
from dialler.queues.eligibility import CustomerFacts, Placement, classify
from dialler.queues.engine import QueueEntry
from dialler.queues.facts import DiallerFacts, LiveCallback
from dialler.queues.scoring import queue_score

CALLBACK_PREPARE = timedelta(seconds=600)
"""The default of ``Settings.callback_prepare_s``; callers pass the setting."""
CLOCK_ALLOWANCE = timedelta(seconds=2)
"""The prepare window opens this much earlier than ``callback_prepare`` before due: the workflow
prepares no earlier than due − prepare on Temporal's clock, and the process placing the customer may
read a clock that is a little behind (it must not find the callback "not yet inside the window")."""


@dataclass(frozen=True)
class Decision:
    user_id: int
    placement: Placement
    entry: QueueEntry | None
    """The queue entry, or None when the customer must be out of every queue."""
    blocked_by: gates.GateResult | None = None
    """The permanent gate that excludes the customer, or the gate that sets ``entry.not_before``."""

    @property
    def reason(self) -> str:
        if self.entry is None and self.blocked_by is not None:
            return self.blocked_by.rule
        return self.placement.reason


def callback_prepared(callback: LiveCallback, now: datetime, prepare: timedelta = CALLBACK_PREPARE) -> bool:
    """A scheduled callback whose due time is inside the prepare window: it waits in the callbacks queue."""
    return callback.status == "scheduled" and callback.due_at - now <= prepare + CLOCK_ALLOWANCE


def contact_facts(
    facts: CustomerFacts, known: DiallerFacts, phone: str | None, *, booked_callback: bool = False
) -> gate.ContactFacts:
    """The compliance gate's facts of one customer, from the set-based reads of a range or a list."""
    return gate.ContactFacts(
        user_id=facts.user_id,
        phone_e164=phone,
        status=facts.status,
        deleted=facts.deleted,
        enabled=facts.is_enabled,
        postcode=facts.postcode,
        do_not_call=phone in known.do_not_call,
        opted_out=phone in known.opted_out,
        attempts=known.attempts.get(facts.user_id, ()),
        number_attempts=known.number_attempts.get(phone, ()) if phone else (),
        last_abandoned_at=known.abandoned_at.get(phone) if phone else None,
        booked_callback=booked_callback,
        flagged_vulnerable=facts.user_id in known.flagged_vulnerable,
        number_busy_until=known.number_busy_until.get(phone) if phone else None,
    )


def decide(
    facts: CustomerFacts,
    known: DiallerFacts,
    *,
    now: datetime,
    rules: gates.CallingRules,
    callback_grace: timedelta,
    callback_prepare: timedelta = CALLBACK_PREPARE,
    answers: dict[tuple[object, ...], _Answer] | None = None,
) -> Decision:
    """Where this customer belongs at ``now``. ``answers``: the gate's answers already given at
    ``now`` to customers without contact history (see :func:`_gate_answer`), shared by
    :func:`decide_all` across a range."""
    callback = known.callbacks.get(facts.user_id)
    callback_due = callback is not None and callback.status in ("due", "open")
    prepared = callback is not None and callback_prepared(callback, now, callback_prepare)
    in_callbacks = callback_due or prepared
    queued_callback = callback if in_callbacks else None  # the callback that puts them in the callbacks queue
    # dataclasses.replace is costly at rebuild scale: copy only in the rare case that changes the facts.
    placement = classify(replace(facts, has_live_callback_due=True) if in_callbacks else facts)
    if not placement.vulnerable and facts.user_id in known.flagged_vulnerable:
        # The dialler's flag counts as the replica's status does: trained agents only.
        placement = replace(placement, vulnerable=True)
    if placement.queue is None or placement.phone_e164 is None:
        return Decision(facts.user_id, placement, None)
    if callback is not None and not in_callbacks:
        # Booked for later: the customer asked for that time, so no other queue calls them before it.
        booked = gates.GateResult(
            False, "callback_booked", f"a callback is booked for {callback.due_at.isoformat()}", callback.due_at
        )
        return Decision(facts.user_id, placement, None, booked)

    phone = placement.phone_e164
    # The compliance gate decides; placement only turns its answer into "out of every queue" (a rule
    # time will not open) or a not-before time. The calling hours every customer shares are checked
    # when an agent asks for the next call (dialler.calls.service), not stored here; a closure of the
    # customer's own nation (a Scottish bank holiday) is.
    # The customer asked for this call at this time: attempt limits and the gap give way.
    blocking, permanent, opens = _gate_answer(facts, known, phone, queued_callback is not None, now, rules, answers)
    if permanent:
        return Decision(facts.user_id, placement, None, blocking)
    due = queued_callback.due_at if queued_callback is not None else None
    if prepared and due is not None and due > now and (opens is None or opens <= due):
        # Prepared ahead of its time: not callable before the time the customer asked for.
        blocking = gates.GateResult(False, "callback_booked", f"callable from the booked time {due.isoformat()}", due)
        opens = due
    not_before = opens.timestamp() if opens is not None else None

    reserved_for = reserved_until = None
    # Prepared or due: reserved for the owner until due + grace; open: any callback agent.
    if queued_callback is not None and queued_callback.status != "open" and queued_callback.owner_agent_id is not None:
        reserved_for = queued_callback.owner_agent_id
        reserved_until = (queued_callback.due_at + callback_grace).timestamp()
    score = queue_score(
        placement.queue,
        attempts_total=known.attempts_total.get(facts.user_id, 0),
        oldest_active_claim_at=facts.oldest_active_claim_at,
        pending_requirements=facts.pending_requirements,
        user_id=facts.user_id,
        due_at=due,
    )
    entry = QueueEntry(
        user_id=facts.user_id,
        queue=str(placement.queue),
        score=score,
        not_before=not_before,
        vulnerable=placement.vulnerable,
        reserved_for_agent=reserved_for if reserved_until and reserved_until > now.timestamp() else None,
        reserved_until=reserved_until if reserved_until and reserved_until > now.timestamp() else None,
    )
    return Decision(facts.user_id, placement, entry, blocking)


def decide_all(
    all_facts: Iterable[CustomerFacts],
    known: DiallerFacts,
    *,
    now: datetime,
    rules: gates.CallingRules,
    callback_grace: timedelta,
    callback_prepare: timedelta = CALLBACK_PREPARE,
) -> list[Decision]:
    answers: dict[tuple[object, ...], _Answer] = {}
    return [
        decide(
            f,
            known,
            now=now,
            rules=rules,
            callback_grace=callback_grace,
            callback_prepare=callback_prepare,
            answers=answers,
        )
        for f in all_facts
    ]


def _gate_answer(
    facts: CustomerFacts,
    known: DiallerFacts,
    phone: str,
    booked_callback: bool,
    now: datetime,
    rules: gates.CallingRules,
    answers: dict[tuple[object, ...], _Answer] | None,
) -> _Answer:
    """The gate's voice answer for placement (``shared_window=False``, agent not known): the closed
    rule it names, whether time alone will not open it, and when it opens (None: open now).

    A customer with no contact history (no attempt to them or to their number, no abandoned call to
    it, no call to it under way) -- most of a rebuild's 500,000 -- gets the answer the gate gave at
    the same instant to another such customer with the same record, flags and nation: with the
    history empty, those are all the gate reads of :class:`~dialler.compliance.gate.ContactFacts`
    (``tests/dialler/queues/test_placement_memo.py`` holds this list against the dataclass's fields
    and the answers against :func:`gate.check` itself). A customer with history is checked on their
    own."""
    user_id = facts.user_id
    if (
        answers is None
        or known.attempts.get(user_id)
        or known.number_attempts.get(phone)
        or known.abandoned_at.get(phone) is not None
        or known.number_busy_until.get(phone) is not None
    ):
        return _answer(contact_facts(facts, known, phone, booked_callback=booked_callback), now, rules)
    key = (
        facts.status,
        facts.deleted,
        facts.is_enabled,
        gates.nation_of(facts.postcode),
        phone in known.do_not_call,
        phone in known.opted_out,
        booked_callback,
        user_id in known.flagged_vulnerable,
    )
    answer = answers.get(key)
    if answer is None:
        answer = answers[key] = _answer(contact_facts(facts, known, phone, booked_callback=booked_callback), now, rules)
    return answer


_Answer = tuple[gates.GateResult | None, bool, datetime | None]


def _answer(contact: gate.ContactFacts, now: datetime, rules: gates.CallingRules) -> _Answer:
    answer = gate.check(contact, channel=gate.Channel.VOICE, at=now, rules=rules, shared_window=False)
    return answer.blocking, answer.permanent, None if answer.allowed else answer.next_allowed_at
