"""The bare call-session shape of bench/engine_ceiling.py, in a module of its own: the SDK sandbox
re-imports a workflow's module for every run, so it must import nothing but temporalio."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn
async def step(n: int) -> int:
    return n + 1


@workflow.defn
class BareSession:
    def __init__(self) -> None:
        self.dialled = False
        self.outcome: str | None = None

    @workflow.run
    async def run(self, local: bool) -> str:
        await workflow.wait_condition(lambda: self.dialled)
        for n in range(3):
            if local:
                await workflow.execute_local_activity(step, n, start_to_close_timeout=timedelta(seconds=10))
            else:
                await workflow.execute_activity(step, n, start_to_close_timeout=timedelta(seconds=10))
        await workflow.wait_condition(lambda: self.outcome is not None)
        return self.outcome or ""

    @workflow.signal
    def dial(self) -> None:
        self.dialled = True

    @workflow.update
    def submit_outcome(self, disposition: str) -> str:
        self.outcome = disposition
        return disposition

    @submit_outcome.validator
    def _check(self, disposition: str) -> None:
        if not disposition:
            raise ValueError("a disposition is required")
