"""CallbackWorkflow: a booked callback, from booking to completed, cancelled or missed.

    scheduled ──timer──▶ prepared ──(queue)──▶ due (reserved for the booking agent) ──grace──▶ open (any agent)
        ▲                   │                     │                                             │
        └─ reschedule ──────┴─────────────────────┴────────── complete / cancel ───────────────┴──expiry──▶ missed
                                                                                                   (rebooked once)

The timers are durable: a restart of any server loses nothing. Ahead of the due time (between
``timings.prepare_s`` and half of it before, spread by customer: dialler.callbacks.rules) the current
compliance rules decide (do-not-call, opt-out, deceased cancel it; a due time that falls outside
calling hours moves to the next allowed slot), so a callback never dials outside hours; if it goes
ahead the customer is put in the callbacks queue with a not-before of the due time and reserved for
the booking agent until due + grace (dialler.queues.placement). From then on the Redis queue does the
work at the deadline: the customer becomes callable at the due second and falls to any callback agent
after the grace, however many callbacks fall due together. Temporal is not on that path: the 'due'
and 'open' steps that follow are bookkeeping (mirror row, search attributes), one local activity each
(which also re-places a customer the preparation left out of the queue).

The customer is texted a confirmation for every time the callback is booked for (booking, reschedule,
move, rebook) and a reminder ``timings.reminder_s`` before it is due (0: none; none either when the
booking itself is that close). Each text is an abandoned child ``SendSmsWorkflow``, so a slow carrier
never delays the callback, and it checks the opt-out when it sends. A cancel or completion wakes the
reminder timer early, so no reminder follows a cancelled callback.

Histories recorded before the preparation existed (no ``PREPARE_PATCH`` marker) replay on the old
path, which checks, mirrors and requeues at the due time (``_run_unprepared``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.callbacks import CallbackActivities
    from dialler import search_attributes as sa
    from dialler.callbacks import rules as callback_rules
    from dialler.callbacks.messages import (
        REQUEUE_ALWAYS,
        REQUEUE_IF_MISSING,
        BookCallbackInput,
        CallbackStatus,
        CallbackView,
        CancelInput,
        CompleteInput,
        EnqueueInput,
        MirrorInput,
        PrepareInput,
        RescheduleInput,
        TransitionInput,
    )
    from dialler.callbacks.rules import bookable_problem, rules_for
    from dialler.comms.messages import SendSmsInput
    from dialler.comms.templates import TemplateName
    from dialler.compliance import gates
    from workflows.sms import SendSmsWorkflow

# prepare and transition run as local activities (short, idempotent database and Redis work): a
# timer that fires then costs one workflow task and one marker instead of two tasks and an activity
# task, which is most of the engine's work for a crowd of callbacks falling due together.
STEP = timedelta(seconds=20)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30)
)
# Histories recorded before the callback texts existed replay without them.
SMS_PATCH = "callback-sms"
# Histories recorded before callbacks were prepared ahead of their time replay on the old path.
PREPARE_PATCH = "callback-prepare"


@workflow.defn
class CallbackWorkflow:
    @workflow.init
    def __init__(self, input: BookCallbackInput) -> None:
        self._input: BookCallbackInput | None = input
        self._status = CallbackStatus.SCHEDULED
        self._due: datetime | None = None
        self._owner: int | None = None
        self._reserved_until: datetime | None = None
        self._history: list[str] = []
        self._rescheduled = False
        self._cancel: CancelInput | None = None
        self._complete: CompleteInput | None = None
        self._confirmed_due: datetime | None = None
        self._reminded_due: datetime | None = None
        self._texts = 0
        self._prepares = False  # PREPARE_PATCH: set once at the start of the run

    @workflow.run
    async def run(self, input: BookCallbackInput) -> str:
        self._prepares = workflow.patched(PREPARE_PATCH)  # before any other command
        self._input = input
        self._due = input.due_at
        self._owner = input.booked_by_agent_id
        self._history = [*input.history, self._note(f"booked by {input.source} for {input.due_at.isoformat()}")]
        workflow.upsert_search_attributes([sa.USER_ID.value_set(str(input.user_id))])
        if not self._prepares:
            return await self._run_unprepared(input)
        await self._transition(CallbackStatus.SCHEDULED)  # booked for later: no other queue calls them before it

        while True:
            # Scheduled: confirm the time by text; remind and prepare ahead of it, in time order;
            # a cancel, completion or reschedule may come first.
            await self._confirm()
            prepare_at = callback_rules.prepare_at(self._due, input.user_id, input.timings.prepare_s)
            remind_first = input.timings.reminder_s >= input.timings.prepare_s
            if (remind_first and await self._remind()) or await self._wait_until(prepare_at):
                if self._ended():
                    return await self._finish()
                continue  # rescheduled
            check = await workflow.execute_local_activity_method(
                CallbackActivities.prepare,
                PrepareInput(input.user_id, self._due),
                start_to_close_timeout=STEP,
                retry_policy=RETRY,
            )
            if check.action == "cancel":
                if not self._ended():
                    self._cancel = CancelInput(reason=check.reason or "not callable")
                return await self._finish()
            if check.action == "move" and check.move_to is not None:
                self._due = check.move_to
                self._history.append(self._note(f"moved to {check.move_to.isoformat()}: {check.reason}"))
                await self._transition(CallbackStatus.SCHEDULED)
                continue

            # Prepared: in the callbacks queue, callable from the due second (the queue sees to it).
            if (not remind_first and await self._remind()) or await self._wait_until(self._due):
                if self._ended():
                    return await self._finish()
                continue  # rescheduled: the transition took the customer back out of the queue

            # Due: reserved for the booking agent for the grace period (bookkeeping: the queue entry
            # already says so).
            self._reserved_until = self._due + timedelta(seconds=input.timings.grace_s)
            await self._transition(CallbackStatus.DUE, requeue=REQUEUE_IF_MISSING)
            if await self._wait_until(self._reserved_until):
                if self._ended():
                    return await self._finish()
                continue

            # Open: the reservation has lapsed in the queue by itself; any callback agent may take it
            # until it expires.
            self._reserved_until = None
            await self._transition(CallbackStatus.OPEN, requeue=REQUEUE_IF_MISSING)
            if await self._wait_until(self._due + timedelta(seconds=input.timings.expiry_s)):
                if self._ended():
                    return await self._finish()
                continue
            return await self._missed()

    async def _run_unprepared(self, input: BookCallbackInput) -> str:
        """The path of histories recorded before PREPARE_PATCH: everything happens at the due time."""
        assert self._due is not None
        await self._set(CallbackStatus.SCHEDULED)
        await self._enqueue()  # booked for later: no other queue calls the customer before then

        while True:
            # Scheduled: confirm the time by text, remind before it, sleep until due, unless the
            # customer's plans change first.
            await self._confirm()
            if await self._remind():
                if self._ended():
                    return await self._finish()
                continue  # rescheduled
            if await self._wait_until(self._due):
                if self._ended():
                    return await self._finish()
                continue  # rescheduled
            check = await workflow.execute_activity_method(
                CallbackActivities.check_due, input.user_id, start_to_close_timeout=STEP, retry_policy=RETRY
            )
            if check.action == "cancel":
                self._cancel = CancelInput(reason=check.reason or "not callable")
                return await self._finish()
            if check.action == "move" and check.move_to is not None:
                self._due = check.move_to
                self._history.append(self._note(f"moved to {check.move_to.isoformat()}: {check.reason}"))
                await self._set(CallbackStatus.SCHEDULED)
                continue

            # Due: top of the callbacks queue, reserved for the booking agent for the grace period.
            self._reserved_until = self._due + timedelta(seconds=input.timings.grace_s)
            await self._set(CallbackStatus.DUE)
            await self._enqueue()
            if await self._wait_until(self._reserved_until):
                if self._ended():
                    return await self._finish()
                await self._enqueue()
                continue

            # Open: any agent working the callbacks queue may take it, until it expires.
            self._reserved_until = None
            await self._set(CallbackStatus.OPEN)
            await self._enqueue()
            if await self._wait_until(self._due + timedelta(seconds=input.timings.expiry_s)):
                if self._ended():
                    return await self._finish()
                await self._enqueue()
                continue
            return await self._missed()

    # --- signals, update, query --------------------------------------------------------------------

    @workflow.update
    async def reschedule(self, request: RescheduleInput) -> CallbackView:
        self._due = request.due_at
        self._rescheduled = True
        self._history.append(self._note(f"rescheduled to {request.due_at.isoformat()}"))
        await workflow.wait_condition(lambda: not self._rescheduled)  # the main loop has taken it in
        return self.view()

    @workflow.signal
    def rebook(self, request: RescheduleInput) -> None:
        """A new booking for a customer whose callback is live (signal-with-start from the API or a call
        outcome): the time was validated by the booker, with the same rules as ``reschedule``."""
        assert self._input is not None
        if self._ended() or self._status not in (CallbackStatus.SCHEDULED, CallbackStatus.DUE, CallbackStatus.OPEN):
            return
        if request.due_at == self._due:
            return  # the signal delivered with the start, or a retry
        if bookable_problem(request.due_at, workflow.now(), self._input.hours) is not None:
            workflow.logger.warning("rebook refused: %s", request.due_at.isoformat())
            return
        self._due = request.due_at
        self._rescheduled = True
        self._history.append(self._note(f"rebooked for {request.due_at.isoformat()}"))

    @reschedule.validator
    def _validate_reschedule(self, request: RescheduleInput) -> None:
        assert self._input is not None
        if self._status not in (CallbackStatus.SCHEDULED, CallbackStatus.DUE, CallbackStatus.OPEN) or self._ended():
            raise ApplicationError(f"the callback is {self._status}; it can no longer be moved", type="CallbackClosed")
        problem = bookable_problem(request.due_at, workflow.now(), self._input.hours)
        if problem:
            raise ApplicationError(problem, type="InvalidCallbackTime")

    @workflow.signal
    def cancel(self, request: CancelInput) -> None:
        if self._cancel is None and self._complete is None:
            self._cancel = request

    @workflow.signal
    def complete(self, request: CompleteInput) -> None:
        if self._cancel is None and self._complete is None:
            self._complete = request

    @workflow.query
    def view(self) -> CallbackView:
        assert self._input is not None and self._due is not None
        return CallbackView(
            self._input.user_id, str(self._status), self._due, self._owner, self._reserved_until, list(self._history)
        )

    # --- steps -------------------------------------------------------------------------------------

    def _ended(self) -> bool:
        return self._cancel is not None or self._complete is not None

    async def _confirm(self) -> None:
        """Text the customer the time booked, once per time."""
        if not workflow.patched(SMS_PATCH) or self._due == self._confirmed_due:
            return
        self._confirmed_due = self._due
        await self._text(TemplateName.CALLBACK_CONFIRMATION)

    async def _remind(self) -> bool:
        """Sleep until the reminder time and text the reminder; True if woken early (cancel,
        completion, reschedule), in which case no reminder goes out."""
        assert self._input is not None and self._due is not None
        lead = timedelta(seconds=self._input.timings.reminder_s)
        if not workflow.patched(SMS_PATCH) or lead <= timedelta(0) or self._due == self._reminded_due:
            return False
        remind_at = self._due - lead
        if remind_at - workflow.now() < lead / 2:
            # Booked (or moved) that close to the time: the confirmation just sent is the reminder.
            self._reminded_due = self._due
            return False
        if await self._wait_until(remind_at):
            return True
        self._reminded_due = self._due
        await self._text(TemplateName.CALLBACK_REMINDER)
        return False

    async def _text(self, template: TemplateName) -> None:
        assert self._input is not None and self._due is not None
        self._texts += 1
        info = workflow.info()
        await workflow.start_child_workflow(
            SendSmsWorkflow.run,
            SendSmsInput(user_id=self._input.user_id, template=str(template), params={"due_at": self._due.isoformat()}),
            id=f"sms-{info.workflow_id}-{info.run_id[:8]}-{self._texts}",
            parent_close_policy=ParentClosePolicy.ABANDON,
        )

    async def _wait_until(self, deadline: datetime) -> bool:
        """Sleep until ``deadline``; True if woken early by a cancel, completion or reschedule."""
        interrupted = lambda: self._ended() or self._rescheduled  # noqa: E731
        remaining = deadline - workflow.now()
        if remaining > timedelta(0) and not interrupted():
            try:
                await workflow.wait_condition(interrupted, timeout=remaining)
            except TimeoutError:
                return False
        if not interrupted():
            return False
        if self._rescheduled and not self._ended():
            self._rescheduled = False
            self._reserved_until = None
            if self._prepares:
                await self._transition(CallbackStatus.SCHEDULED)  # out of the callbacks queue until prepared
            else:
                await self._set(CallbackStatus.SCHEDULED)
        return True

    async def _finish(self) -> str:
        assert self._input is not None
        if self._cancel is not None:
            status, reason, outcome = CallbackStatus.CANCELLED, self._cancel.reason, None
        else:
            assert self._complete is not None
            status, reason, outcome = CallbackStatus.COMPLETED, None, self._complete.disposition
        self._history.append(self._note(f"{status}" + (f": {reason}" if reason else "")))
        # Out of the callbacks queue (back to the customer's normal queue, if any).
        if self._prepares:
            await self._transition(status, reason=reason, outcome=outcome)
        else:
            await self._set(status, reason=reason, outcome=outcome)
            await self._enqueue()
        return str(status)

    async def _missed(self) -> str:
        assert self._input is not None
        self._history.append(self._note("missed: nobody reached the customer before expiry"))
        if self._prepares:
            await self._transition(CallbackStatus.MISSED, reason="expired")
        else:
            await self._set(CallbackStatus.MISSED, reason="expired")
            await self._enqueue()
        if self._input.timings.rebook_missed and self._input.rebooked_from is None:
            rules = rules_for(self._input.hours)
            shift = timedelta(seconds=self._input.hours.clock_offset_s)
            # Next morning's first slot rather than straight after expiry: the customer asked for a
            # time, and a call hours later on the same evening is rarely welcome.
            local = (workflow.now() + shift).astimezone(rules.tz)
            next_morning = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            with workflow.unsafe.sandbox_unrestricted():  # see dialler.callbacks.rules._calendar
                slot = gates.next_allowed_slots(next_morning, rules, 1)[0] - shift
            workflow.continue_as_new(
                BookCallbackInput(
                    user_id=self._input.user_id,
                    due_at=slot,
                    booked_by_agent_id=self._owner,
                    source="rebook",
                    hours=self._input.hours,
                    timings=self._input.timings,
                    rebooked_from=workflow.info().run_id,
                    history=[*self._history, self._note(f"rebooked for {slot.isoformat()}")],
                )
            )
        return str(CallbackStatus.MISSED)

    async def _transition(
        self,
        status: CallbackStatus,
        reason: str | None = None,
        outcome: str | None = None,
        requeue: str = REQUEUE_ALWAYS,
    ) -> None:
        """A status change as one local activity: search attributes, mirror row and queue placement."""
        self._status = status
        self._upsert_status_attributes()
        await workflow.execute_local_activity_method(
            CallbackActivities.transition,
            TransitionInput(self._mirror_input(status, reason, outcome), requeue=requeue),
            start_to_close_timeout=STEP,
            retry_policy=RETRY,
        )

    async def _set(self, status: CallbackStatus, reason: str | None = None, outcome: str | None = None) -> None:
        self._status = status
        self._upsert_status_attributes()
        await workflow.execute_activity_method(
            CallbackActivities.mirror,
            self._mirror_input(status, reason, outcome),
            start_to_close_timeout=STEP,
            retry_policy=RETRY,
        )

    def _upsert_status_attributes(self) -> None:
        assert self._due is not None
        workflow.upsert_search_attributes(
            [
                sa.CALLBACK_STATUS.value_set(str(self._status)),
                sa.CALLBACK_DUE.value_set(self._due),
                sa.AGENT_ID.value_set(str(self._owner)) if self._owner is not None else sa.AGENT_ID.value_unset(),
            ]
        )

    def _mirror_input(self, status: CallbackStatus, reason: str | None, outcome: str | None) -> MirrorInput:
        assert self._input is not None and self._due is not None
        info = workflow.info()
        return MirrorInput(
            run_key=info.run_id,
            workflow_id=info.workflow_id,
            user_id=self._input.user_id,
            status=str(status),
            due_at=self._due,
            booked_by_agent_id=self._input.booked_by_agent_id,
            owner_agent_id=self._owner,
            source=self._input.source,
            reason=reason,
            outcome=outcome,
        )

    async def _enqueue(self) -> None:
        """Let the queue rules place the customer afresh (the mirror row says whether a callback is due)."""
        assert self._input is not None
        await workflow.execute_activity_method(
            CallbackActivities.requeue,
            EnqueueInput(self._input.user_id),
            start_to_close_timeout=STEP,
            retry_policy=RETRY,
        )

    def _note(self, text: str) -> str:
        return f"{workflow.now().isoformat(timespec='seconds')} {text}"
