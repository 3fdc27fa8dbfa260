"""The binlog publisher against real services: MariaDB with a row binlog → publisher → SQS (moto),
with its checkpoint in PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from devstack import services
from dialler.cdc.publisher import (
    BinlogPosition,
    Publisher,
    PublisherError,
    PublisherOptions,
    binlog_problems,
    load_checkpoint,
    publisher_sqs_client,
    save_checkpoint,
    status_key,
)
from dialler.cdc.publisher.checkpoint import Checkpoint, load_checkpoint_record
from dialler.cdc.records import Operation, parse_message_body, position_key
from dialler.config import PROJECT_ROOT, Settings
from dialler.integrations.sqs import ensure_cdc_queues
from dialler.runtime import Stores
from tests.support.publisher import options, running
from workers.publisher import rebuild_requester

Record = dict[str, Any]
TS = "2026-01-02 03:04:05"
LATER = "2026-01-02 03:05:00"


# --- helpers ---------------------------------------------------------------------------------------


class CdcQueue:
    """The change queue, read the way a test wants it: whole bodies, deleted once read."""

    def __init__(self, settings: Settings) -> None:
        self.client = publisher_sqs_client(settings)
        self.url = ensure_cdc_queues(settings, self.client)

    def _receive(self) -> list[str]:
        messages = self.client.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", [])
        if messages:
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            self.client.delete_message_batch(QueueUrl=self.url, Entries=entries)
        return [m["Body"] for m in messages]

    async def drain(
        self, until: Callable[[list[Record]], bool] | None = None, *, within: float = 20, quiet: float = 0.0
    ) -> list[list[Record]]:
        """Bodies (each a list of records) until ``until(all records)`` holds and then nothing more
        arrives for ``quiet`` seconds (moto answers slowly when messages wait: keep polling while any come)."""
        bodies: list[list[Record]] = []
        deadline = time.monotonic() + within
        satisfied = until is None
        last_arrival = time.monotonic()
        while True:
            received = await asyncio.to_thread(self._receive)
            for body in received:
                decoded = json.loads(body)
                bodies.append(decoded if isinstance(decoded, list) else [decoded])
            if received:
                last_arrival = time.monotonic()
            if not satisfied and until is not None and until(flat(bodies)):
                satisfied, last_arrival = True, time.monotonic()
            if satisfied and not received and time.monotonic() - last_arrival >= quiet:
                return bodies
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; received {len(flat(bodies))} records: {summary(flat(bodies))[:40]}")
            if not received:
                await asyncio.sleep(0.05)


def flat(bodies: list[list[Record]]) -> list[Record]:
    return [record for body in bodies for record in body]


def key(record: Record) -> tuple[str, str, int]:
    meta = record["metadata"]
    return meta["table-name"], meta["operation"], record["data"]["id"]


def summary(records: list[Record]) -> list[tuple[str, str, int]]:
    return [key(r) for r in records]


def position(record: Record) -> BinlogPosition:
    return BinlogPosition(record["metadata"]["log-file"], record["metadata"]["log-position"])


async def execute(engine: AsyncEngine, *statements: str, **params: Any) -> None:
    """The statements in one transaction, as the main app would write them."""
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement), params)


def insert_user(user_id: int, status: str = "active") -> str:
    return (
        "INSERT INTO users (id, first_name, last_name, email_address, phone_number, date_of_birth, postcode, "
        "status, created_at, updated_at) "
        f"VALUES ({user_id}, 'Ada', 'Lovelace', 'ada@example.org', '07700 900123', '1980-02-29', 'M1 1AA', "
        f"'{status}', '{TS}', '{TS}')"
    )


async def wait_until(check: Callable[[], Any], *, within: float = 10, what: str = "condition") -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class SwitchableSqs:
    """An SQS client that can be pointed at a dead endpoint mid-run."""

    def __init__(self, settings: Settings) -> None:
        self.good = publisher_sqs_client(settings)
        self.dead = publisher_sqs_client(settings, endpoint_url=f"http://127.0.0.1:{services.free_port()}")
        self.broken = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dead if self.broken else self.good, name)


# --- record shapes ---------------------------------------------------------------------------------


async def test_inserts_updates_and_deletes_become_dms_records(
    settings: Settings, stores: Stores, replica_writer: AsyncEngine, replica_url: str
) -> None:
    queue = CdcQueue(settings)
    schema = make_url(replica_url).database
    before_start = datetime.now(UTC) - timedelta(seconds=1)

    async with running(Publisher(settings, postgres=stores.postgres, redis=stores.redis, options=options())):
        await execute(
            replica_writer,
            insert_user(1),
            f"INSERT INTO claims (id, user_id, lender, type, status, created_at, updated_at) "
            f"VALUES (10, 1, 'Northern Finance', 'motor_finance', 'new', '{TS}', '{TS}')",
            f"INSERT INTO claim_requirements (id, claim_id, type, status, reason, created_at, updated_at) "
            f"VALUES (100, 10, 'id_document', 'PENDING', 'Passport scan', '{TS}', '{TS}')",
        )
        await execute(
            replica_writer,
            f"UPDATE users SET current_signature_file_id = 991, updated_at = '{LATER}' WHERE id = 1",
            f"UPDATE claims SET status = 'submitted_to_lender', updated_at = '{LATER}' WHERE id = 10",
            f"UPDATE claim_requirements SET status = 'COMPLETED', updated_at = '{LATER}' WHERE id = 100",
        )
        await execute(
            replica_writer,
            "DELETE FROM claim_requirements WHERE id = 100",
            "DELETE FROM claims WHERE id = 10",
            "DELETE FROM users WHERE id = 1",
        )
        bodies = await queue.drain(lambda records: len(records) >= 9, quiet=0.3)

    records = sorted(flat(bodies), key=position)
    assert summary(records) == [
        ("users", "insert", 1),
        ("claims", "insert", 10),
        ("claim_requirements", "insert", 100),
        ("users", "update", 1),
        ("claims", "update", 10),
        ("claim_requirements", "update", 100),
        ("claim_requirements", "delete", 100),
        ("claims", "delete", 10),
        ("users", "delete", 1),
    ]
    by_key = {key(r)[:2]: r for r in records}

    # Keys, versions and changed column names only: no name, phone, email, date of birth, postcode or
    # free text leaves the database (records.EVENT_COLUMNS); the consumer reads the replica's row.
    assert by_key["users", "insert"]["data"] == {"id": 1, "updated_at": TS}
    assert "before-image" not in by_key["users", "insert"]
    assert by_key["users", "update"]["data"] == {"id": 1, "updated_at": LATER}
    assert by_key["users", "update"]["before-image"] == {"id": 1}
    assert by_key["users", "update"]["metadata"]["changed-columns"] == ["current_signature_file_id", "updated_at"]
    assert by_key["users", "delete"]["data"] == {"id": 1, "updated_at": LATER}
    assert by_key["claims", "update"]["before-image"] == {"id": 10, "user_id": 1}
    assert by_key["claims", "update"]["data"] == {"id": 10, "user_id": 1, "updated_at": LATER}
    assert by_key["claims", "update"]["metadata"]["changed-columns"] == ["status", "updated_at"]
    assert by_key["claim_requirements", "update"]["before-image"] == {"id": 100, "claim_id": 10}
    assert by_key["claim_requirements", "update"]["data"] == {"id": 100, "claim_id": 10, "updated_at": LATER}
    everything = json.dumps(bodies)
    for personal in ("Ada", "Lovelace", "ada@example.org", "07700", "1980-02-29", "M1 1AA", "Passport scan"):
        assert personal not in everything

    for record in records:
        meta = record["metadata"]
        assert meta["record-type"] == "data"
        assert meta["partition-key-type"] == "schema-table"
        assert meta["schema-name"] == schema
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", meta["timestamp"])
        committed = datetime.fromisoformat(meta["timestamp"])
        assert before_start <= committed <= datetime.now(UTC)
        assert re.fullmatch(r"binlog\.\d{6}", meta["log-file"])
    # One transaction id per transaction, increasing; positions strictly increase in binlog order.
    transaction_ids = [r["metadata"]["transaction-id"] for r in records]
    assert len(set(transaction_ids[0:3])) == len(set(transaction_ids[3:6])) == len(set(transaction_ids[6:9])) == 1
    assert transaction_ids[0] < transaction_ids[3] < transaction_ids[6]
    assert [position(r) for r in records] == sorted({position(r) for r in records})

    # The consumer's parser reads what the publisher writes.
    parsed = [change for body in bodies for change in parse_message_body(json.dumps(body))]
    assert sorted((c.table, c.operation, c.id) for c in parsed) == sorted(
        (t, Operation(o), i) for t, o, i in summary(records)
    )
    assert all(position_key(c) == (c.log_file, c.log_pos) and c.log_pos for c in parsed)


async def test_many_records_share_one_message_body(
    settings: Settings, stores: Stores, replica_writer: AsyncEngine
) -> None:
    queue = CdcQueue(settings)

    async with running(Publisher(settings, postgres=stores.postgres, options=options())):
        rows = ", ".join(f"({i}, 'A', 'B', '{TS}', '{TS}')" for i in range(1, 51))
        await execute(
            replica_writer,
            f"INSERT INTO users (id, first_name, last_name, created_at, updated_at) VALUES {rows}",
        )
        for i in range(51, 101):  # fifty single-row transactions, as fast as the writer goes
            await execute(replica_writer, insert_user(i))
        bodies = await queue.drain(lambda records: len(records) >= 100, quiet=0.3)

    assert sorted(key(r)[2] for r in flat(bodies)) == list(range(1, 101))
    assert len(bodies) <= 20, [len(b) for b in bodies]
    assert max(len(b) for b in bodies) >= 50  # the multi-row insert travels as one body


async def test_messages_respect_the_size_and_count_limits(
    settings: Settings, stores: Stores, replica_writer: AsyncEngine
) -> None:
    queue = CdcQueue(settings)
    publisher = Publisher(
        settings, postgres=stores.postgres, options=options(max_message_bytes=4_000, max_message_records=7)
    )

    async with running(publisher):
        await execute(replica_writer, *(insert_user(i) for i in range(1, 61)))  # one transaction of 60 rows
        bodies = await queue.drain(lambda records: len(records) >= 60, quiet=0.3)
        last = max(position(r) for r in flat(bodies))
        checkpoint = await wait_until(
            lambda: _checkpoint_after(stores, publisher, last), what="the checkpoint after the transaction"
        )

    assert sorted(key(r)[2] for r in flat(bodies)) == list(range(1, 61))
    assert all(len(b) <= 7 for b in bodies)
    assert all(len(json.dumps(b, separators=(",", ":"))) <= 4_000 for b in bodies)
    assert checkpoint > last  # after the transaction's XID, not inside it


async def _checkpoint_after(stores: Stores, publisher: Publisher, after: BinlogPosition) -> BinlogPosition | None:
    checkpoint = await load_checkpoint(stores.postgres, publisher.options.checkpoint_name)
    return checkpoint if checkpoint is not None and checkpoint > after else None


# --- what is not published -------------------------------------------------------------------------


async def test_other_tables_and_databases_are_not_published(
    settings: Settings, stores: Stores, replica_writer: AsyncEngine
) -> None:
    queue = CdcQueue(settings)
    other_db = f"other_{uuid.uuid4().hex[:8]}"
    publisher = Publisher(settings, postgres=stores.postgres, options=options())
    try:
        async with running(publisher):
            await execute(replica_writer, "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT)")
            await execute(replica_writer, f"CREATE DATABASE {other_db}")
            await execute(replica_writer, f"CREATE TABLE {other_db}.users (id INT PRIMARY KEY, first_name VARCHAR(20))")
            await execute(replica_writer, "INSERT INTO notes VALUES (1, 'not ours')")
            await execute(replica_writer, f"INSERT INTO {other_db}.users VALUES (2, 'same table name')")
            await execute(replica_writer, f"UPDATE {other_db}.users SET first_name = 'x'")
            await execute(replica_writer, insert_user(3))

            bodies = await queue.drain(lambda records: len(records) >= 1, quiet=0.5)
            assert summary(flat(bodies)) == [("users", "insert", 3)]

            # Traffic on other tables only still moves the checkpoint (no replay of it on restart).
            sentinel = position(flat(bodies)[0])
            await wait_until(lambda: _checkpoint_after(stores, publisher, sentinel), what="first checkpoint")
            before = await load_checkpoint(stores.postgres, publisher.options.checkpoint_name)
            assert before is not None
            for i in range(10, 15):
                await execute(replica_writer, f"INSERT INTO notes VALUES ({i}, 'still not ours')")
            await wait_until(lambda: _checkpoint_after(stores, publisher, before), what="checkpoint over other tables")
            assert await queue.drain(quiet=0.3) == []
    finally:
        await execute(replica_writer, f"DROP DATABASE IF EXISTS {other_db}")


# --- delivery guarantees ---------------------------------------------------------------------------


async def test_checkpoint_moves_only_after_sqs_accepted_the_batch(
    settings: Settings, stores: Stores, replica_writer: AsyncEngine
) -> None:
    queue = CdcQueue(settings)
    sqs = SwitchableSqs(settings)
    opts = options()
    publisher = Publisher(settings, postgres=stores.postgres, sqs=sqs, options=opts)

    async with running(publisher):
        await execute(replica_writer, insert_user(1))
        first = flat(await queue.drain(lambda records: len(records) >= 1))
        accepted = await wait_until(
            lambda: _checkpoint_after(stores, publisher, position(first[0])),
            what="checkpoint after the first send",
        )

        sqs.broken = True
        for i in (2, 3, 4):
            await execute(replica_writer, insert_user(i))
        await wait_until(lambda: publisher.status().send_errors_total >= 2, what="failed sends")
        await asyncio.sleep(0.5)
        assert await load_checkpoint(stores.postgres, opts.checkpoint_name) == accepted
        assert publisher.registry.get_sample_value("dialler_cdc_publisher_send_errors_total") >= 2
        # Stopping while SQS is down gives up after the grace period, without checkpointing.
    assert await load_checkpoint(stores.postgres, opts.checkpoint_name) == accepted
    assert await queue.drain(quiet=0.2) == []

    # The next run resumes from the last accepted batch: the unsent changes are not lost.
    async with running(Publisher(settings, postgres=stores.postgres, options=opts)):
        records = flat(await queue.drain(lambda records: len(records) >= 3, quiet=0.3))
        assert sorted(summary(records)) == [
            ("users", "insert", 2),
            ("users", "insert", 3),
            ("users", "insert", 4),
        ]
        await wait_until(
            lambda: _checkpoint_after(stores, publisher, max(position(r) for r in records)),
            what="checkpoint advance",
        )


async def test_stop_and_crash_mid_stream_lose_nothing_and_resume_from_the_checkpoint(
    settings: Settings, stores: Stores, replica_writer: AsyncEngine
) -> None:
    queue = CdcQueue(settings)
    opts = options()
    total = 600
    written = 0
    expected = {("users", "insert", i) for i in range(1, total + 1)} | {
        ("users", "update", i) for i in range(3, total + 1, 3)
    }

    async def write() -> None:
        nonlocal written
        for i in range(1, total + 1):
            await execute(replica_writer, insert_user(i))
            if i % 3 == 0:
                await execute(replica_writer, f"UPDATE users SET status = 'inactive' WHERE id = {i}")
            written = i
            await asyncio.sleep(0.005)  # a steady stream, so that each run sees part of it

    writer: asyncio.Task[None] | None = None
    try:
        # Run A: stopped gracefully mid-stream. (Without a checkpoint it starts at the binlog's end,
        # so the writer starts after it.)
        async with running(Publisher(settings, postgres=stores.postgres, options=opts)):
            writer = asyncio.create_task(write())
            await wait_until(lambda: written >= total // 4, what="first quarter written")
        stopped_at = await load_checkpoint(stores.postgres, opts.checkpoint_name)
        seen_a = flat(await queue.drain(quiet=0.3))

        # Run B: crashes mid-stream (the task is cancelled; nothing is flushed).
        publisher_b = Publisher(settings, postgres=stores.postgres, options=opts)
        async with running(publisher_b) as task_b:
            await wait_until(
                lambda: written >= total // 2 and publisher_b.status().published_total > 0,
                what="half written",
            )
            task_b.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task_b
        crashed_at = await load_checkpoint(stores.postgres, opts.checkpoint_name)
        seen_b = flat(await queue.drain(quiet=0.3))

        # Run C: to the end.
        async with running(Publisher(settings, postgres=stores.postgres, options=opts)):
            await writer
            seen_c = flat(
                await queue.drain(
                    lambda records: expected <= set(summary(seen_a + seen_b + records)), within=60, quiet=0.3
                )
            )
    finally:
        if writer is not None:
            writer.cancel()

    assert stopped_at is not None and crashed_at is not None
    assert seen_a and seen_b and seen_c
    assert expected <= set(summary(seen_a + seen_b + seen_c))  # every change at least once
    # A graceful stop sends exactly what it checkpoints; each run starts at the previous checkpoint.
    assert max(position(r) for r in seen_a) < stopped_at
    assert min(position(r) for r in seen_b) > stopped_at
    assert min(position(r) for r in seen_c) > crashed_at
    assert len(seen_a) + len(seen_b) + len(seen_c) < 1.5 * len(expected)


async def test_a_stop_completes_when_a_checkpoint_write_turns_its_cancellation_into_an_error(
    settings: Settings, stores: Stores, replica_writer: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel that lands inside a database call can come back as a driver error: the publisher must
    still stop, and still write its final checkpoint."""
    CdcQueue(settings)
    opts = options()
    publisher = Publisher(settings, postgres=stores.postgres, options=opts)
    save = publisher._save_accepted

    async def slow_save_like_a_driver() -> None:
        try:
            await asyncio.sleep(0.3)  # the checkpointer is nearly always inside a write
        except asyncio.CancelledError:
            raise RuntimeError("connection was closed in the middle of operation") from None
        await save()

    monkeypatch.setattr(publisher, "_save_accepted", slow_save_like_a_driver)
    async with running(publisher) as task:
        for i in range(1, 41):
            await execute(replica_writer, insert_user(i))
            await asyncio.sleep(0.02)
        await wait_until(lambda: publisher.status().published_total >= 40, what="all published")
    assert task.done() and not task.cancelled()
    assert await load_checkpoint(stores.postgres, opts.checkpoint_name) is not None


