"""CdcIngestWorkflow: the long-running consumer of one change-event queue.

A loop of one retryable activity per batch (receive → apply → delete). It continues as new every
few hundred batches, well before its history grows large; only counts pass through the history."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.cdc import CdcActivities
    from dialler.cdc.messages import IngestInput

BATCH_TIMEOUT = timedelta(seconds=60)
# Retried forever with a capped back-off: a replica that lags or a database that blinks must not
# stop the stream; each retry re-reads the same messages (SQS visibility timeout).
RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=10)
)
DLQ_EVERY = 30  # batches between two dead-letter-queue depth readings


@workflow.defn
class CdcIngestWorkflow:
    def __init__(self) -> None:
        self._processed = 0
        self._refused = 0

    @workflow.run
    async def run(self, input: IngestInput) -> None:
        self._processed = input.processed_before
        for batch in range(input.batches_per_run):
            result = await workflow.execute_activity_method(
                CdcActivities.ingest_batch, input, start_to_close_timeout=BATCH_TIMEOUT, retry_policy=RETRY
            )
            self._processed += result.records
            self._refused += result.refused
            if batch % DLQ_EVERY == 0:
                await workflow.execute_activity_method(
                    CdcActivities.dlq_depth, input.queue_name, start_to_close_timeout=BATCH_TIMEOUT, retry_policy=RETRY
                )
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            IngestInput(input.queue_name, input.wait_s, input.batches_per_run, processed_before=self._processed)
        )

    @workflow.query
    def processed(self) -> int:
        return self._processed
