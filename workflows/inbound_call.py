"""InboundCallWorkflow: a customer's returned call, from the agent's phone ringing to the outcome.

    ringing ──agent answers──▶ in_progress ──call ends──▶ wrap_up ──outcome──▶ closed
       └── rang out, rejected, caller hung up ──▶ closed (the caller heard the opening hours)

The Twilio webhook has already chosen the agent and answered Twilio (it cannot wait for a worker);
it starts this workflow (id ``inbound-call-<CallSid>``) and the agent leg's status callbacks are
signals to it (signal-with-start: a call whose start was missed is still followed). The agent is
held (reserved) while their phone rings, so nothing else is offered to them; once they answer, the
customer's session opens and presence follows the call: on_call → wrap_up → available. The outcome
is the same Update as an outbound call's (the same API and screen), validated here, and recorded by
the call session's own finishing step as contact, never as an attempt.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.callbacks import CallbackActivities
    from activities.calls import CallActivities
    from activities.inbound_call import InboundCallActivities
    from dialler import search_attributes as sa
    from dialler.callbacks.messages import BookCallbackInput
    from dialler.calls.dispositions import EFFECTS, Disposition, InvalidOutcome, check_outcome
    from dialler.calls.messages import (
        END_REASONS,
        TWILIO_STATUS_RANK,
        CallSessionView,
        CallState,
        CallStatusEvent,
        FinishInput,
        FollowUp,
        FollowUpInput,
        OutcomeAccepted,
        OutcomeInput,
        PresenceInput,
    )
    from dialler.calls.returned import (
        RETURNED_QUEUE,
        InboundCallInput,
        OpenReturnedSession,
        ReturnedCallStep,
    )
    from dialler.comms.messages import SendSmsInput, magic_link_workflow_id
    from workflows.magic_link import MagicLinkWorkflow
    from workflows.sms import SendSmsWorkflow

QUICK = timedelta(seconds=15)
FINISH_TIMEOUT = timedelta(seconds=30)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30)
)
# After the ring's own timeout, how long to wait for the carrier to say how the ring ended before
# taking it as rung out (its status callback was lost): the agent is never held for longer.
RING_GRACE = timedelta(seconds=30)
# After our hang-up, how long to wait for the carrier's final status before ending the call here.
HANGUP_GRACE = timedelta(seconds=15)
# The outcome of a returned call names no dial ("no answer", "busy" and "voicemail" describe a call we
# placed): validated as an answered call that was never dialled.
_RINGING, _LIVE, _ENDED = "ringing", CallState.IN_PROGRESS, CallState.ENDED


@workflow.defn
class InboundCallWorkflow:
    @workflow.init
    def __init__(self, input: InboundCallInput) -> None:
        # Status signals delivered with the start (signal-with-start) are handled before run() begins.
        self._input = input
        self._state: str = _RINGING
        self._rank = -1
        self._agent_leg: str | None = None
        self._answered = False
        self._end_reason: str | None = None
        self._has_session = False
        self._outcome: OutcomeInput | None = None
        self._hangup_requested = False
        self._wrap_up_deadline: datetime | None = None

    @workflow.run
    async def run(self, input: InboundCallInput) -> OutcomeAccepted | None:
        attributes = [
            sa.AGENT_ID.value_set(str(input.agent_id)),
            sa.QUEUE_TYPE.value_set(RETURNED_QUEUE),
            sa.CALL_STATUS.value_set(_RINGING),
        ]
        if input.user_id is not None:
            attributes.append(sa.USER_ID.value_set(str(input.user_id)))
        workflow.upsert_search_attributes(attributes)
        # Held while their phone rings: no next call and no second returned call lands on them.
        await self._presence("reserved")

        ring_ends = input.received_at + timedelta(seconds=input.ring_timeout_s) + RING_GRACE
        try:
            await workflow.wait_condition(
                lambda: self._state != _RINGING, timeout=max(ring_ends - workflow.now(), timedelta(seconds=1))
            )
        except TimeoutError:
            workflow.logger.warning("no status for the returned call's ring: taken as rung out")
            self._end("no_answer")
        if not self._answered:
            await self._step(_ENDED)
            await self._presence("available")
            self._set_state(CallState.CLOSED)
            return None

        await self._connected()
        await self._until_the_call_ends(input)
        await self._step(_ENDED)
        if not self._has_session:  # an unknown number (or a customer in a colleague's session): no outcome
            self._set_state(CallState.CLOSED)
            await self._presence("wrap_up")
            await self._presence("available")
            return None

        self._wrap_up_deadline = workflow.now() + timedelta(seconds=input.wrap_up_timeout_s)
        self._set_state(CallState.WRAP_UP)
        await self._step(CallState.WRAP_UP)
        await self._presence("wrap_up")
        with suppress(TimeoutError):  # no outcome in time: the system records no_outcome
            await workflow.wait_condition(
                lambda: self._outcome is not None, timeout=self._wrap_up_deadline - workflow.now()
            )
        outcome = self._outcome or OutcomeInput(agent_id=input.agent_id, disposition=Disposition.NO_OUTCOME)
        return await self._close(outcome)

    # --- signals, update, query -------------------------------------------------------------------

    @workflow.signal
    def call_status(self, event: CallStatusEvent) -> None:
        """A status of the agent's leg (the caller's leg lives as long as the webhook's TwiML)."""
        rank = TWILIO_STATUS_RANK.get(event.status)
        if rank is None or rank <= self._rank or self._state not in (_RINGING, _LIVE):
            return  # a repeat, a late older status, or one for a call already over
        if self._agent_leg is None:
            self._agent_leg = event.call_sid
        elif event.call_sid != self._agent_leg:
            return
        self._rank = rank
        if rank == 2:
            self._answered = True
            self._state = _LIVE
        elif rank == 3:
            self._end(END_REASONS[event.status])

    @workflow.signal
    def hang_up(self) -> None:
        self._hangup_requested = True

    @workflow.update
    def submit_outcome(self, outcome: OutcomeInput) -> OutcomeAccepted:
        self._outcome = outcome
        return OutcomeAccepted(self._input.session_id, outcome.disposition)

    @submit_outcome.validator
    def _validate_outcome(self, outcome: OutcomeInput) -> None:
        if outcome.agent_id != self._input.agent_id:
            raise ApplicationError("only the agent on this call can record its outcome", type="NotYourCall")
        if self._outcome is not None or self._state == CallState.CLOSED:
            raise ApplicationError("the outcome of this call is already recorded", type="OutcomeAlreadyRecorded")
        if self._state in (_RINGING, _LIVE):
            raise ApplicationError("hang up before recording the outcome", type="CallInProgress")
        if not self._has_session:
            raise ApplicationError("this call has no customer session to record against", type="NoSession")
        try:
            check_outcome(
                outcome.disposition,
                callback_at_given=outcome.callback_at is not None,
                notes=outcome.notes,
                answered=True,
                dialled=False,
            )
        except InvalidOutcome as exc:
            raise ApplicationError(str(exc), type="InvalidOutcome") from None
        if outcome.callback_at is not None and outcome.callback_at <= workflow.now():
            raise ApplicationError("the callback time must be in the future", type="InvalidOutcome")

    @workflow.query
    def view(self) -> CallSessionView:
        """The session's view for the agent's screen (a session exists only for a known customer)."""
        if self._input.user_id is None:
            raise ApplicationError("a call from an unknown number has no customer session", type="NoSession")
        return CallSessionView(
            session_id=self._input.session_id,
            user_id=self._input.user_id,
            agent_id=self._input.agent_id,
            queue=RETURNED_QUEUE,
            state=self._state,
            call_sid=self._input.call_sid,
            end_reason=self._end_reason,
            disposition=self._outcome.disposition if self._outcome else None,
            answered=self._answered,
            started_at=self._input.received_at,
            wrap_up_deadline=self._wrap_up_deadline,
        )

    # --- steps -------------------------------------------------------------------------------------

    async def _connected(self) -> None:
        input = self._input
        workflow.upsert_search_attributes([sa.CALL_STATUS.value_set(str(_LIVE))])
        if input.user_id is not None:
            self._has_session = await self._local(
                InboundCallActivities.open_returned_session,
                OpenReturnedSession(
                    session_id=input.session_id,
                    workflow_id=workflow.info().workflow_id,
                    call_sid=input.call_sid,
                    user_id=input.user_id,
                    agent_id=input.agent_id,
                    started_at=input.received_at,
                    answered_at=workflow.now(),
                ),
            )
        await self._step(_LIVE)
        await self._presence("on_call")

    async def _until_the_call_ends(self, input: InboundCallInput) -> None:
        ends = workflow.now() + timedelta(seconds=input.max_call_s)
        hung_up = False
        while self._state == _LIVE:
            try:
                await workflow.wait_condition(
                    lambda hung_up=hung_up: self._state != _LIVE or (self._hangup_requested and not hung_up),
                    timeout=ends - workflow.now(),
                )
            except TimeoutError:
                workflow.logger.warning("no final status for the returned call: ended here")
                self._end("completed")
                return
            if self._state == _LIVE and self._hangup_requested and not hung_up:
                hung_up = True
                # The caller's leg: its end ends the agent's, whose status then says so.
                await workflow.execute_activity_method(
                    CallActivities.hangup, input.call_sid, start_to_close_timeout=QUICK, retry_policy=RETRY
                )
                ends = min(ends, workflow.now() + HANGUP_GRACE)

    async def _close(self, outcome: OutcomeInput) -> OutcomeAccepted:
        input = self._input
        assert input.user_id is not None
        disposition = Disposition(outcome.disposition)
        workflow.upsert_search_attributes([sa.DISPOSITION.value_set(str(disposition))])
        if EFFECTS[disposition].books_callback and outcome.callback_at is not None:
            await self._local(
                CallbackActivities.book,
                BookCallbackInput(
                    user_id=input.user_id,
                    due_at=outcome.callback_at,
                    booked_by_agent_id=input.agent_id,
                    source="call",
                    call_session_id=input.session_id,
                ),
            )
        # The call session's own finishing step: outcome, effects, re-placement by the rules, the
        # agent back to available; ``returned_call``: the customer rang us, no attempt is counted.
        await workflow.execute_local_activity_method(
            CallActivities.finish_session,
            FinishInput(
                session_id=input.session_id,
                workflow_id=workflow.info().workflow_id,
                user_id=input.user_id,
                agent_id=input.agent_id,
                lease_token=0,  # no lease: the release finds none and places the customer by the rules
                disposition=str(disposition),
                notes=outcome.notes,
                callback_at=outcome.callback_at,
                end_reason=self._end_reason,
                answered=True,
                abandoned=False,
                finished_at=workflow.now(),
                returned_call=True,
            ),
            start_to_close_timeout=FINISH_TIMEOUT,
            retry_policy=RETRY,
        )
        self._set_state(CallState.CLOSED)
        if EFFECTS[disposition].sends_sms is not None:
            await self._follow_up(EFFECTS[disposition].sends_sms)
        return OutcomeAccepted(input.session_id, str(disposition))

    async def _follow_up(self, kind: str) -> None:
        """The text the outcome promises (documents promised: the upload link), as after any call: in
        a workflow of its own, under the same ids as a call session's, so it is never sent twice."""
        input = self._input
        assert input.user_id is not None
        plan: FollowUp | None = await self._local(
            CallActivities.plan_follow_up, FollowUpInput(input.user_id, input.agent_id, kind)
        )
        if plan is None:
            return
        if plan.link is not None:
            await workflow.start_child_workflow(
                MagicLinkWorkflow.run,
                plan.link,
                id=magic_link_workflow_id(input.user_id, plan.link.purpose, input.session_id[:12]),
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
        elif plan.template is not None:
            await workflow.start_child_workflow(
                SendSmsWorkflow.run,
                SendSmsInput(user_id=input.user_id, template=plan.template, agent_id=input.agent_id),
                id=f"sms-call-{input.session_id}",
                parent_close_policy=ParentClosePolicy.ABANDON,
            )

    def _end(self, reason: str) -> None:
        self._end_reason = reason
        self._state = _ENDED

    def _set_state(self, state: str) -> None:
        self._state = state
        workflow.upsert_search_attributes([sa.CALL_STATUS.value_set(str(state))])

    async def _step(self, state: str) -> None:
        input = self._input
        await self._local(
            InboundCallActivities.record_returned_step,
            ReturnedCallStep(
                call_sid=input.call_sid,
                session_id=input.session_id if self._has_session else None,
                agent_id=input.agent_id,
                user_id=input.user_id,
                state=str(state),
                at=workflow.now(),
                end_reason=self._end_reason,
                answered=self._answered,
            ),
        )

    async def _presence(self, state: str) -> None:
        await self._local(CallActivities.set_presence, PresenceInput(self._input.agent_id, state, self._input.user_id))

    async def _local(self, method, arg):  # type: ignore[no-untyped-def]
        return await workflow.execute_local_activity_method(
            method, arg, start_to_close_timeout=QUICK, retry_policy=RETRY
        )