async def _rebuilds_started(client: Client, settings: Settings) -> list[str]:
    query = f"WorkflowType = 'QueueRebuildWorkflow' AND TaskQueue = '{settings.temporal_task_queue}'"
    return [execution.id async for execution in client.list_workflows(query)]


async def test_a_checkpoint_the_server_does_not_have_restarts_capture_at_its_end_and_requests_a_rebuild(
    settings: Settings, stores: Stores, replica_writer: AsyncEngine, temporal_client: Client
) -> None:
    """Binlogs purged or truncated (a file gone, or a position past a file's end): the publisher
    does not stop (it used to exit, and the stack with it); it starts at the binlog's current end,
    says so in one line, counts it, and starts a full queue rebuild."""
    queue = CdcQueue(settings)
    for user_id, lost in enumerate((BinlogPosition("binlog.999999", 4), BinlogPosition("binlog.000001", 2**40)), 1):
        opts = options()
        await save_checkpoint(stores.postgres, opts.checkpoint_name, lost)
        before = set(await _rebuilds_started(temporal_client, settings))
        publisher = Publisher(
            settings, postgres=stores.postgres, options=opts, request_rebuild=rebuild_requester(settings)
        )
        async with running(publisher):
            record = await load_checkpoint_record(stores.postgres, opts.checkpoint_name)
            assert record is not None and record.position != lost
            await execute(replica_writer, insert_user(user_id))
            records = flat(await queue.drain(lambda records: len(records) >= 1))
            assert summary(records) == [("users", "insert", user_id)]
            started = await wait_until(
                functools.partial(_new_rebuilds, temporal_client, settings, before), what="a queue rebuild started"
            )
            assert len(started) == 1 and started[0].startswith("queue-rebuild-cdc-")
            reason = {"reason": "position_gone"}
            assert publisher.registry.get_sample_value("dialler_cdc_publisher_source_resets_total", reason) == 1
        # Started, so no longer owed: the next start does not ask again.
        record = await load_checkpoint_record(stores.postgres, opts.checkpoint_name)
        assert record is not None and record.rebuild_requested is None


