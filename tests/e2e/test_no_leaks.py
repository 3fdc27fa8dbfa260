"""Issue 21's leak test: after a journey on the real stack — a call with notes, a callback booked, texts,
a magic link, an inbound STOP, a change captured from the replica, a failing insert of a phone number
inside an activity — the customers' numbers, names, dates of birth, the tokens and the link are in no log
record or log file, no raw Temporal history (read without the codec), no SQS or DLQ body and no Redis
key or value."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from devstack.twilio_emulator.client import EmulatorClient
from dialler.cdc.publisher import Publisher
from dialler.config import Settings
from dialler.integrations.sqs import ensure_cdc_queues
from dialler.logs import RedactingFilter
from dialler.queues.rebuild import recompute
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.journeys import talk_then_hang_up, text_in
from tests.support.live_api import eventually
from tests.support.publisher import options, running
from workers.registry import ensure_cdc_ingest

pytestmark = pytest.mark.e2e

# Two customers with names and numbers found nowhere else in the code or the fixtures.
FIRST: dict[str, Any] = {
    "id": 1,
    "first": "Philippa",
    "last": "Quennell",
    "phone": "07700 900461",
    "e164": "+447700900461",
}
SECOND: dict[str, Any] = {
    "id": 2,
    "first": "Bartholomew",
    "last": "Ashgrove",
    "phone": "07700 900462",
    "e164": "+447700900462",
}
DOB = {1: "1961-03-14", 2: "1958-11-27"}
TS = "2024-01-15 10:00:00"


async def _add(replica: AsyncEngine, c: dict[str, Any]) -> None:
    async with replica.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, first_name, last_name, phone_number, date_of_birth, status, created_at,"
                " updated_at) VALUES (:id, :first, :last, :phone, :dob, 'active', :ts, :ts)"
            ),
            {**c, "dob": DOB[c["id"]], "ts": TS},
        )
        await conn.execute(
            text(
                "INSERT INTO claims (id, user_id, lender, type, status, created_at, updated_at)"
                " VALUES (:id, :id, 'Black Horse', 'motor_finance', 'new', :ts, :ts)"
            ),
            {"id": c["id"], "ts": TS},
        )
        await conn.execute(
            text(
                "INSERT INTO claim_requirements (id, claim_id, type, status, created_at, updated_at)"
                " VALUES (:id, :id, 'bank_statement', 'PENDING', :ts, :ts)"
            ),
            {"id": c["id"], "ts": TS},
        )


# --- an injected failure: an activity whose insert of a phone number fails -------------------------

_PHONE_INSERT = "INSERT INTO opt_outs (phone_e164, keyword) VALUES (:p, :k)"


class _FailingInsert:
    def __init__(self, stores: Stores) -> None:
        self._stores = stores

    @activity.defn(name="leak_test_failing_phone_insert")
    async def insert(self, user_id: int) -> None:
        # Looks the number up by id (as the product's activities do) and inserts it twice: the second
        # insert breaks the unique key, and the IntegrityError becomes the activity's failure.
        async with self._stores.postgres.begin() as conn:
            await conn.execute(text(_PHONE_INSERT), {"p": SECOND["e164"], "k": "STOP"})
        async with self._stores.postgres.begin() as conn:
            await conn.execute(text(_PHONE_INSERT), {"p": SECOND["e164"], "k": "STOPALL"})


@workflow.defn(name="LeakTestFailingInsert")
class _FailingInsertWorkflow:
    @workflow.run
    async def run(self, user_id: int) -> None:
        await workflow.execute_activity(
            "leak_test_failing_phone_insert",
            user_id,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=2),
        )


# --- where personal data could end up ---------------------------------------------------------------


def _payload_texts(node: Any, out: list[str]) -> None:
    """Every string in a history's JSON, and every payload's data decoded from base64 (an unencrypted
    payload is base64 JSON in the history's JSON: scanning only the JSON text would miss it)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "data" and isinstance(value, str):
                with contextlib.suppress(ValueError):
                    out.append(base64.b64decode(value).decode("utf-8", "replace"))
            if key == "metadata" and isinstance(value, dict):
                for meta in value.values():
                    if isinstance(meta, str):
                        with contextlib.suppress(ValueError):
                            out.append(base64.b64decode(meta).decode("utf-8", "replace"))
            _payload_texts(value, out)
    elif isinstance(node, list):
        for item in node:
            _payload_texts(item, out)
    elif isinstance(node, str):
        out.append(node)


async def _raw_histories(settings: Settings) -> dict[str, str]:
    raw = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)  # no codec
    found: dict[str, str] = {}
    queues = (settings.temporal_task_queue, f"{settings.temporal_task_queue}-failing")
    query = " OR ".join(f"TaskQueue = '{q}'" for q in queues)
    async for execution in raw.list_workflows(query):
        history = await raw.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        as_json = history.to_json()
        texts: list[str] = [as_json]
        _payload_texts(json.loads(as_json), texts)
        found[f"history {execution.workflow_type} {execution.id}"] = "\n".join(texts)
    return found


