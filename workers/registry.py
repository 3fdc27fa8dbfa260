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
from activities.inbound_sms import InboundSmsActivities
from activities.queues import QueueActivities
from activities.retention import RetentionActivities
from activities.sms import SmsActivities
from dialler.cdc.messages import IngestInput, ingest_workflow_id
from dialler.config import Settings
from dialler.customers.retention import RetentionInput
from dialler.integrations.sqs import ensure_cdc_queues
from dialler.integrations.twilio import Telephony
from dialler.queues.rebuild import RebuildInput
from dialler.queues.rebuild_pool import RebuildPool
from dialler.runtime import Stores
from workflows.call_session import CallSessionWorkflow
from workflows.callback import CallbackWorkflow
from workflows.cdc_ingest import CdcIngestWorkflow
from workflows.inbound_sms import InboundSmsWorkflow
from workflows.magic_link import MagicLinkWorkflow
from workflows.queue_rebuild import QueueRebuildWorkflow
from workflows.retention import RetentionWorkflow
from workflows.sms import SendSmsWorkflow

log = logging.getLogger("dialler.worker")
REBUILD_SCHEDULE_ID = "queue-rebuild"
RETENTION_SCHEDULE_ID = "retention-purge"


def workflows() -> Sequence[type]:
    return [
        QueueRebuildWorkflow,
        CallSessionWorkflow,
        CallbackWorkflow,
        CdcIngestWorkflow,
        SendSmsWorkflow,
        MagicLinkWorkflow,
        InboundSmsWorkflow,
        RetentionWorkflow,
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
    retention = RetentionActivities(stores)
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
        calls.finish_session,
        calls.plan_follow_up,
        calls.hangup,
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
        retention.purge_expired,
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


def retention_schedule(settings: Settings) -> Schedule:
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


async def ensure_retention_schedule(client: Client, settings: Settings) -> None:
    """Create the daily retention purge, or bring an existing one to the configured periods. Idempotent."""
    schedule = retention_schedule(settings)
    try:
        await client.create_schedule(RETENTION_SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:
        await client.get_schedule_handle(RETENTION_SCHEDULE_ID).update(lambda _: ScheduleUpdate(schedule=schedule))


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Create the rebuild schedule, or bring an existing one to the configured interval. Idempotent."""
    schedule = rebuild_schedule(settings)
    try:
        # The first run starts now, so a new stack has its queues in seconds, not at the next slot.
        await client.create_schedule(REBUILD_SCHEDULE_ID, schedule, trigger_immediately=True)
        log.info("created schedule %s every %s s", REBUILD_SCHEDULE_ID, settings.queue_rebuild_interval_s)
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(REBUILD_SCHEDULE_ID).update(update)
    await ensure_retention_schedule(client, settings)


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
    await asyncio.to_thread(ensure_cdc_queues, settings)
    await ensure_schedules(client, settings)
    await ensure_cdc_ingest(client, settings)
