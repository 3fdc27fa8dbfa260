"""Which change records are news (``dialler.cdc.apply.fresh_records``), against the real Redis: a
record older than, or the same as, one applied before is not; a redelivered record within one batch
is news once (the consumer counts and converts each change once)."""

from __future__ import annotations

from dialler.cdc.apply import fresh_records, remember_versions
from dialler.runtime import Stores
from tests.support.change_records import change


async def test_a_record_repeated_within_a_batch_is_news_once_and_later_changes_of_the_row_still_are(
    stores: Stores,
) -> None:
    prefix = stores.settings.redis_prefix
    first, again, later, other = change(1, 100), change(1, 100), change(1, 200), change(2, 100)

    fresh = await fresh_records(stores.redis, prefix, [first, again, later, other, other])

    assert fresh == [first, later, other]


async def test_a_record_not_newer_than_the_one_applied_is_not_news(stores: Stores) -> None:
    prefix = stores.settings.redis_prefix
    await remember_versions(stores.redis, prefix, [change(1, 200)])

    fresh = await fresh_records(stores.redis, prefix, [change(1, 100), change(1, 200), change(1, 300)])

    assert [r.log_pos for r in fresh] == [300]
