"""What the worker runs: every workflow class and every activity method, in one list each, and the
schedules it keeps in place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import WorkflowIDConflictPolicy

from activities.callbacks import CallbackActivities
from activities.calls import CallActivities
from activities.cdc import CdcActivities
from activities.erasure import ErasureActivities
from activities.inbound_call import InboundCallActivities
from activities.inbound_sms import InboundSmsActivities
from activities.pacing import PacingActivities
from activities.queues import QueueActivities
from activities.recordings import RecordingActivities
from activities.reports import ReportActivities
from activities.retention import RetentionActivities
from activities.sms import SmsActivities
from dialler.cdc.messages import IngestInput, ingest_workflow_id
from dialler.config import Settings
from dialler.customers.retention import RetentionInput
from dialler.integrations.sqs import ensure_cdc_queues
from dialler.integrations.twilio import Telephony
from dialler.queues.rebuild import RebuildInput
from dialler.queues.rebuild_pool import RebuildPool
from dialler.recordings.messages import PurgeInput
from dialler.runtime import Stores
from workflows.call_session import CallSessionWorkflow
from workflows.callback import CallbackWorkflow
from workflows.cdc_ingest import CdcIngestWorkflow
from workflows.erasure import ErasureWorkflow
from workflows.inbound_call import InboundCallWorkflow
from workflows.inbound_sms import InboundSmsWorkflow
from workflows.magic_link import MagicLinkWorkflow
from workflows.pacing import PacingWorkflow
from workflows.queue_depth import QueueDepthSampleWorkflow
from workflows.queue_rebuild import QueueRebuildWorkflow
from workflows.recording_retention import RecordingRetentionWorkflow
from workflows.report_rollup import ReportRollupWorkflow
from workflows.retention import RetentionWorkflow
from workflows.sms import SendSmsWorkflow

log = logging.getLogger("dialler.worker")
REBUILD_SCHEDULE_ID = "queue-rebuild"
DEPTH_SCHEDULE_ID = "queue-depth-sample"
DEPTH_SAMPLE_EVERY = timedelta(minutes=1)
RETENTION_SCHEDULE_ID = "recording-retention"
PURGE_SCHEDULE_ID = "retention-purge"
ROLLUP_SCHEDULE_ID = "report-rollup"
ROLLUP_EVERY = timedelta(hours=1)


def workflows() -> Sequence[type]:
    return [
        QueueRebuildWorkflow,
        CallSessionWorkflow,
        CallbackWorkflow,
        CdcIngestWorkflow,
        SendSmsWorkflow,
        MagicLinkWorkflow,
        InboundSmsWorkflow,
        InboundCallWorkflow,
        QueueDepthSampleWorkflow,
        RecordingRetentionWorkflow,
        RetentionWorkflow,
        ErasureWorkflow,
        ReportRollupWorkflow,
        PacingWorkflow,
    ]


def activities_for(
    stores: Stores, client: Client, telephony: Telephony, rebuild_pool: RebuildPool | None = None
) -> Sequence[Callable[..., Any]]:
    queues = QueueActivities(stores, rebuild_pool)
    calls = CallActivities(stores, telephony)
    callbacks = CallbackActivities(stores, client)
    sms = SmsActivities(stores, telephony)
    cdc = CdcActivities(stores)
    inbound = InboundSmsActivities(stores)
    returned = InboundCallActivities(stores)
    reports = ReportActivities(stores)
    recordings = RecordingActivities(stores)
    retention = RetentionActivities(stores)
    erasure = ErasureActivities(stores)
    pacing = PacingActivities(stores, client)
    return [
        queues.plan_rebuild,
        queues.stage_range,
        queues.swap_rebuild,
        queues.recompute_users,
        queues.record_rebuild,
        calls.open_session,
        calls.place_call,
        calls.record_progress,
        calls.renew_lease,
        calls.set_presence,
        calls.claimed_agent,
        calls.finish_session,
        calls.take_received_outcome,
        calls.plan_follow_up,
        calls.hangup,
        calls.check_call,
        callbacks.prepare,
        callbacks.transition,
        callbacks.mirror,  # mirror, check_due, requeue: for callback histories recorded before prepare
        callbacks.check_due,
        callbacks.requeue,
        callbacks.book,
        callbacks.settle,
        cdc.ingest_batch,
        cdc.dlq_depth,
        sms.send,
        sms.give_up,
        sms.issue_magic_link,
        sms.abandon_magic_link,
        sms.record_magic_link_result,
        inbound.leave_queues,
        inbound.replace_in_queues,
        inbound.open_stop_reviews,
        returned.open_returned_session,
        returned.record_returned_step,
        reports.sample_queue_depth,
        reports.roll_report_days,
        recordings.purge_expired_recordings,
        retention.purge_expired,
        erasure.erase_at_twilio,
        erasure.erase_in_dialler,
        pacing.pacing_snapshot,
        pacing.place_paced_calls,
    ]


def rebuild_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            QueueRebuildWorkflow.run,
            RebuildInput(trigger="schedule"),
            id="queue-rebuild-scheduled",
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.queue_rebuild_interval_s))]),
        # A slow rebuild is never run twice at once; the next slot is skipped instead.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def depth_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            QueueDepthSampleWorkflow.run,
            id="queue-depth-sample-scheduled",
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=DEPTH_SAMPLE_EVERY)]),
        # A late sample is skipped, not queued up: the next minute's sample replaces it.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def rollup_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ReportRollupWorkflow.run,
            id="report-rollup-scheduled",
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=ROLLUP_EVERY)]),
        # A long first run (a year of history) is not joined by a second one.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def retention_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RecordingRetentionWorkflow.run,
            PurgeInput(),
            id="recording-retention-scheduled",
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.recording_purge_interval_s))]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def purge_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RetentionWorkflow.run,
            RetentionInput(sms_body_days=settings.retention_sms_body_days, notes_days=settings.retention_notes_days),
            id="retention-purge-scheduled",
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(days=1))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Create the rebuild, queue-depth, report-rollup, recording-retention and retention-purge schedules, or bring
    existing ones to the configured intervals and periods. Idempotent."""
    # The first rebuild and depth sample run now, so a new stack has its queues in seconds, not at the
    # next slot; the purges wait for their interval.
    await _ensure_schedule(client, REBUILD_SCHEDULE_ID, rebuild_schedule(settings), trigger_now=True)
    await _ensure_schedule(client, DEPTH_SCHEDULE_ID, depth_schedule(settings), trigger_now=True)
    # The rollup runs now too: on an existing database its closed days are rolled at once.
    await _ensure_schedule(client, ROLLUP_SCHEDULE_ID, rollup_schedule(settings), trigger_now=True)
    await _ensure_schedule(client, RETENTION_SCHEDULE_ID, retention_schedule(settings), trigger_now=False)
    await _ensure_schedule(client, PURGE_SCHEDULE_ID, purge_schedule(settings), trigger_now=False)


async def _ensure_schedule(client: Client, schedule_id: str, schedule: Schedule, *, trigger_now: bool) -> None:
    try:
        await client.create_schedule(schedule_id, schedule, trigger_immediately=trigger_now)
        log.info("created schedule %s", schedule_id)
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(update)


async def ensure_cdc_ingest(client: Client, settings: Settings) -> None:
    """One consumer per change queue; starting it again while it runs is a no-op."""
    await client.start_workflow(
        CdcIngestWorkflow.run,
        IngestInput(settings.cdc_queue_name),
        id=ingest_workflow_id(settings.cdc_queue_name),
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def on_worker_start(client: Client, settings: Settings) -> None:
    # The schedules are `dialler temporal-setup`'s (workers/temporal_setup.py), run on each release.
    await asyncio.to_thread(ensure_cdc_queues, settings)
    await ensure_cdc_ingest(client, settings)
