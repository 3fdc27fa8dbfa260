"""The abandoned rate's inputs as PostgreSQL holds them: what counts as abandoned, live and machine,
per queue, over a rolling 24 h; the ceiling stored per queue and never above 3 %."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from dialler import clock
from dialler.pacing import service as pacing
from dialler.pacing.abandon_rate import RateInputs
from dialler.pacing.errors import CeilingAboveOfcomLimit
from dialler.runtime import Stores
from tests.support.pacing import seed_call, seed_calls


async def test_counts_per_queue_over_the_rolling_24_hours(stores: Stores) -> None:
    now = clock.instant()
    await seed_calls(stores, queue="unsigned", at=now - timedelta(hours=23, minutes=59), live=3, abandoned=1)
    await seed_calls(stores, queue="unsigned", at=now - timedelta(hours=24, minutes=1), live=5, abandoned=4)  # gone
    await seed_calls(stores, queue="callbacks", at=now - timedelta(minutes=5), live=2)
    await seed_call(stores, queue="unsigned", at=now - timedelta(hours=1), answered=False, result="no_answer")
    # AMD's verdict, and an agent's voicemail outcome on a call a machine answered: machines, not people.
    await seed_call(stores, queue="unsigned", at=now - timedelta(hours=1), result="voicemail")
    await seed_call(stores, queue="unsigned", at=now - timedelta(hours=1), result="voicemail", disposition="voicemail")
    await seed_call(stores, queue="unsigned", at=now - timedelta(hours=1), result="none", disposition="voicemail")

    found = await pacing.rate_inputs(stores.postgres, now=now, amd_on=True)

    assert found["unsigned"] == RateInputs(abandoned=1, live_answered=3, machine=3, amd_on=True)
    assert found["callbacks"] == RateInputs(abandoned=0, live_answered=2, machine=0, amd_on=True)
    assert found["outstanding_requests"] == RateInputs(abandoned=0, live_answered=0, machine=0, amd_on=True)
    # Two minutes on, the drop of 23 h 59 ago has left the window.
    later = await pacing.rate_inputs(stores.postgres, now=now + timedelta(minutes=2), amd_on=True)
    assert later["unsigned"].abandoned == 0


async def test_verdicts_use_each_queues_ceiling_default_1_percent(stores: Stores) -> None:
    now = clock.instant()
    await seed_calls(stores, queue="unsigned", at=now - timedelta(hours=2), live=49, abandoned=1)  # 2 %
    await seed_calls(stores, queue="callbacks", at=now - timedelta(hours=2), live=49, abandoned=1)
    async with stores.sessions() as session:
        await pacing.set_ceiling(session, queue="callbacks", ceiling="0.03", agent_id=None, now=now)
        await session.commit()

    found = await pacing.verdicts(stores.postgres, now=now, amd_on=False)

    assert found["unsigned"].paused and found["unsigned"].ceiling == Decimal("0.01")
    assert found["unsigned"].reason == "Progressive paused: abandoned rate 2 % ≥ ceiling 1 % (last 24 h)"
    assert not found["callbacks"].paused and found["callbacks"].ceiling == Decimal("0.03")
    assert not found["outstanding_requests"].paused


async def test_a_ceiling_above_3_percent_is_never_stored(stores: Stores) -> None:
    now = clock.instant()
    async with stores.sessions() as session:
        with pytest.raises(CeilingAboveOfcomLimit):
            await pacing.set_ceiling(session, queue="unsigned", ceiling=0.031, agent_id=None, now=now)
    assert (await pacing.ceilings(stores.postgres))["unsigned"] == Decimal("0.01")
    # The database refuses it too, whoever writes.
    with pytest.raises(IntegrityError):
        async with stores.postgres.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO queue_settings (queue, abandon_rate_ceiling, updated_at)"
                    " VALUES ('unsigned', 0.05, now())"
                )
            )
