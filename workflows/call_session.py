"""CallSessionWorkflow: one call attempt, from the lease to the recorded outcome.

    reserved ──dial──▶ dialing ──▶ ringing ──▶ in_progress ──▶ ended ──▶ wrap_up ──outcome──▶ closed
        └──────────────── outcome (agent skipped the call) / wrap-up timeout (no_outcome) ───┘

Twilio status callbacks arrive as signals (repeats and out-of-order ones are ignored: a status never
moves the call backwards). Twilio does not retry one that finds the API down, so a session that has
heard nothing for a while asks the carrier for its call and acts on the answer in the same way. The
agent's outcome is an Update validated before it is accepted. The API keeps the outcome in
PostgreSQL before it delivers it (``dialler.calls.received``): when the Update cannot reach the
session (its worker is away), the ``outcome_received`` signal says one is waiting, and before closing
as ``no_outcome`` the session always looks for one: an outcome answered 2xx is applied, once,
whenever the worker comes back. The agent's screen reads the view each progress step writes to
Redis (dialler.calls.view); the Query gives the live state where there is none. Every side effect
is an idempotent activity; the lease is renewed while the session lives, and released (requeue or
removal) when it closes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.callbacks import CallbackActivities
    from activities.calls import CallActivities
    from dialler import search_attributes as sa
    from dialler.callbacks.messages import BookCallbackInput, SettleCallbackInput
    from dialler.calls.dispositions import EFFECTS, Disposition
    from dialler.calls.messages import (
        END_REASONS,
        TWILIO_STATUS_RANK,
        AbandonedEvent,
        AgentClaimed,
        CallSessionInput,
        CallSessionView,
        CallState,
        CallStatusEvent,
        CheckCallInput,
        ClaimedAgentInput,
        DialRequest,
        FinishInput,
        FollowUp,
        FollowUpInput,
        OpenSessionInput,
        OutcomeAccepted,
        OutcomeInput,
        PlaceCallInput,
        PresenceInput,
        ReceivedOutcomeRead,
        RenewLeaseInput,
        SessionProgress,
        TakeReceivedInput,
    )
    from dialler.calls.outcomes import OutcomeRefused, SessionFacts, check_submission
    from dialler.comms.messages import SendSmsInput, magic_link_workflow_id
    from workflows.magic_link import MagicLinkWorkflow
    from workflows.sms import SendSmsWorkflow

QUICK = timedelta(seconds=15)
DIAL_TIMEOUT = timedelta(seconds=30)
FINISH_TIMEOUT = timedelta(seconds=30)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30)
)
# The marker of the fix that records a status which arrives while the hang-up runs (it was lost: the
# loop ended on it unrecorded). Part of recorded histories: never rename.
RECORD_AFTER_HANGUP_PATCH = "record-status-after-hangup"
# The marker of CallStatus following the conversation for supervisors' filters: in_progress is upserted
# when the customer answers (it stayed "dialing" until the end), and the momentary "ended" is not (wrap-up
# or closed follows at once, and both are). Part of recorded histories: never rename.
LIVE_STATUS_PATCH = "call-status-in-progress"
# The marker of the fix for a call whose carrier leg is gone (the worker or the carrier lost it): after a
# hang-up, the session waits HANGUP_GRACE for the carrier's final status, then ends the call itself
# (it waited for max_call_s, holding the agent on_call for hours). Part of recorded histories: never rename.
HANGUP_GRACE_PATCH = "end-call-after-hangup-grace"
HANGUP_GRACE = timedelta(seconds=15)
# The marker of a final ``completed`` with a duration counting as answered when the answer's own status
# was lost or arrived out of order (the call was taken as unanswered: no outcome needing an answered
# call could be recorded). Part of recorded histories: never rename.
COMPLETED_ANSWERED_PATCH = "completed-with-duration-answered"
# The marker of the preview limit: a customer reserved and not dialled within preview_limit_s goes back
# to the queue with no attempt (an agent could hold one indefinitely). Part of recorded histories.
PREVIEW_LIMIT_PATCH = "preview-limit"
# The marker of outcomes kept by the API: before closing as no_outcome (wrap-up or preview limit over),
# and when told one is waiting, the session takes the outcome the API kept for it (one posted while the
# worker was away was refused, and the session closed as no_outcome: a do-not-call was lost). Part of
# recorded histories: never rename.
RECEIVED_OUTCOME_PATCH = "outcome-kept-by-api"
# The marker of asking the carrier for a call whose status callbacks were lost (they hit an API that was
# down, and Twilio does not retry them: the session stayed dialing or ringing, holding the agent, for
# ever): a call the session placed is fetched CallSessionInput.carrier_check_after_s after the dial and
# then every carrier_check_every_s while live, and its real status is acted on as its callback would
# have been; a hang-up's grace ends on the carrier's final status when it has one. Part of recorded
# histories: never rename.
CARRIER_CHECK_PATCH = "carrier-status-check"
# Asking the carrier is a read, retried a little; a carrier that cannot answer is asked at the next check
# (the session never blocks on it: its lease renewal and the agent's hang-up wait meanwhile).
CARRIER_CHECK_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
# The marker of pooled calls (predictive, placed by the queue's PacingWorkflow): the session dials with
# no agent (a pool id holds the lease), learns the agent the answer claimed (``agent_claimed``), and a
# pooled call nobody answered closes at once, with no wrap-up for an agent who never had it. Part of
# recorded histories: never rename.
POOLED_CALL_PATCH = "pooled-call-claimed-at-answer"
# The marker of the lean session, one for the whole shape (each marker costs two events and a visibility
# write: the marker and the SDK's upsert of TemporalChangeVersion): a session started with it runs the
# code of every patch above without asking for their markers; finds AgentId, UserId, QueueType and
# CallStatus set by its starter (workflows/call_session_client.py) and upserts only what is missing;
# writes a call's end with the wrap-up that follows it at once (one write: nothing reads the momentary
# "ended"); and files Disposition and CallStatus ``closed`` in one upsert. Part of recorded histories:
# never rename.
LEAN_SESSION_PATCH = "lean-session"
# The marker of a dial that placed no call (the compliance gate refused it at the last moment, or the
# carrier rejected it): the session closes at once, ``no_outcome`` and the customer re-placed by the
# rules, instead of a wrap-up where the only outcomes that fit ("no answer", "busy") would be untrue
# and "no answer" texts "we tried to call you" to a customer who was never rung. Newer than the lean
# session: asked for by every session, lean or not. Part of recorded histories: never rename.
UNPLACED_DIAL_PATCH = "unplaced-dial-closes"
# Dialling gives up quickly: a customer should not be rung a minute late because of our retries.
DIAL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_attempts=3, non_retryable_error_types=["TelephonyRejected"]
)

_LIVE_CALL = {CallState.DIALING, CallState.RINGING, CallState.IN_PROGRESS}


@workflow.defn
class CallSessionWorkflow:
    @workflow.init
    def __init__(self, input: CallSessionInput) -> None:
        # Signals delivered together with the start are handled before run() begins: they need the input.
        self._input: CallSessionInput | None = input
        self._state = CallState.RESERVED
        self._rank = -1
        self._call_sid: str | None = None
        self._answered = False
        self._answered_by: str | None = None  # AnsweredBy (human, machine_start, ...) under AMD
        self._abandoned = False
        self._end_reason: str | None = None
        self._outcome: OutcomeInput | None = None
        self._dial_requested = False
        self._browser_call_sid: str | None = None
        self._hangup_requested = False
        self._hung_up = False
        self._wrap_up_deadline: datetime | None = None
        self._preview_expired = False
        self._outcome_waiting = False  # the API kept an outcome it could not deliver by the Update
        self._pooled = False  # a pooled call (POOLED_CALL_PATCH): no agent until the answer claims one
        self._claim_pending = False  # an agent was claimed and their presence not yet moved
        self._lean = False  # LEAN_SESSION_PATCH: set first thing in run()
        self._end_unwritten = False  # the call's end is to be written with the next progress write
        self._unplaced = False  # UNPLACED_DIAL_PATCH: the dial failed before any call was placed

    @workflow.run
    async def run(self, input: CallSessionInput) -> OutcomeAccepted:
        self._input = input
        info = workflow.info()
        self._lean = workflow.patched(LEAN_SESSION_PATCH)
        self._pooled = input.pooled and self._patched(POOLED_CALL_PATCH)
        filed = sa.call_session_start(
            user_id=input.user_id, agent_id=None if self._pooled else input.agent_id, queue=input.queue
        )
        if self._lean:  # the starter filed the session: upsert only what it did not (a test's start)
            given = info.typed_search_attributes
            filed = [pair for pair in filed if given.get(pair.key) != pair.value]
        if filed:
            workflow.upsert_search_attributes([pair.key.value_set(pair.value) for pair in filed])
        await self._local(
            CallActivities.open_session,
            OpenSessionInput(
                input.session_id,
                info.workflow_id,
                input.user_id,
                input.agent_id,
                input.queue,
                input.lease_token,
                input.progressive,
                workflow.now(),
            ),
        )
        if input.progressive:
            self._dial_requested = True

        # Reserved: wait for the agent to dial (or to record an outcome without calling), for at most
        # the preview limit.
        preview_ends: datetime | None = None
        if not input.progressive and self._patched(PREVIEW_LIMIT_PATCH):
            preview_ends = workflow.now() + timedelta(seconds=input.preview_limit_s)
        while not (self._dial_requested or self._outcome):
            await self._renewing_lease_until(
                lambda: self._dial_requested or self._outcome is not None or self._outcome_waiting,
                deadline=preview_ends,
            )
            if self._outcome_waiting and not self._dial_requested:
                await self._take_received_outcome()
            waiting = not (self._dial_requested or self._outcome)
            if preview_ends is not None and waiting and workflow.now() >= preview_ends:
                workflow.logger.info("preview limit reached: the customer goes back to the queue")
                self._preview_expired = True
                break

        if self._dial_requested and self._outcome is None:
            await self._dial()
            max_call = workflow.now() + timedelta(seconds=input.max_call_s)
            hangup_grace = False
            check_every = timedelta(seconds=input.carrier_check_every_s)
            check_at: datetime | None = None  # when to ask the carrier; None: never (unpatched histories)
            # Only a call the session placed: a browser's call is the agent's leg, live while the customer rings.
            if self._state in _LIVE_CALL and self._browser_call_sid is None and self._patched(CARRIER_CHECK_PATCH):
                check_at = workflow.now() + timedelta(seconds=input.carrier_check_after_s)
            while self._state in _LIVE_CALL:
                seen = self._state
                await self._renewing_lease_until(
                    lambda seen=seen: self._state != seen or self._hangup_pending() or self._claim_pending,
                    deadline=max_call if check_at is None else min(max_call, check_at),
                )
                if self._claim_pending:  # only ever set on a pooled call
                    await self._agent_took_call()
                    continue
                if self._hangup_pending():
                    self._hung_up = True
                    await self._activity(CallActivities.hangup, self._call_sid)  # the carrier then reports the end
                    if self._state != seen and self._patched(RECORD_AFTER_HANGUP_PATCH):
                        await self._progress()  # the carrier's status arrived while we hung up
                    elif self._state == seen and self._patched(HANGUP_GRACE_PATCH):
                        hangup_grace = True
                        max_call = min(max_call, workflow.now() + HANGUP_GRACE)
                    continue
                if self._state == seen and workflow.now() >= max_call:
                    if hangup_grace:  # hung up and the carrier never said so
                        if check_at is not None:
                            await self._check_carrier()  # its final status, if the callback was lost
                        if self._state in _LIVE_CALL:  # none: its leg is gone
                            workflow.logger.warning("no final call status after the hang-up: ended here")
                            self._end(END_REASONS["completed"] if self._answered else "canceled")
                    else:
                        # No final status from the carrier: never hold the customer and agent forever.
                        workflow.logger.warning("no final call status after %s s", input.max_call_s)
                        self._end("failed")
                elif check_at is not None:
                    if self._state == seen:  # nothing heard by the check's time: ask the carrier
                        await self._check_carrier()
                        check_at = workflow.now() + check_every
                        if self._state == seen:
                            continue  # still as it was: nothing to record
                    else:  # news by callback: the next check can wait
                        check_at = max(check_at, workflow.now() + check_every)
                await self._progress()

        if self._pooled and self._answered and not self._abandoned and self._input and self._input.agent_id < 0:
            # Put through but never told whom to (the webhook's signal was lost): the row says.
            await self._learn_claimed_agent()
        # An abandoned call, a preview that ran out, a pooled call no agent took, or a dial that placed no
        # call has nothing to wrap up.
        unclaimed = self._pooled and self._input is not None and self._input.agent_id < 0
        nothing_to_wrap_up = self._abandoned or self._preview_expired or unclaimed or self._unplaced
        if self._outcome is None and not nothing_to_wrap_up:
            self._wrap_up_deadline = workflow.now() + timedelta(seconds=input.wrap_up_timeout_s)
            await self._enter_wrap_up()
            wrapped_up = lambda: self._outcome is not None or self._outcome_waiting  # noqa: E731
            await self._renewing_lease_until(wrapped_up, deadline=self._wrap_up_deadline)
            while self._outcome_waiting and self._outcome is None:
                await self._take_received_outcome()
                await self._renewing_lease_until(wrapped_up, deadline=self._wrap_up_deadline)

        if self._outcome is None and not self._abandoned and not unclaimed:
            await self._take_received_outcome()  # one kept while the worker was away is not lost
        if self._end_unwritten:  # no wrap-up followed the end to write it with
            await self._record_progress()
        agent_id = self._input.agent_id if self._input is not None else input.agent_id  # the claimed agent
        outcome = self._outcome or OutcomeInput(agent_id=agent_id, disposition=Disposition.NO_OUTCOME)
        return await self._close(outcome)

    # --- signals, update, query -------------------------------------------------------------------

    @workflow.signal
    def dial(self, request: DialRequest) -> None:
        if self._state == CallState.RESERVED and request.agent_id == (self._input and self._input.agent_id):
            self._dial_requested = True
            self._browser_call_sid = request.browser_call_sid

    @workflow.signal
    def hang_up(self) -> None:
        self._hangup_requested = True

    def _hangup_pending(self) -> bool:
        return self._hangup_requested and not self._hung_up and self._call_sid is not None

    @workflow.signal
    def call_status(self, event: CallStatusEvent) -> None:
        self._on_status(event)

    def _on_status(self, event: CallStatusEvent) -> None:
        """A status of the call, from its callback or from asking the carrier."""
        rank = TWILIO_STATUS_RANK.get(event.status)
        if rank is None or rank <= self._rank or self._state not in _LIVE_CALL:
            return  # a repeat, an older status arriving late, or one for a call already ended
        if self._call_sid is None:
            self._call_sid = event.call_sid
        elif event.call_sid != self._call_sid:
            return
        self._rank = rank
        if event.answered_by:  # state only (no command): a machine-answered line tells the outcome
            self._answered_by = event.answered_by
        if rank == 1:
            self._state = CallState.RINGING
        elif rank == 2:
            self._answered = True
            if self._patched(LIVE_STATUS_PATCH):
                self._set_state(CallState.IN_PROGRESS)
            else:
                self._state = CallState.IN_PROGRESS
        else:
            if (
                event.status == "completed"
                and (event.duration_s or 0) > 0
                and not self._answered
                and self._patched(COMPLETED_ANSWERED_PATCH)
            ):
                self._answered = True  # a call that lasted was answered, whatever became of its in-progress
            self._end(END_REASONS[event.status])

    @workflow.signal
    def outcome_received(self) -> None:
        """The API kept an outcome for this session that the Update could not deliver."""
        self._outcome_waiting = True

    @workflow.signal
    def abandoned(self, event: AbandonedEvent) -> None:
        """Progressive call answered with no agent within the limit: the information message played."""
        if self._state in _LIVE_CALL:
            self._abandoned = True
            self._answered = True
            self._end("abandoned")

    @workflow.signal
    def agent_claimed(self, event: AgentClaimed) -> None:
        """A pooled call was answered and a ready agent claimed for it: from now on the call is theirs
        (their outcome, their presence). Only the first claim counts."""
        if self._pooled and self._input is not None and self._input.agent_id < 0 and event.agent_id > 0:
            self._input = replace(self._input, agent_id=event.agent_id)
            self._claim_pending = True

    @workflow.update
    def submit_outcome(self, outcome: OutcomeInput) -> OutcomeAccepted:
        self._outcome = outcome
        assert self._input is not None
        return OutcomeAccepted(self._input.session_id, outcome.disposition)

    @submit_outcome.validator
    def _validate_outcome(self, outcome: OutcomeInput) -> None:
        try:
            check_submission(outcome, self._facts(), now=workflow.now())
        except OutcomeRefused as exc:
            raise ApplicationError(exc.message, type=exc.kind) from None

    def _facts(self) -> SessionFacts:
        assert self._input is not None
        return SessionFacts(
            agent_id=self._input.agent_id,
            state=str(self._state),
            recorded=self._outcome is not None,
            answered=self._answered,
            dialled=self._end_reason is not None,
            abandoned=self._abandoned,
        )

    @workflow.query
    def view(self) -> CallSessionView:
        assert self._input is not None
        return CallSessionView(
            session_id=self._input.session_id,
            user_id=self._input.user_id,
            agent_id=self._input.agent_id,
            queue=self._input.queue,
            state=str(self._state),
            call_sid=self._call_sid,
            end_reason=self._end_reason,
            disposition=self._outcome.disposition if self._outcome else None,
            answered=self._answered,
            started_at=workflow.info().start_time,
            wrap_up_deadline=self._wrap_up_deadline,
            progressive=self._input.progressive,
            answered_by=self._answered_by,
        )

    # --- steps -------------------------------------------------------------------------------------

    async def _dial(self) -> None:
        assert self._input is not None
        self._set_state(CallState.DIALING)
        self._rank = 0
        # A pooled call holds no agent while it rings: their presence moves when one is claimed.
        on_call = None if self._pooled else PresenceInput(self._input.agent_id, "on_call", self._input.user_id)
        if self._browser_call_sid is not None:  # the agent's browser placed it through our TwiML app
            self._call_sid = self._browser_call_sid
            await self._progress(presence=on_call)
            return
        place = PlaceCallInput(
            self._input.session_id,
            workflow.info().workflow_id,
            self._input.user_id,
            self._input.agent_id,
            self._input.lease_token,
            self._input.progressive,
        )
        try:
            # A task-queue activity, even in a lean session: a refused dial (the compliance gate's
            # NotCallable) must reach the session as the ActivityError it handles below; from a local
            # activity it failed the whole workflow instead (tests/e2e/test_dial_refusal.py).
            call_sid = await workflow.execute_activity_method(
                CallActivities.place_call, place, start_to_close_timeout=DIAL_TIMEOUT, retry_policy=DIAL_RETRY
            )
        except ActivityError:  # the carrier refused or never answered: the call failed, the session goes on
            workflow.logger.warning("placing the call failed")
            self._end("failed")
            self._unplaced = self._call_sid is None and workflow.patched(UNPLACED_DIAL_PATCH)
            await self._progress()
            return
        if self._call_sid is None:
            self._call_sid = call_sid
        await self._progress(presence=on_call)

    async def _agent_took_call(self) -> None:
        """The claimed agent is on the pooled call: filed under them, and on_call."""
        assert self._input is not None
        self._claim_pending = False
        workflow.upsert_search_attributes([sa.AGENT_ID.value_set(str(self._input.agent_id))])
        await self._progress(presence=PresenceInput(self._input.agent_id, "on_call", self._input.user_id))

    async def _learn_claimed_agent(self) -> None:
        assert self._input is not None
        claimed: int | None = await self._local(CallActivities.claimed_agent, ClaimedAgentInput(self._input.session_id))
        if claimed is not None and claimed > 0 and self._input.agent_id < 0:
            self._input = replace(self._input, agent_id=claimed)
            self._claim_pending = False
            workflow.upsert_search_attributes([sa.AGENT_ID.value_set(str(claimed))])

    async def _take_received_outcome(self) -> None:
        """Take the outcome the API kept for this session, if any, judged by the same rule as the
        Update at the moment the API took it (a callback time is "in the future" as of then)."""
        assert self._input is not None
        self._outcome_waiting = False
        if self._outcome is not None or not self._patched(RECEIVED_OUTCOME_PATCH):
            return
        kept: ReceivedOutcomeRead | None = await self._local(
            CallActivities.take_received_outcome, TakeReceivedInput(self._input.session_id)
        )
        if kept is None or self._outcome is not None:  # none, or the Update brought it meanwhile
            return
        try:
            check_submission(kept.outcome, self._facts(), now=kept.received_at)
        except OutcomeRefused as exc:  # the API checked it by the same rule: never expected
            workflow.logger.error("kept outcome refused by the session: %s", exc.kind)
            return
        self._outcome = kept.outcome

    async def _check_carrier(self) -> None:
        """Ask the carrier for the call, and act on what it says as on the status callback: a final
        status ends the call, in-progress is the answer. A call the carrier does not know has ended
        (its leg is gone). A carrier that cannot answer now is asked at the next check."""
        assert self._input is not None and self._call_sid is not None
        try:
            event: CallStatusEvent | None = await workflow.execute_activity_method(
                CallActivities.check_call,
                CheckCallInput(self._input.session_id, self._call_sid),
                start_to_close_timeout=QUICK,
                retry_policy=CARRIER_CHECK_RETRY,
            )
        except ActivityError:
            workflow.logger.warning("the carrier could not be asked for the call's status")
            return
        if event is None:
            workflow.logger.warning("the carrier has no such call: ended here")
            self._end(END_REASONS["completed"] if self._answered else "failed")
            return
        before = self._state
        self._on_status(event)
        if self._state != before:  # a callback was lost (the API was down when Twilio posted it)
            workflow.logger.warning("call status %s learnt from the carrier, not from its callback", event.status)

    def _end(self, reason: str) -> None:
        self._end_reason = reason
        if self._patched(LIVE_STATUS_PATCH):
            self._state = CallState.ENDED
        else:
            self._set_state(CallState.ENDED)

    async def _enter_wrap_up(self) -> None:
        assert self._input is not None
        self._set_state(CallState.WRAP_UP)
        await self._progress(presence=PresenceInput(self._input.agent_id, "wrap_up", self._input.user_id))

    async def _close(self, outcome: OutcomeInput) -> OutcomeAccepted:
        assert self._input is not None
        disposition = Disposition.NO_OUTCOME if self._abandoned else Disposition(outcome.disposition)
        if not self._lean:
            workflow.upsert_search_attributes([sa.DISPOSITION.value_set(str(disposition))])
        if EFFECTS[disposition].books_callback and outcome.callback_at is not None:
            # A workflow of its own (callback-<user id>): the callback outlives this call.
            await self._local(
                CallbackActivities.book,
                BookCallbackInput(
                    user_id=self._input.user_id,
                    due_at=outcome.callback_at,
                    booked_by_agent_id=self._input.agent_id,
                    source="call",
                    call_session_id=self._input.session_id,
                ),
            )
        elif self._input.queue == "callbacks" and disposition != Disposition.NO_OUTCOME:
            await self._local(
                CallbackActivities.settle,
                SettleCallbackInput(self._input.user_id, str(disposition), self._input.session_id),
            )
        await workflow.execute_local_activity_method(
            CallActivities.finish_session,
            FinishInput(
                session_id=self._input.session_id,
                workflow_id=workflow.info().workflow_id,
                user_id=self._input.user_id,
                agent_id=self._input.agent_id,
                lease_token=self._input.lease_token,
                disposition=str(disposition),
                notes=outcome.notes,
                callback_at=outcome.callback_at,
                end_reason=self._end_reason,
                answered=self._answered,
                abandoned=self._abandoned,
                finished_at=workflow.now(),
            ),
            start_to_close_timeout=FINISH_TIMEOUT,
            retry_policy=RETRY,
        )
        if self._lean:  # both in one upsert (they were two in the same workflow task)
            self._state = CallState.CLOSED
            workflow.upsert_search_attributes(
                [sa.DISPOSITION.value_set(str(disposition)), sa.CALL_STATUS.value_set(str(CallState.CLOSED))]
            )
        else:
            self._set_state(CallState.CLOSED)
        follow_up = EFFECTS[disposition].sends_sms
        if follow_up is not None:
            await self._follow_up(follow_up)
        return OutcomeAccepted(self._input.session_id, str(disposition))

    async def _follow_up(self, kind: str) -> None:
        """Text the customer what the outcome promised, in a workflow of its own (abandoned: a slow
        carrier never holds the session; the send checks opt-outs itself)."""
        assert self._input is not None
        plan: FollowUp | None = await self._local(
            CallActivities.plan_follow_up, FollowUpInput(self._input.user_id, self._input.agent_id, kind)
        )
        if plan is None:
            return
        session = self._input.session_id
        if plan.link is not None:
            await workflow.start_child_workflow(
                MagicLinkWorkflow.run,
                plan.link,
                id=magic_link_workflow_id(self._input.user_id, plan.link.purpose, session[:12]),
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
        elif plan.template is not None:
            await workflow.start_child_workflow(
                SendSmsWorkflow.run,
                SendSmsInput(user_id=self._input.user_id, template=plan.template, agent_id=self._input.agent_id),
                id=f"sms-call-{session}",
                parent_close_policy=ParentClosePolicy.ABANDON,
            )

    async def _renewing_lease_until(self, done, deadline=None) -> None:  # type: ignore[no-untyped-def]
        """Wait for ``done`` (or the deadline), renewing the customer's lease as time passes."""
        assert self._input is not None
        every = timedelta(seconds=self._input.lease_renew_every_s)
        while not done():
            timeout = every if deadline is None else min(every, deadline - workflow.now())
            if timeout <= timedelta(0):
                return
            try:
                await workflow.wait_condition(done, timeout=timeout)
            except TimeoutError:
                await self._local(
                    CallActivities.renew_lease, RenewLeaseInput(self._input.user_id, self._input.lease_token)
                )

    async def _progress(self, presence: PresenceInput | None = None) -> None:
        if self._lean and self._state == CallState.ENDED and presence is None:
            # The wrap-up follows at once (or the close, when none does): the end is written with it.
            self._end_unwritten = True
            return
        await self._record_progress(presence)

    async def _record_progress(self, presence: PresenceInput | None = None) -> None:
        assert self._input is not None
        ended, self._end_unwritten = self._end_unwritten, False
        await self._local(
            CallActivities.record_progress,
            SessionProgress(
                self._input.session_id,
                str(self._state),
                self._call_sid,
                workflow.now(),
                self._end_reason,
                presence,
                self._answered,
                self._wrap_up_deadline,
                self._answered_by,
                ended,
            ),
        )

    def _patched(self, patch_id: str) -> bool:
        """A lean session runs every earlier patch's code, without recording their markers."""
        return self._lean or workflow.patched(patch_id)

    def _set_state(self, state: CallState) -> None:
        self._state = state
        workflow.upsert_search_attributes([sa.CALL_STATUS.value_set(str(state))])

    async def _activity(self, method, arg) -> None:  # type: ignore[no-untyped-def]
        await workflow.execute_activity_method(method, arg, start_to_close_timeout=QUICK, retry_policy=RETRY)

    async def _local(self, method, arg):  # type: ignore[no-untyped-def]
        """Our own short database and Redis steps run as local activities: one marker in the history
        and no task-queue round trip, instead of three events and a workflow task each."""
        return await workflow.execute_local_activity_method(
            method, arg, start_to_close_timeout=QUICK, retry_policy=RETRY
        )