async def _new_rebuilds(client: Client, settings: Settings, before: set[str]) -> list[str]:
    return [workflow_id for workflow_id in await _rebuilds_started(client, settings) if workflow_id not in before]


async def test_a_checkpoint_from_another_server_is_not_resumed_and_the_process_stays_up(
    settings: Settings, stores: Stores, replica_writer: AsyncEngine, temporal_client: Client
) -> None:
    """A second fresh clone (or `make clean && make run`, or a re-provisioned replica) meets the
    checkpoint of the server before: same file names, positions that may even fit. The checkpoint
    names its server, so the position is not resumed (it used to fail with "binlog truncated in the
    middle of event" and stop the stack): capture starts at the current end and a rebuild is started."""
    queue = CdcQueue(settings)
    name = f"proc-{uuid.uuid4().hex[:8]}"
    await execute(replica_writer, insert_user(7))  # a real position on this server, before the checkpoint
    here = BinlogPosition(*(await _master_status(replica_writer)))
    await execute(replica_writer, "DELETE FROM users")
    await save_checkpoint(stores.postgres, name, here, source_server="mariadb:another-server")
    env = process_env(
        settings,
        DIALLER_PUBLISHER_CHECKPOINT_NAME=name,
        DIALLER_TEMPORAL_ADDRESS=settings.temporal_address,
        DIALLER_TEMPORAL_NAMESPACE=settings.temporal_namespace,
        DIALLER_TEMPORAL_TASK_QUEUE=settings.temporal_task_queue,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.publisher",
        cwd=PROJECT_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        record = await wait_until(
            lambda: _checkpoint_from_this_server(stores, name), within=30, what="the checkpoint moved to this server"
        )
        assert record.position > here
        started = await wait_until(
            lambda: _new_rebuilds(temporal_client, settings, set()), within=30, what="a queue rebuild started"
        )
        assert len(started) == 1
        await wait_until(lambda: _rebuild_cleared(stores, name), what="the rebuild request cleared")
        # Still up, and publishing from the new start: the DELETE above (before the reset) is not replayed.
        await execute(replica_writer, insert_user(8))
        assert summary(flat(await queue.drain(lambda records: len(records) >= 1))) == [("users", "insert", 8)]
        assert proc.returncode is None
        proc.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(proc.communicate(), 20))[0].decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, output
    resets = [line for line in output.splitlines() if "requesting a full queue rebuild" in line]
    assert len(resets) == 1 and "another MySQL server" in resets[0], output
    assert "Traceback" not in output


