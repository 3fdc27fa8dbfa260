"""ErasureWorkflow: a customer's right to erasure (UK GDPR art. 17), carried through to the end even if
Twilio or the database is down for a while. Twilio first (text bodies, recordings past their CMCOB
period), then the dialler's stores, whose audit row records both and what was kept and why. Its
payloads are ids and counts (and encrypted like every other)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.erasure import ErasureActivities
    from dialler.customers.personal_data import ErasureInput, ErasureReport

_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=5))


@workflow.defn
class ErasureWorkflow:
    @workflow.run
    async def run(self, input: ErasureInput) -> ErasureReport:
        at_twilio = await workflow.execute_activity_method(
            ErasureActivities.erase_at_twilio,
            input,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=_RETRY,
        )
        return await workflow.execute_activity_method(
            ErasureActivities.erase_in_dialler,
            args=[input, at_twilio],
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=_RETRY,
        )
