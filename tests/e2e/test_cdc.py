"""Change data capture end to end: MariaDB row binlog → publisher → SQS (moto) → CdcIngestWorkflow on
the real worker → Redis queues."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from api.routes.cdc import cdc_status
from devstack.seed import seed_replica
from dialler.cdc.publisher import Publisher
from dialler.cdc.records import to_dms_record
from dialler.integrations.sqs import ensure_cdc_queues
from dialler.queues.rebuild import RebuildInput, recompute
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.live_api import eventually
from tests.support.proxy import CuttableProxy
from tests.support.publisher import options, running
from workers.registry import ensure_cdc_ingest
from workers.worker import build_worker
from workflows.queue_rebuild import QueueRebuildWorkflow

pytestmark = pytest.mark.e2e


async def prepared(stores: Stores, replica_url: str, users: int = 200) -> None:
    await seed_replica(replica_url, users=users, seed=99)
    await recompute(stores, queue_engine(stores), list(range(1, users + 1)))
    queue_url = ensure_cdc_queues(stores.settings)
    # Redeliveries within a second, so that a poison message reaches the DLQ quickly in a test.
    stores.sqs().set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "1"})


async def queue_of(stores: Stores, user_id: int) -> str | None:
    position = await queue_engine(stores).position(user_id)
    return position[0] if position else None


async def find(replica: AsyncEngine, sql: str) -> int:
    async with replica.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


UNSIGNED_WITH_PENDING = """
SELECT u.id FROM users u JOIN claims c ON c.user_id = u.id AND c.deleted_at IS NULL
  AND c.status IN ('new','documents_required','in_progress','submitted_to_lender')