async def _master_status(engine: AsyncEngine) -> tuple[str, int]:
    async with engine.connect() as conn:
        row = (await conn.execute(text("SHOW MASTER STATUS"))).first()
    assert row is not None
    return str(row[0]), int(row[1])


async def _checkpoint_from_this_server(stores: Stores, name: str) -> Checkpoint | None:
    record = await load_checkpoint_record(stores.postgres, name)
    if record is None or record.source_server in (None, "mariadb:another-server"):
        return None
    return record


async def _rebuild_cleared(stores: Stores, name: str) -> bool:
    record = await load_checkpoint_record(stores.postgres, name)
    return record is not None and record.rebuild_requested is None


async def test_a_position_the_server_refuses_resets_the_checkpoint_so_the_restart_carries_on(
    settings: Settings, stores: Stores, replica_writer: AsyncEngine
) -> None:
    """A checkpoint written before the source was recorded (no server named), at a position inside
    this server's binlog that is not an event boundary: the issue's "binlog truncated in the middle of
    event". The run fails once, but resets the checkpoint first: the restart does not crash-loop."""
    queue = CdcQueue(settings)
    opts = options()
    file, _ = await _master_status(replica_writer)
    await save_checkpoint(stores.postgres, opts.checkpoint_name, BinlogPosition(file, 5))  # inside the header
    first = Publisher(settings, postgres=stores.postgres, options=opts)
    with pytest.raises(PublisherError, match="binlog position unavailable"):
        await asyncio.wait_for(first.run(asyncio.Event()), 30)
    record = await load_checkpoint_record(stores.postgres, opts.checkpoint_name)
    assert record is not None and record.position != BinlogPosition(file, 5)
    assert record.rebuild_requested is not None and record.source_server is not None
    assert (
        first.registry.get_sample_value("dialler_cdc_publisher_source_resets_total", {"reason": "position_refused"})
        == 1
    )

    async with running(Publisher(settings, postgres=stores.postgres, options=opts)):  # the restart
        await execute(replica_writer, insert_user(3))
        assert summary(flat(await queue.drain(lambda records: len(records) >= 1))) == [("users", "insert", 3)]


