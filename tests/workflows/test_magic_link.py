"""MagicLinkWorkflow on the real worker and the Twilio emulator: text the link, then used or expired,
recorded in the contact history; never texted to an opted-out number."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from devstack.twilio_emulator.client import EmulatorClient
from dialler.comms import magic_links
from dialler.comms.errors import MagicLinkExpired
from dialler.comms.messages import LinkUsed, MagicLinkInput, MagicLinkResult, magic_link_workflow_id
from dialler.comms.models import SmsMessage
from dialler.compliance.models import OptOut
from dialler.runtime import Stores
from tests.support.live_api import eventually
from tests.support.replica_customers import add_customer
from workflows.magic_link import MagicLinkWorkflow


async def start(client: Client, stores: Stores, link: MagicLinkInput) -> WorkflowHandle:
    return await client.start_workflow(
        MagicLinkWorkflow.run,
        link,
        id=magic_link_workflow_id(link.user_id, link.purpose, uuid.uuid4().hex[:12]),
        task_queue=stores.settings.temporal_task_queue,
    )


async def texted(emulator: EmulatorClient) -> dict[str, Any]:
    """The first text sent through Twilio (its message JSON)."""

    async def first() -> dict[str, Any] | None:
        return next(iter(await asyncio.to_thread(emulator.messages)), None)

    sms: dict[str, Any] = await eventually(first)
    return sms


def token_of(sms: dict[str, Any]) -> str:
    return str(sms["body"]).split("/m/", 1)[1].split()[0]


async def attempts(stores: Stores) -> list[tuple[int, str, str]]:
    async with stores.postgres.connect() as conn:
        rows = await conn.execute(text("SELECT user_id, channel, result FROM contact_attempts ORDER BY id"))
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_link_is_texted_used_once_and_recorded(
    temporal_client: Client, worker: Worker, stores: Stores, replica_writer: AsyncEngine, emulator: EmulatorClient
) -> None:
    customer = await add_customer(replica_writer, 1, signed=True)
    handle = await start(
        temporal_client,
        stores,
        MagicLinkInput(user_id=1, purpose="upload", requirement_id=customer.requirement_id, agent_id=None, ttl_s=600),
    )

    sms = await texted(emulator)
    token = token_of(sms)
    assert sms["to"] == customer.e164 and "bank statements" in sms["body"] and "10 minutes" in sms["body"]
    async with stores.sessions() as session:
        verified = await magic_links.consume(session=session, token=token, now=datetime.now(UTC))
        await session.commit()
    await handle.signal(MagicLinkWorkflow.used, LinkUsed(verified.link_id))
    result = await handle.result()

    assert result == MagicLinkResult(verified.link_id, "used")
    assert (verified.user_id, verified.requirement_id, verified.claim_id) == (1, customer.requirement_id, 10)
    assert await attempts(stores) == [(1, "sms", "magic_link_used")]
    async with stores.sessions() as session:
        stored = (await session.scalars(select(SmsMessage))).one()
    assert token not in stored.body and "/m/[link]" in stored.body  # the token is never stored
    assert stored.template == "magic_link_upload" and stored.twilio_sid == sms["sid"]


async def test_an_unused_link_expires_and_is_recorded(
    temporal_client: Client, worker: Worker, stores: Stores, replica_writer: AsyncEngine, emulator: EmulatorClient
) -> None:
    await add_customer(replica_writer, 1)
    handle = await start(temporal_client, stores, MagicLinkInput(user_id=1, purpose="sign", ttl_s=2))
    token = token_of(await texted(emulator))

    result = await handle.result()

    assert result.result == "expired"
    assert await attempts(stores) == [(1, "sms", "magic_link_expired")]
    async with stores.sessions() as session:
        with pytest.raises(MagicLinkExpired):
            await magic_links.consume(session=session, token=token, now=datetime.now(UTC))


async def test_a_link_is_never_texted_to_an_opted_out_number(
    temporal_client: Client, worker: Worker, stores: Stores, replica_writer: AsyncEngine, emulator: EmulatorClient
) -> None:
    customer = await add_customer(replica_writer, 1)
    async with stores.sessions() as session:
        session.add(OptOut(phone_e164=customer.e164, user_id=1, keyword="STOP"))
        await session.commit()

    result = await (await start(temporal_client, stores, MagicLinkInput(user_id=1, purpose="sign"))).result()

    assert result.result == "blocked"
    assert await asyncio.to_thread(emulator.messages) == []
    assert await attempts(stores) == [(1, "sms", "magic_link_blocked")]
    async with stores.sessions() as session:
        assert (await session.scalars(select(SmsMessage.status))).one() == "blocked"
