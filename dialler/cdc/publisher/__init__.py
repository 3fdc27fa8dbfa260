"""The binlog publisher: the local stand-in for AWS DMS. It reads the replica's row binlog and sends
every row change of the contract tables to SQS as DMS-shaped records, many per message.

Threads and delivery:

- One **reader thread** owns the blocking ``BinLogStreamReader`` (blocking mode, with a server
  heartbeat every ``heartbeat_s`` so that it wakes up to notice a stop request and to know it has
  caught up). It turns row events into encoded DMS records and hands them to the event loop in
  chunks: one chunk per transaction (marked with the binlog position after its XID), or part of a
  large transaction (unmarked). A byte budget of unsent records blocks the reader when SQS is slow
  or down, so memory stays bounded and the binlog, not this process, holds the backlog.
- On the **event loop**, a collector packs chunks into message bodies (a JSON array; flushed on
  size, on record count, or ``linger_s`` after the batch's first record once the sender is free,
  so that under load messages get fuller rather than more numerous) and one sender sends them in
  order through ``asyncio.to_thread`` (boto3 blocks). Only after SQS accepted a body does the
  position after the last complete transaction in it become the checkpoint, which a separate task
  upserts into PostgreSQL (coalescing, retrying; a slow or down PostgreSQL delays the checkpoint,
  not the changes). A restart resumes there, so every change is sent at least once and none is
  skipped; a transaction split across bodies is re-sent whole after a crash, never half lost.

Timestamps: the binlog stores event times in whole seconds S (the statement's start). So that
commit-to-queue latency can be measured below a second, ``metadata.timestamp`` is the publisher's
read time clamped into that second, ``max(S, min(read time, S + 0.999999))``: never earlier than the
true commit, and later by at most min(read delay, 1 s). Caught up (the usual case: the row event
arrives < 1 ms after the commit) it is accurate to the read delay; a reader that is behind shows its
lag at most 1 s short. (The bare second would add 0–1 s of noise to every latency figure.)
"""

from dialler.cdc.publisher.checkpoint import delete_checkpoint, load_checkpoint, save_checkpoint
from dialler.cdc.publisher.common import SQS_MAX_MESSAGE_BYTES, BinlogPosition, PublisherError
from dialler.cdc.publisher.core import Publisher
from dialler.cdc.publisher.options import PublisherOptions
from dialler.cdc.publisher.replica import (
    ReplicaStatus,
    binlog_connection_settings,
    binlog_problems,
    inspect_replica,
    replica_schema,
)
from dialler.cdc.publisher.sqs import publisher_sqs_client
from dialler.cdc.publisher.status import PublisherMetrics, PublisherStatus, status_key

__all__ = [
    "SQS_MAX_MESSAGE_BYTES",
    "BinlogPosition",
    "Publisher",
    "PublisherError",
    "PublisherMetrics",
    "PublisherOptions",
    "PublisherStatus",
    "ReplicaStatus",
    "binlog_connection_settings",
    "binlog_problems",
    "delete_checkpoint",
    "inspect_replica",
    "load_checkpoint",
    "publisher_sqs_client",
    "replica_schema",
    "save_checkpoint",
    "status_key",
]