async def test_the_checkpoint_names_its_server_and_a_restart_on_the_same_server_resumes(
    settings: Settings, stores: Stores, replica_writer: AsyncEngine
) -> None:
    CdcQueue(settings)
    opts = options()
    async with running(Publisher(settings, postgres=stores.postgres, options=opts)):
        pass
    first = await load_checkpoint_record(stores.postgres, opts.checkpoint_name)
    assert first is not None and first.source_server and first.source_server.startswith("mariadb:")
    publisher = Publisher(settings, postgres=stores.postgres, options=opts)
    async with running(publisher):
        pass
    again = await load_checkpoint_record(stores.postgres, opts.checkpoint_name)
    assert again is not None and again.source_server == first.source_server and again.rebuild_requested is None
    assert (
        publisher.registry.get_sample_value("dialler_cdc_publisher_source_resets_total", {"reason": "other_server"})
        is None
    )


# --- lag and counters ------------------------------------------------------------------------------


async def test_lag_and_counters_in_prometheus_and_redis(
    settings: Settings, stores: Stores, replica_writer: AsyncEngine
) -> None:
    queue = CdcQueue(settings)
    sqs = SwitchableSqs(settings)
    publisher = Publisher(settings, postgres=stores.postgres, redis=stores.redis, sqs=sqs, options=options())

    async with running(publisher):
        for i in range(1, 6):
            await execute(replica_writer, insert_user(i))
        await queue.drain(lambda records: len(records) >= 5)
        status = await wait_until(
            lambda: _redis_status(stores, settings, "published_total", "5"), what="status in Redis"
        )
        assert set(status) >= {
            "last_event_at",
            "lag_s",
            "published_total",
            "updated_at",
            "checkpoint",
            "state",
        }
        assert status["state"] == "running"
        assert abs(datetime.fromisoformat(status["last_event_at"]) - datetime.now(UTC)) < timedelta(seconds=10)
        assert datetime.fromisoformat(status["updated_at"]) > datetime.now(UTC) - timedelta(seconds=2)

        sample = publisher.registry.get_sample_value
        assert sample("dialler_cdc_publisher_records_total") == 5
        assert sample("dialler_cdc_publisher_messages_total") >= 1
        assert sample("dialler_cdc_publisher_last_event_timestamp_seconds") > 0
        assert sample("dialler_cdc_publisher_checkpoint_log_position") > 0
        # Caught up and all sent: no lag.
        await wait_until(lambda: sample("dialler_cdc_publisher_lag_seconds") == 0.0, what="zero lag")

        # Read but not accepted by SQS: the lag grows with the age of what was read.
        sqs.broken = True
        await execute(replica_writer, insert_user(6))
        await asyncio.sleep(1.2)
        assert sample("dialler_cdc_publisher_lag_seconds") >= 1.0
        assert float((await stores.redis.hgetall(status_key(settings)))["lag_s"]) >= 0.9
        sqs.broken = False
        await queue.drain(lambda records: len(records) >= 1)
        await wait_until(lambda: sample("dialler_cdc_publisher_lag_seconds") == 0.0, what="lag back to zero")

    final = await stores.redis.hgetall(status_key(settings))
    assert final["state"] == "stopped" and final["published_total"] == "6"


