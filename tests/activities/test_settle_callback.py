"""A call that settles a callback marks its copy completed at once, before the call's close re-places
the customer: the chaos run's finding 8 (docs/RELIABILITY.md), where the close put the customer back at
the top of the callbacks queue while the callback's workflow had not yet taken the signal, and the next
agent rang them again seconds after the call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.callbacks import CallbackActivities
from dialler.callbacks.messages import BookCallbackInput, SettleCallbackInput, callback_workflow_id
from dialler.callbacks.models import Callback
from dialler.runtime import Stores
from workflows.callback_client import book_callback


async def mirror(stores: Stores, user_id: int, due: datetime, status: str) -> None:
    """The callback's copy in PostgreSQL, as its workflow would have written it."""
    async with stores.postgres.begin() as conn:
        await conn.execute(
            Callback.__table__.insert().values(
                workflow_id=callback_workflow_id(user_id), workflow_run_key=f"run-{user_id}", user_id=user_id,
                source="call", due_at=due, status=status,
            )
        )  # fmt: skip


async def test_a_settled_callback_is_completed_in_its_copy_before_its_workflow_takes_the_signal(
    stores: Stores, temporal_client: Client
) -> None:
    # The callback's workflow is live, but no worker runs it: it cannot take the completion yet.
    due = datetime.now(UTC) - timedelta(minutes=1)
    booking = BookCallbackInput(user_id=58, due_at=due, booked_by_agent_id=None)
    await book_callback(temporal_client, stores.settings, booking)
    await mirror(stores, 58, due, "due")

    activities = CallbackActivities(stores, temporal_client)
    await ActivityEnvironment().run(activities.settle, SettleCallbackInput(58, "docs_promised", "session-58"))

    async with stores.postgres.connect() as conn:
        row = (await conn.execute(select(Callback.status, Callback.outcome).where(Callback.user_id == 58))).one()
    assert tuple(row) == ("completed", "docs_promised")


async def test_settling_with_no_live_callback_changes_nothing(stores: Stores, temporal_client: Client) -> None:
    due = datetime.now(UTC) - timedelta(days=1)
    await mirror(stores, 59, due, "missed")

    activities = CallbackActivities(stores, temporal_client)
    await ActivityEnvironment().run(activities.settle, SettleCallbackInput(59, "docs_promised", "session-59"))

    async with stores.postgres.connect() as conn:
        assert await conn.scalar(select(Callback.status).where(Callback.user_id == 59)) == "missed"
