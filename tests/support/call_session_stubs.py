"""CallSessionWorkflow's activities as same-named stubs that record what the session asked of them and
answer as a test sets: the carrier's answers to ``check_call`` (in turn, the last one for ever after;
an ``ApplicationError`` is raised) and the agent a pooled call's row names (``claimed_agent``). For
workflow tests of one branch of the session; the real activities run in the end-to-end tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from dialler.calls.messages import (
    CallStatusEvent,
    CheckCallInput,
    ClaimedAgentInput,
    FinishInput,
    FinishResult,
    FollowUp,
    FollowUpInput,
    OpenSessionInput,
    PlaceCallInput,
    ReceivedOutcomeRead,
    RenewLeaseInput,
    SessionProgress,
    TakeReceivedInput,
)


@dataclass
class StubbedSession:
    call_sid: str  # what place_call answers
    carrier_answers: list[CallStatusEvent | ApplicationError] = field(default_factory=list)
    claimed_on_row: int | None = None  # what the session's row says the answer claimed
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def of(self, name: str) -> list[Any]:
        return [arg for n, arg in self.calls if n == name]

    @property
    def asked(self) -> int:
        """How often the carrier was asked for the call (every try counts)."""
        return len(self.of("check_call"))

    @property
    def finished(self) -> list[FinishInput]:
        return self.of("finish_session")

    def states(self) -> list[str]:
        return [p.state for p in self.of("record_progress")]

    def presence(self) -> list[tuple[int, str]]:
        return [(p.presence.agent_id, p.presence.state) for p in self.of("record_progress") if p.presence]


def stubs(session: StubbedSession) -> list[Any]:
    def record(name: str, arg: Any) -> None:
        session.calls.append((name, arg))

    @activity.defn(name="open_session")
    async def open_session(input: OpenSessionInput) -> None:
        record("open_session", input)

    @activity.defn(name="place_call")
    async def place_call(input: PlaceCallInput) -> str:
        record("place_call", input)
        return session.call_sid

    @activity.defn(name="record_progress")
    async def record_progress(input: SessionProgress) -> None:
        record("record_progress", input)

    @activity.defn(name="renew_lease")
    async def renew_lease(input: RenewLeaseInput) -> bool:
        return True

    @activity.defn(name="hangup")
    async def hangup(call_sid: str) -> None:
        record("hangup", call_sid)  # the carrier hangs up; its confirmation is what a test may lose

    @activity.defn(name="check_call")
    async def check_call(input: CheckCallInput) -> CallStatusEvent | None:
        assert input.call_sid == session.call_sid
        answers = session.carrier_answers
        answer = answers[min(session.asked, len(answers) - 1)]
        record("check_call", input)
        if isinstance(answer, ApplicationError):
            raise answer
        return answer

    @activity.defn(name="claimed_agent")
    async def claimed_agent(input: ClaimedAgentInput) -> int | None:
        record("claimed_agent", input)
        return session.claimed_on_row

    @activity.defn(name="take_received_outcome")
    async def take_received_outcome(input: TakeReceivedInput) -> ReceivedOutcomeRead | None:
        return None

    @activity.defn(name="finish_session")
    async def finish_session(input: FinishInput) -> FinishResult:
        record("finish_session", input)
        return FinishResult(requeued=True)

    @activity.defn(name="plan_follow_up")
    async def plan_follow_up(input: FollowUpInput) -> FollowUp | None:
        return None

    return [
        open_session,
        place_call,
        record_progress,
        renew_lease,
        hangup,
        check_call,
        claimed_agent,
        take_received_outcome,
        finish_session,
        plan_follow_up,
    ]