async def _redis_status(stores: Stores, settings: Settings, field: str, value: str) -> dict[str, str] | None:
    status = await stores.redis.hgetall(status_key(settings))
    return status if status.get(field) == value else None


# --- the process -----------------------------------------------------------------------------------


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DIALLER_POSTGRES_URL": settings.postgres_url,
        "DIALLER_REPLICA_URL": settings.replica_url,
        "DIALLER_REDIS_URL": settings.redis_url,
        "DIALLER_REDIS_PREFIX": settings.redis_prefix,
        "DIALLER_SQS_ENDPOINT_URL": settings.sqs_endpoint_url or "",
        "DIALLER_CDC_QUEUE_NAME": settings.cdc_queue_name,
        "DIALLER_PUBLISHER_METRICS_PORT": "0",
        **extra,
    }


async def test_process_publishes_serves_metrics_and_stops_gracefully_on_sigterm(
    settings: Settings, stores: Stores, replica_writer: AsyncEngine
) -> None:
    queue = CdcQueue(settings)
    name = f"proc-{uuid.uuid4().hex[:8]}"
    port = services.free_port()
    env = process_env(settings, DIALLER_PUBLISHER_CHECKPOINT_NAME=name, DIALLER_PUBLISHER_METRICS_PORT=str(port))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.publisher",
        cwd=PROJECT_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        # The initial checkpoint is written before reading starts: from then on nothing is missed.
        await wait_until(lambda: load_checkpoint(stores.postgres, name), within=30, what="publisher start")
        await execute(replica_writer, insert_user(1))
        records = flat(await queue.drain(lambda records: len(records) >= 1))
        assert summary(records) == [("users", "insert", 1)]

        metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read())
        assert b"dialler_cdc_publisher_lag_seconds" in metrics
        assert b"dialler_cdc_publisher_records_total 1.0" in metrics

        proc.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(proc.communicate(), 20))[0].decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, output
    assert "Traceback" not in output
    checkpoint = await load_checkpoint(stores.postgres, name)
    assert checkpoint is not None and checkpoint > position(records[0])


