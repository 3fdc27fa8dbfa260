"""May this outcome be recorded for this session now? One rule, asked in two places: by the session's
Update validator (the workflow's own state) and by the API before it keeps an outcome for a session
whose worker is away (the session's view, written by the workflow at each step). Both must agree: an
outcome the API answers 2xx for is one the session will apply.

The disposition's own rules (which fields each needs) are ``dispositions.check_outcome``'s; this adds
the session's: whose call it is, whether it is over, whether one is already recorded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dialler.calls.dispositions import InvalidOutcome, check_outcome
from dialler.calls.messages import CallSessionView, CallState, OutcomeInput

_LIVE_CALL = frozenset({CallState.DIALING, CallState.RINGING, CallState.IN_PROGRESS})


class OutcomeRefused(Exception):
    """The session refuses the outcome. ``kind`` is stable (the Update's ApplicationError type):
    NotYourCall, OutcomeAlreadyRecorded, CallInProgress, CallAbandoned, InvalidOutcome."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    @property
    def invalid(self) -> bool:
        """The outcome itself is wrong for this call (422), rather than the moment or the caller (409)."""
        return self.kind in ("InvalidOutcome", "CallAbandoned")


@dataclass(frozen=True)
class SessionFacts:
    """What the rule needs to know of the session."""

    agent_id: int
    state: str
    recorded: bool  # an outcome is already recorded (or the session closed)
    answered: bool
    dialled: bool
    abandoned: bool

    @classmethod
    def from_view(cls, view: CallSessionView) -> SessionFacts:
        return cls(
            agent_id=view.agent_id,
            state=view.state,
            recorded=view.disposition is not None,
            answered=view.answered,
            dialled=view.end_reason is not None,
            abandoned=view.end_reason == "abandoned",
        )


def check_submission(outcome: OutcomeInput, facts: SessionFacts, *, now: datetime) -> None:
    """Raise OutcomeRefused unless the session takes this outcome at ``now``."""
    if outcome.agent_id != facts.agent_id:
        raise OutcomeRefused("NotYourCall", "only the agent on this call can record its outcome")
    if facts.recorded or facts.state == CallState.CLOSED:
        raise OutcomeRefused("OutcomeAlreadyRecorded", "the outcome of this call is already recorded")
    if facts.state in _LIVE_CALL:
        raise OutcomeRefused("CallInProgress", "hang up before recording the outcome")
    if facts.abandoned:
        raise OutcomeRefused("CallAbandoned", "an abandoned call is recorded by the system")
    try:
        check_outcome(
            outcome.disposition,
            callback_at_given=outcome.callback_at is not None,
            notes=outcome.notes,
            answered=facts.answered,
            dialled=facts.dialled,
        )
    except InvalidOutcome as exc:
        raise OutcomeRefused("InvalidOutcome", str(exc)) from None
    if outcome.callback_at is not None and outcome.callback_at <= now:
        raise OutcomeRefused("InvalidOutcome", "the callback time must be in the future")