def _queue_bodies(stores: Stores, name: str) -> list[str]:
    sqs = stores.sqs()
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    bodies: list[str] = []
    for _ in range(5):  # peek: visible again at once, nothing deleted
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, MessageAttributeNames=["All"]
        )
        bodies += [m["Body"] + json.dumps(m.get("MessageAttributes", {})) for m in got.get("Messages", [])]
    return bodies


def _files_under(run_dir: Path) -> dict[str, str]:
    """Every file the test's processes wrote under their run dir (logs, if any went to files)."""
    return {f"file {p}": p.read_text("utf-8", "replace") for p in run_dir.rglob("*") if p.is_file()}


async def _redis_dump(stores: Stores) -> list[str]:
    redis, out = stores.redis, []
    async for key in redis.scan_iter(match=f"{stores.settings.redis_prefix}*", count=1000):
        kind = await redis.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "string":
            value: Any = await redis.get(key)
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        elif kind == "set":
            value = await redis.smembers(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = await redis.xrange(key)
        else:
            value = kind
        out.append(f"{key!r} {value!r}")
    return out


async def test_a_whole_journey_leaves_no_personal_data_in_logs_histories_queues_or_redis(
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_writer: AsyncEngine,
    settings: Settings,
    temporal_client: Client,
    emulator: EmulatorClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # configure_logging puts this filter on every handler of the processes (dialler/logs.py); the capture
    # handler stands for them, so what it keeps is what the processes would write.
    caplog.handler.addFilter(RedactingFilter())
    for c in (FIRST, SECOND):
        await _add(replica_writer, c)
    await recompute(stores, queue_engine(stores), [1, 2])
    queue_url = ensure_cdc_queues(settings)
    stores.sqs().set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "1"})
    secrets: list[str] = []

    # An agent signs in (an access JWT and a refresh token exist) and calls Philippa, with notes.
    signed_in = (
        await http.post("/api/v1/auth/login", json={"email": "priya@rmc.example", "password": "dialler-demo"})
    ).json()
    secrets += [signed_in["access_token"], signed_in["refresh_token"]]
    priya = {"Authorization": f"Bearer {signed_in['access_token']}"}
    assert (await http.put("/api/v1/agents/me/presence", json={"state": "available"}, headers=priya)).status_code == 200
    offered = (await http.post("/api/v1/agents/me/next-call", headers=priya)).json()
    session_id = offered["session_id"]
    assert offered["customer"]["user_id"] == 1
    await talk_then_hang_up(http, priya, session_id)
    notes = f"Philippa Quennell (born {DOB[1]}) asked us to use 07700 900461 after five"
    outcome = await http.post(
        f"/api/v1/calls/{session_id}/outcome", json={"disposition": "docs_promised", "notes": notes}, headers=priya
    )
    assert outcome.status_code == 200, outcome.text

    # docs_promised texts Philippa a magic link.
    async def link() -> str | None:
        for m in await asyncio.to_thread(emulator.messages, FIRST["e164"]):
            if "/m/" in m["body"]:
                return str(m["body"]).split("/m/", 1)[1].split()[0]
        return None

    token = await eventually(link)
    secrets += [token, f"/m/{token}"]

    # A supervisor books Bartholomew a callback (confirmed by text); he texts STOP, which cancels it.
    sam_login = (
        await http.post("/api/v1/auth/login", json={"email": "sam@rmc.example", "password": "dialler-demo"})
    ).json()
    secrets += [sam_login["access_token"], sam_login["refresh_token"]]
    sam = {"Authorization": f"Bearer {sam_login['access_token']}"}
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    booked = await http.post("/api/v1/callbacks", json={"user_id": 2, "due_at": due.isoformat()}, headers=sam)
    assert booked.status_code == 202, booked.text

    async def confirmed() -> bool:
        return bool(await asyncio.to_thread(emulator.messages, SECOND["e164"]))

    await eventually(confirmed)
    stop = await text_in(http, settings, SECOND["e164"], "STOP")
    assert stop.status_code == 200

    async def cancelled() -> bool:
        async with stores.postgres.connect() as conn:
            status = await conn.scalar(text("SELECT status FROM callbacks WHERE user_id = 2"))
        return status == "cancelled"

    await eventually(cancelled)

    # A change on the replica: Bartholomew's record is edited; the event is peeked in SQS before the
    # ingest reads it, and again after, with the DLQ.
    queued: list[str] = []
    async with running(Publisher(settings, postgres=stores.postgres, redis=stores.redis, options=options())) as _:
        async with replica_writer.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE users SET first_name = 'Bartholomew', phone_number = :p, updated_at = NOW(6) WHERE id = 2"
                ),
                {"p": "07700 900463"},
            )

        async def published() -> bool:
            queued.extend(_queue_bodies(stores, settings.cdc_queue_name))
            return bool(queued)

        await eventually(published, within=15)
        await ensure_cdc_ingest(temporal_client, settings)

    # An activity failure: the failing insert of a phone number.
    failing_queue = f"{settings.temporal_task_queue}-failing"
    async with Worker(
        temporal_client,
        task_queue=failing_queue,
        workflows=[_FailingInsertWorkflow],
        activities=[_FailingInsert(stores).insert],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        with pytest.raises(WorkflowFailureError):
            await temporal_client.execute_workflow(
                _FailingInsertWorkflow.run,
                2,
                id=f"leak-failing-{settings.temporal_task_queue}",
                task_queue=failing_queue,
            )

    # --- the scan ---
    needles = [
        *(c[k] for c in (FIRST, SECOND) for k in ("first", "last", "phone", "e164")),
        "07700 900463",
        *(c["e164"].removeprefix("+") for c in (FIRST, SECOND)),
        *DOB.values(),
        *secrets,
    ]
    places: dict[str, str] = {}
    for i, record in enumerate(caplog.records):
        places[f"log record {i} {record.name}"] = caplog.handler.format(record)
    places.update(_files_under(Path(settings.run_dir)))
    places.update(await _raw_histories(settings))
    read = {name.split()[1] for name in places if name.startswith("history ")}
    assert read >= {
        "CallSessionWorkflow",
        "CallbackWorkflow",
        "MagicLinkWorkflow",
        "InboundSmsWorkflow",
        "SendSmsWorkflow",
        "CdcIngestWorkflow",
        "LeakTestFailingInsert",
    }, read
    # The scan sees payloads decoded from base64: their metadata says they are ciphertext.
    assert all("binary/encrypted" in h for name, h in places.items() if name.startswith("history "))
    places["sqs queue (before ingest)"] = "\n".join(queued)
    places["sqs queue"] = "\n".join(_queue_bodies(stores, settings.cdc_queue_name))
    places["sqs dlq"] = "\n".join(_queue_bodies(stores, settings.cdc_dlq_name))
    places["redis"] = "\n".join(await _redis_dump(stores))
    assert queued, "the change was published"

    hits = [(needle, where) for where, haystack in places.items() for needle in needles if needle in haystack]
    assert hits == [], hits
