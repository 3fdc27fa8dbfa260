"""The workflow clients name workflows, signals, updates and queries by string (so that importing a
client never imports a workflow definition and, through it, the activities: tests/test_imports.py).
These names must be the ones the workflows register, or a start or signal fails only in production;
and each client drives its workflow on the real worker (call sessions: e2e/test_call_session_client.py)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from devstack.seed import seed_replica
from devstack.twilio_emulator.client import EmulatorClient
from dialler.comms import magic_links
from dialler.comms.messages import LinkUsed, MagicLinkInput, magic_link_workflow_id
from dialler.runtime import Stores
from tests.support.live_api import eventually
from tests.support.replica_customers import add_customer
from workflows import (
    call_session_client,
    callback_client,
    erasure_client,
    inbound_call_client,
    inbound_sms_client,
    magic_link_client,
    queue_rebuild_client,
    sms_client,
)
from workflows.call_session import CallSessionWorkflow
from workflows.callback import CallbackWorkflow
from workflows.erasure import ErasureWorkflow
from workflows.inbound_call import InboundCallWorkflow
from workflows.inbound_sms import InboundSmsWorkflow
from workflows.magic_link import MagicLinkWorkflow
from workflows.queue_rebuild import QueueRebuildWorkflow
from workflows.sms import SendSmsWorkflow


def definition(cls: type) -> workflow._Definition:
    return workflow._Definition.must_from_class(cls)


@pytest.mark.parametrize(
    ("client_name", "cls"),
    [
        (callback_client.WORKFLOW, CallbackWorkflow),
        (magic_link_client.WORKFLOW, MagicLinkWorkflow),
        (sms_client.WORKFLOW, SendSmsWorkflow),
        (queue_rebuild_client.WORKFLOW, QueueRebuildWorkflow),
        (call_session_client.WORKFLOW, CallSessionWorkflow),
        (inbound_sms_client.WORKFLOW, InboundSmsWorkflow),
        (erasure_client.WORKFLOW, ErasureWorkflow),
        (inbound_call_client.WORKFLOW, InboundCallWorkflow),
    ],
)
def test_a_client_names_its_workflow_as_registered(client_name: str, cls: type) -> None:
    assert client_name == definition(cls).name


def test_the_signals_updates_and_queries_the_clients_name_exist() -> None:
    callback = definition(CallbackWorkflow)
    assert {callback_client.REBOOK_SIGNAL, callback_client.CANCEL_SIGNAL, callback_client.COMPLETE_SIGNAL} <= set(
        callback.signals
    )
    assert callback_client.RESCHEDULE_UPDATE in callback.updates
    assert magic_link_client.USED_SIGNAL in definition(MagicLinkWorkflow).signals
    session = definition(CallSessionWorkflow)
    assert {
        call_session_client.DIAL_SIGNAL,
        call_session_client.HANG_UP_SIGNAL,
        call_session_client.CALL_STATUS_SIGNAL,
        call_session_client.ABANDONED_SIGNAL,
        call_session_client.OUTCOME_RECEIVED_SIGNAL,
    } <= set(session.signals)
    assert call_session_client.OUTCOME_UPDATE in session.updates
    assert call_session_client.VIEW_QUERY in session.queries
    # A returned call's session takes the call session's hang-up, outcome and view (the same API).
    returned = definition(InboundCallWorkflow)
    assert {inbound_call_client.CALL_STATUS_SIGNAL, call_session_client.HANG_UP_SIGNAL} <= set(returned.signals)
    assert call_session_client.OUTCOME_UPDATE in returned.updates
    assert call_session_client.VIEW_QUERY in returned.queries


async def test_a_magic_link_started_and_marked_used_through_its_client(
    temporal_client: Client, worker: Worker, stores: Stores, replica_writer: AsyncEngine, emulator: EmulatorClient
) -> None:
    customer = await add_customer(replica_writer, 1, signed=True)
    workflow_id = magic_link_workflow_id(1, "upload", uuid.uuid4().hex[:12])
    link = MagicLinkInput(user_id=1, purpose="upload", requirement_id=customer.requirement_id, agent_id=None, ttl_s=600)

    await magic_link_client.start_magic_link(
        temporal_client, task_queue=stores.settings.temporal_task_queue, workflow_id=workflow_id, input=link
    )
    sms = await eventually(lambda: _first_text(emulator))
    token = str(sms["body"]).split("/m/", 1)[1].split()[0]
    async with stores.sessions() as session:
        verified = await magic_links.consume(session=session, token=token, now=datetime.now(UTC))
        await session.commit()
    await magic_link_client.link_used(temporal_client, workflow_id, LinkUsed(verified.link_id))

    result = await temporal_client.get_workflow_handle(workflow_id).result()  # untyped: a dict
    assert result == {"link_id": verified.link_id, "result": "used"}


async def _first_text(emulator: EmulatorClient) -> dict[str, Any] | None:
    return next(iter(await asyncio.to_thread(emulator.messages)), None)


async def test_a_rebuild_run_through_its_client_reports_its_trigger_and_counts(
    temporal_client: Client, worker: Worker, stores: Stores, replica_url: str
) -> None:
    await seed_replica(replica_url, users=300, seed=3)

    report = await queue_rebuild_client.run_rebuild(temporal_client, stores.settings, trigger="cli")

    assert report.trigger == "cli"
    assert sum(report.counts.values()) > 0