JOIN claim_requirements r ON r.claim_id = c.id AND r.status = 'PENDING' AND r.deleted_at IS NULL
WHERE u.current_signature_file_id IS NULL AND u.deleted_at IS NULL AND u.is_enabled = 1 AND u.status = 'active'
ORDER BY u.id LIMIT 1
"""


async def test_signing_moves_a_customer_and_a_new_requirement_adds_one(
    stores: Stores, replica_url: str, replica_writer: AsyncEngine, temporal_client: Client, worker: Worker
) -> None:
    await prepared(stores, replica_url)
    signer = await find(stores.replica, UNSIGNED_WITH_PENDING)
    assert await queue_of(stores, signer) == "unsigned"
    async with running(Publisher(stores.settings, postgres=stores.postgres, redis=stores.redis, options=options())):
        await ensure_cdc_ingest(temporal_client, stores.settings)

        async with replica_writer.begin() as conn:  # Mr Shah signs in the portal
            await conn.execute(
                text("UPDATE users SET current_signature_file_id = 777, updated_at = NOW(6) WHERE id = :id"),
                {"id": signer},
            )
        await eventually(lambda: _in(stores, signer, "outstanding_requests"), within=10)

        # A signed customer with nothing to chase gets a new pending requirement: they enter the queue.
        async with replica_writer.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE claim_requirements SET status = 'COMPLETED', updated_at = NOW(6) WHERE claim_id IN "
                    "(SELECT id FROM claims WHERE user_id = :id)"
                ),
                {"id": signer},
            )
        await eventually(lambda: _out(stores, signer), within=10)
        async with replica_writer.begin() as conn:
            claim = (
                await conn.execute(
                    text(
                        "SELECT id FROM claims WHERE user_id = :id AND deleted_at IS NULL AND status = 'in_progress' "
                        "UNION SELECT id FROM claims WHERE user_id = :id AND deleted_at IS NULL "
                        "AND status IN ('new','documents_required','submitted_to_lender') LIMIT 1"
                    ),
                    {"id": signer},
                )
            ).scalar_one()
            await conn.execute(
                text(
                    "INSERT INTO claim_requirements (claim_id, type, status, reason, created_at, updated_at) "
                    "VALUES (:c, 'bank_statement', 'PENDING', 'Statement for 2019', NOW(), NOW())"
                ),
                {"c": claim},
            )
        await eventually(lambda: _in(stores, signer, "outstanding_requests"), within=10)


async def _in(stores: Stores, user_id: int, queue: str) -> bool:
    return await queue_of(stores, user_id) == queue


async def _out(stores: Stores, user_id: int) -> bool:
    return await queue_of(stores, user_id) is None


async def test_duplicated_and_reordered_messages_leave_the_same_state_and_poison_goes_to_the_dlq(
    stores: Stores, replica_url: str, replica_writer: AsyncEngine, temporal_client: Client, worker: Worker
) -> None:
    await prepared(stores, replica_url)
    settings = stores.settings
    signer = await find(stores.replica, UNSIGNED_WITH_PENDING)
    async with replica_writer.begin() as conn:  # the change happened; its events arrive oddly
        await conn.execute(
            text("UPDATE users SET current_signature_file_id = 5, updated_at = '2026-11-28 10:00:05' WHERE id = :id"),
            {"id": signer},
        )
    now = datetime.now(UTC)

    def user_record(signature: int | None, updated: str, pos: int) -> dict:
        return to_dms_record(
            schema="claims_app",
            table="users",
            operation="update",
            committed_at=now,
            log_file="binlog.000001",
            log_pos=pos,
            data={"id": signer, "current_signature_file_id": signature, "updated_at": updated},
        )

    newer, older = user_record(5, "2026-11-28 10:00:05", 900), user_record(None, "2026-11-28 10:00:01", 500)
    sqs = stores.sqs()
    url = sqs.get_queue_url(QueueName=settings.cdc_queue_name)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps([newer]))
    sqs.send_message(QueueUrl=url, MessageBody="{not json")  # poison
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(older))  # late, older: must not win
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps([newer, newer]))  # duplicate

    await ensure_cdc_ingest(temporal_client, settings)

    await eventually(lambda: _in(stores, signer, "outstanding_requests"), within=10)
    dlq = sqs.get_queue_url(QueueName=settings.cdc_dlq_name)["QueueUrl"]

    async def poison_in_dlq() -> bool:
        attributes = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
        return attributes["Attributes"]["ApproximateNumberOfMessages"] == "1"

    await eventually(poison_in_dlq, within=20)
    later = await find(stores.replica, UNSIGNED_WITH_PENDING)  # the stream goes on after the poison
    async with replica_writer.begin() as conn:
        await conn.execute(
            text("UPDATE users SET deleted_at = NOW(), updated_at = NOW(6) WHERE id = :id"), {"id": later}
        )
    sqs.send_message(
        QueueUrl=url,
        MessageBody=json.dumps(
            to_dms_record(
                schema="claims_app",
                table="users",
                operation="update",
                committed_at=datetime.now(UTC),
                data={"id": later, "deleted_at": "2026-11-28 10:00:09", "updated_at": "2099-01-01 00:00:00"},
            )
        ),
    )
    # The replica is behind that change (updated_at in the future): the batch waits, it is not applied
    # to stale data; once the replica has it, the customer leaves.
    async with replica_writer.begin() as conn:
        await conn.execute(text("UPDATE users SET updated_at = '2099-01-01 00:00:00' WHERE id = :id"), {"id": later})
    await eventually(lambda: _out(stores, later), within=15)
    assert await queue_of(stores, signer) == "outstanding_requests"


async def test_killing_publisher_and_worker_mid_stream_ends_with_zero_drift(
    stores: Stores, replica_url: str, replica_writer: AsyncEngine, temporal_client: Client, telephony
) -> None:  # type: ignore[no-untyped-def]
    await prepared(stores, replica_url, users=300)
    settings = stores.settings
    opts = options()
    task_queue = settings.temporal_task_queue

    async def burst(first: int, last: int) -> None:
        for user_id in range(first, last):
            async with replica_writer.begin() as conn:
                await conn.execute(
                    text(
                        "UPDATE users SET current_signature_file_id = IF(current_signature_file_id IS NULL, :s, NULL),"
                        " updated_at = NOW(6) WHERE id = :id"
                    ),
                    {"id": user_id, "s": 1000 + user_id},
                )

    async with build_worker(temporal_client, stores, telephony, task_queue=task_queue):
        await ensure_cdc_ingest(temporal_client, settings)
        async with running(Publisher(settings, postgres=stores.postgres, redis=stores.redis, options=opts)):
            await burst(1, 60)
        await burst(60, 120)  # publisher down: these wait in the binlog
    await burst(120, 160)  # publisher and worker down
    publisher = Publisher(settings, postgres=stores.postgres, redis=stores.redis, options=opts)
    async with build_worker(temporal_client, stores, telephony, task_queue=task_queue), running(publisher):
        if True:  # noqa: SIM108 (keeps the drain check visibly inside the running stack)
            await burst(160, 200)

            async def drained() -> bool:
                attributes = stores.sqs().get_queue_attributes(
                    QueueUrl=stores.sqs().get_queue_url(QueueName=settings.cdc_queue_name)["QueueUrl"],
                    AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                )["Attributes"]
                return (
                    attributes["ApproximateNumberOfMessages"] == "0"
                    and attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
                )

            await asyncio.sleep(1)
            await eventually(drained, within=30)
            report = await temporal_client.execute_workflow(
                QueueRebuildWorkflow.run,
                RebuildInput(trigger="test", chunk_size=100),
                id=f"queue-rebuild-{uuid.uuid4().hex[:8]}",
                task_queue=task_queue,
            )
    assert report.drift_total == 0, report.drift


# --- transient is not poison -----------------------------------------------------------------------


UNSIGNED_WITH_PENDING_3 = UNSIGNED_WITH_PENDING.replace("LIMIT 1", "LIMIT 3")


async def _sign(replica_writer: AsyncEngine, user_id: int, signature: int, updated: str) -> dict:
    """Mr X signs in the portal (on the replica), and the change event that says so."""
    async with replica_writer.begin() as conn:
        await conn.execute(
            text("UPDATE users SET current_signature_file_id = :s, updated_at = :u WHERE id = :id"),
            {"id": user_id, "s": signature, "u": updated},
        )
    return to_dms_record(
        schema="claims_app",
        table="users",
        operation="update",
        committed_at=datetime.now(UTC),
        log_file="binlog.000001",
        log_pos=1000 + user_id,
        data={"id": user_id, "current_signature_file_id": signature, "updated_at": updated},
    )


def _queue_counts(stores: Stores, name: str) -> tuple[int, int]:
    sqs = stores.sqs()
    attributes = sqs.get_queue_attributes(
        QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


async def test_a_replica_outage_longer_than_the_redrive_sends_no_valid_event_to_the_dlq(
    stores: Stores, replica_url: str, replica_writer: AsyncEngine, temporal_client: Client, telephony
) -> None:  # type: ignore[no-untyped-def]
    """Visibility 1 s × maxReceiveCount 2: an outage of a few seconds used to push every event
    received meanwhile into the DLQ (each failed receive counted). Now nothing is received while the
    replica is down, and every event is applied once it is back."""
    await prepared(stores, replica_url)
    settings = stores.settings
    async with stores.replica.connect() as conn:
        signers = [int(row[0]) for row in (await conn.execute(text(UNSIGNED_WITH_PENDING_3))).all()]
    assert len(signers) == 3
    url = make_url(settings.replica_url)
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 3306)
    await proxy.start()
    via_proxy = settings.model_copy(
        update={"replica_url": url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)}
    )
    worker_stores = Stores.open(via_proxy)
    sqs = stores.sqs()
    queue = sqs.get_queue_url(QueueName=settings.cdc_queue_name)["QueueUrl"]
    try:
        async with build_worker(temporal_client, worker_stores, telephony, task_queue=settings.temporal_task_queue):
            await ensure_cdc_ingest(temporal_client, settings)
            await eventually(lambda: _in(stores, signers[0], "unsigned"), within=5)
            await proxy.cut()  # the replica is unreachable for the worker
            for i, user_id in enumerate(signers):
                record = await _sign(replica_writer, user_id, 900 + i, f"2026-11-28 10:00:0{i}")
                sqs.send_message(QueueUrl=queue, MessageBody=json.dumps([record]))
            await asyncio.sleep(8)  # 4× visibility × maxReceiveCount
            assert _queue_counts(stores, settings.cdc_dlq_name) == (0, 0)
            assert all([await _in(stores, user_id, "unsigned") for user_id in signers])  # not applied yet
            await proxy.restore()
            for user_id in signers:
                await eventually(lambda u=user_id: _in(stores, u, "outstanding_requests"), within=30)
            await eventually(lambda: _drained(stores), within=15)
    finally:
        await proxy.close()
        await worker_stores.close()
    assert _queue_counts(stores, settings.cdc_dlq_name) == (0, 0)


async def _drained(stores: Stores) -> bool:
    return _queue_counts(stores, stores.settings.cdc_queue_name) == (0, 0)


async def test_one_malformed_record_goes_to_the_dlq_alone_with_its_reason_and_its_neighbours_apply(
    stores: Stores, replica_url: str, replica_writer: AsyncEngine, temporal_client: Client, worker: Worker
) -> None:
    await prepared(stores, replica_url)
    settings = stores.settings
    async with stores.replica.connect() as conn:
        first, second = (int(row[0]) for row in (await conn.execute(text(UNSIGNED_WITH_PENDING_3))).all()[:2])
    before = await _sign(replica_writer, first, 801, "2026-11-28 10:00:01")
    after = await _sign(replica_writer, second, 802, "2026-11-28 10:00:02")
    malformed = to_dms_record(
        schema="claims_app",
        table="claims",
        operation="update",
        committed_at=datetime.now(UTC),
        data={"id": 424242, "status": "in_progress"},  # a claims change without its user_id
    )
    sqs = stores.sqs()
    queue = sqs.get_queue_url(QueueName=settings.cdc_queue_name)["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps([before, malformed, after]))

    await ensure_cdc_ingest(temporal_client, settings)

    await eventually(lambda: _in(stores, first, "outstanding_requests"), within=15)
    await eventually(lambda: _in(stores, second, "outstanding_requests"), within=15)
    dlq = sqs.get_queue_url(QueueName=settings.cdc_dlq_name)["QueueUrl"]
    letters = sqs.receive_message(
        QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=5
    )
    assert len(letters.get("Messages", [])) == 1
    letter = letters["Messages"][0]
    assert json.loads(letter["Body"]) == [malformed]  # the record alone: it can be redriven as it is
    reason = letter["MessageAttributes"]["reason"]["StringValue"]
    assert "user_id" in reason
    # Dead-lettered by the consumer at once, not after maxReceiveCount redeliveries.
    await eventually(lambda: _drained(stores), within=5)
    status = await cdc_status(stores)
    assert status.messages_refused == 1 and status.dlq_last_reason == reason
