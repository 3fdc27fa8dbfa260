"""PacingWorkflow: one per queue (``pacing-<queue>``), started and stopped by supervisors. It dials for
the queue's ready agents under the abandoned-rate governor.

Each tick (``tick_s``) one activity reads the floor (``dialler.pacing.floor.snapshot``: the mode and
maximum ratio the supervisor set, ready agents, pooled calls ringing, agents talking and wrapping up,
the estimates, the 24 h rate and the ceiling); the workflow decides with the pure functions the
simulator runs (``dialler.pacing.pacer.decide``: ``govern`` then ``plan_calls``), and a second
activity places the calls through the call-session path an agent's next call takes. Progressive
calls are each reserved for a ready agent; predictive calls are pooled and the answer claims a ready
agent (``CallSessionWorkflow``, ``POOLED_CALL_PATCH``). The decision — requested and governed mode,
ratio, inputs, rate, reason — is the ``status`` query and the ``PacingMode`` search attribute.

The workflow holds no personal data (queue names, counts, agent ids), reads no clock but
``workflow.now()``, and continues as new every ``ticks_per_run`` ticks, carrying its margin.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.pacing import PacingActivities
    from dialler import search_attributes as sa
    from dialler.pacing.messages import (
        PacingDecision,
        PacingInput,
        PacingSnapshot,
        PacingStatus,
        PlaceCallsInput,
        PlaceCallsResult,
        SnapshotInput,
    )
    from dialler.pacing.pacer import decide, next_margin
    from dialler.pacing.predictive import LOOSEN_UNDER, LOOSEN_UNDER_BEFORE_PATCH

# The marker of the margin loosening whenever the last hour abandoned under the target (it loosened
# only under half of it, and agents' own missed calls kept it near its maximum all day; docs/PACING.md).
# Part of recorded histories: never rename.
MARGIN_LOOSENS_UNDER_TARGET_PATCH = "margin-loosens-under-target"
# A tick's reads and dials are retried briefly: the next tick reads the floor afresh anyway.
RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500), maximum_interval=timedelta(seconds=5), maximum_attempts=3
)


@workflow.defn
class PacingWorkflow:
    @workflow.init
    def __init__(self, input: PacingInput) -> None:
        self._queue = input.queue
        self._stopping = False
        self._wake = False
        self._ticks = 0
        self._decision: PacingDecision | None = None
        self._placed: PlaceCallsResult | None = None
        self._search_mode: str | None = None
        self._margin = input.margin  # predictive's safety margin, adapted by the governor
        self._margin_at: datetime | None = input.margin_adapted_at

    @workflow.run
    async def run(self, input: PacingInput) -> PacingStatus:
        self._margin = input.margin
        self._margin_at = input.margin_adapted_at or workflow.now()
        ticks_this_run = 0
        while not self._stopping:
            try:
                await self._tick(input)
            except ActivityError as exc:
                # A store that did not answer for a tick: no call is placed, and the next tick reads
                # the floor afresh. The pacer never stops by itself.
                workflow.logger.warning("pacing tick %s skipped: %s", self._ticks, type(exc.cause).__name__)
            self._ticks += 1
            ticks_this_run += 1
            if ticks_this_run >= input.ticks_per_run or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._stopping:
                    workflow.continue_as_new(replace(input, margin=self._margin, margin_adapted_at=self._margin_at))
            self._wake = False
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._stopping or self._wake, timeout=timedelta(seconds=input.tick_s)
                )
        workflow.upsert_search_attributes([sa.PACING_MODE.value_set("stopped")])
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    async def _tick(self, input: PacingInput) -> None:
        """Read the floor, decide, place: one tick."""
        timeout = timedelta(seconds=input.activity_timeout_s)
        snapshot: PacingSnapshot = await workflow.execute_activity_method(
            PacingActivities.pacing_snapshot,
            SnapshotInput(input.queue),
            start_to_close_timeout=timeout,
            retry_policy=RETRY,
        )
        if workflow.now() - (self._margin_at or workflow.now()) >= timedelta(seconds=input.margin_every_s):
            loosens_under_target = workflow.patched(MARGIN_LOOSENS_UNDER_TARGET_PATCH)
            loosen_under = LOOSEN_UNDER if loosens_under_target else LOOSEN_UNDER_BEFORE_PATCH
            self._margin = next_margin(snapshot, margin=self._margin, loosen_under=loosen_under)
            self._margin_at = workflow.now()
        decision = decide(snapshot, margin=self._margin)
        self._record(decision)
        if decision.calls and not self._stopping:
            self._placed = await workflow.execute_activity_method(
                PacingActivities.place_paced_calls,
                PlaceCallsInput(
                    queue=input.queue,
                    key=f"{workflow.info().workflow_id}:{workflow.info().run_id}:{self._ticks}",
                    agent_ids=decision.reserved_for,
                    pooled=decision.pooled,
                ),
                start_to_close_timeout=timeout,
                retry_policy=RETRY,
            )

    def _record(self, decision: PacingDecision) -> None:
        self._decision = decision
        shown = "paused" if decision.paused else decision.governed
        if shown != self._search_mode:  # one event per change, not per tick
            self._search_mode = shown
            workflow.upsert_search_attributes([sa.PACING_MODE.value_set(shown), sa.QUEUE_TYPE.value_set(self._queue)])

    @workflow.signal
    def stop(self) -> None:
        """Stop placing calls; calls already placed go on in their own sessions."""
        self._stopping = True

    @workflow.signal
    def settings_changed(self) -> None:
        """The supervisor changed the queue's mode, ceiling or ratio: decide again now, not at the next tick."""
        self._wake = True

    @workflow.query
    def status(self) -> PacingStatus:
        return PacingStatus(
            queue=self._queue,
            running=not self._stopping,
            decision=self._decision,
            ticks=self._ticks,
            last_placed=self._placed,
        )