def run_process(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.publisher"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unreachable_replica_is_one_clear_line(settings: Settings, replica_url: str) -> None:
    dead = f"mysql+aiomysql://root:s3cret@127.0.0.1:{services.free_port()}/claims_app"
    result = run_process(process_env(settings, DIALLER_REPLICA_URL=dead))

    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith("error: MySQL replica at mysql+aiomysql://root:***@127.0.0.1:")
    assert "is unreachable" in errors[0]
    assert "s3cret" not in result.stderr and "Traceback" not in result.stderr


def test_unreachable_sqs_is_one_clear_line(settings: Settings, replica_url: str) -> None:
    dead = f"http://127.0.0.1:{services.free_port()}"
    result = run_process(process_env(settings, DIALLER_SQS_ENDPOINT_URL=dead))

    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and errors[0].startswith(f"error: SQS at {dead} is unreachable")
    assert "Traceback" not in result.stderr


def test_binlog_settings_are_checked() -> None:
    good = {
        "log_bin": "ON",
        "binlog_format": "ROW",
        "binlog_row_image": "FULL",
        "binlog_row_metadata": "FULL",
    }
    assert binlog_problems(good) == []
    assert binlog_problems(good | {"log_bin": "OFF"}) == [
        "the binary log is off (start the server with --log-bin --binlog-format=ROW)"
    ]
    assert binlog_problems(good | {"binlog_format": "MIXED", "binlog_row_metadata": "MINIMAL"}) == [
        "binlog_format is MIXED, not ROW",
        "binlog_row_metadata is MINIMAL, not FULL (column names are lost)",
    ]
    assert "updates need whole rows" in binlog_problems(good | {"binlog_row_image": "MINIMAL"})[0]


def test_options_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The publisher's tuning is read by the one Settings, from the same DIALLER_PUBLISHER_* names."""
    monkeypatch.setenv("DIALLER_PUBLISHER_METRICS_PORT", "none")
    monkeypatch.setenv("DIALLER_PUBLISHER_LINGER_S", "0.2")
    monkeypatch.setenv("DIALLER_PUBLISHER_CHECKPOINT_NAME", "x")
    opts = PublisherOptions.from_settings(Settings(_env_file=None))
    assert (opts.metrics_port, opts.linger_s, opts.checkpoint_name) == (None, 0.2, "x")
    monkeypatch.delenv("DIALLER_PUBLISHER_LINGER_S")
    same_name = PublisherOptions.from_settings(Settings(_env_file=None))
    assert opts.replication_server_id() == same_name.replication_server_id() > 1
    monkeypatch.setenv("DIALLER_PUBLISHER_LINGER_S", "soon")
    with pytest.raises(ValueError, match="publisher_linger_s"):
        Settings(_env_file=None)
