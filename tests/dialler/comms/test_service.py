"""Conversations, delivery statuses, opt-outs and inbound threading, on the real PostgreSQL and MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialler.comms import service as sms
from dialler.comms.errors import CustomerNotFound, NoMobileNumber
from dialler.comms.keywords import InboundAction
from dialler.comms.models import SmsConversation, SmsMessage
from dialler.compliance.models import DoNotCall, OptOut
from dialler.runtime import Stores
from tests.support.replica_customers import add_customer

NOW = datetime(2025, 6, 4, 10, 0, tzinfo=UTC)
PHONE = "+447700900123"


async def _outbound(stores: Stores, key: str = "wf-1:sms", template: str | None = None) -> int:
    async with stores.sessions() as session:
        conversation = await sms.get_or_create_conversation(session=session, phone=PHONE, user_id=7)
        message = await sms.prepare_outbound(
            session=session,
            conversation_id=conversation.id,
            body="Hello",
            template=template,
            idempotency_key=key,
            agent_id=None,
            at=NOW,
        )
        await session.commit()
        return message.id


async def _status(stores: Stores, message_id: int) -> str:
    async with stores.sessions() as session:
        message = await session.get(SmsMessage, message_id)
        assert message is not None
        return message.status


async def _apply(stores: Stores, status: str, *, sid: str | None = "SM1", message_id: int | None = None) -> bool:
    async with stores.sessions() as session:
        changed = await sms.apply_status(session=session, status=status, at=NOW, sid=sid, message_id=message_id)
        await session.commit()
        return changed


async def test_a_prepared_message_is_one_row_per_idempotency_key(stores: Stores) -> None:
    first = await _outbound(stores)
    again = await _outbound(stores)

    assert first == again
    async with stores.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(SmsMessage)) == 1
        conversation = await session.scalar(select(SmsConversation))
    assert conversation is not None and conversation.last_message_at == NOW


async def test_delivery_status_only_moves_forward(stores: Stores) -> None:
    message_id = await _outbound(stores)

    assert await _apply(stores, "queued", message_id=message_id)  # the sid arrives with the first callback
    assert await _apply(stores, "sent")
    assert not await _apply(stores, "sent")  # a repeat
    assert not await _apply(stores, "queued")  # late, out of order
    assert await _apply(stores, "delivered")
    assert not await _apply(stores, "undelivered")  # a final status never changes
    assert not await _apply(stores, "sent")
    assert not await _apply(stores, "exploded")  # unknown to us
    assert await _status(stores, message_id) == "delivered"
    async with stores.sessions() as session:
        message = await session.get(SmsMessage, message_id)
    assert message is not None and message.twilio_sid == "SM1" and message.status_updated_at == NOW


async def test_a_status_for_another_sid_never_lands_on_a_message(stores: Stores) -> None:
    message_id = await _outbound(stores)
    assert await _apply(stores, "queued", sid="SM1", message_id=message_id)

    assert not await _apply(stores, "delivered", sid="SM2", message_id=message_id)
    assert await _status(stores, message_id) == "queued"


async def test_undelivered_after_sent_and_failed_straight_from_queued(stores: Stores) -> None:
    a, b = await _outbound(stores, "a:sms"), await _outbound(stores, "b:sms")
    await _apply(stores, "sent", sid="SMa", message_id=a)
    await _apply(stores, "queued", sid="SMb", message_id=b)

    assert await _apply(stores, "undelivered", sid="SMa")
    assert await _apply(stores, "failed", sid="SMb")
    assert (await _status(stores, a), await _status(stores, b)) == ("undelivered", "failed")


async def test_conversation_follows_a_customer_who_changes_number(stores: Stores) -> None:
    async with stores.sessions() as session:
        old = await sms.get_or_create_conversation(session=session, phone=PHONE, user_id=7)
        same = await sms.get_or_create_conversation(session=session, phone=PHONE, user_id=None)
        moved = await sms.get_or_create_conversation(session=session, phone="+447700900456", user_id=7)
        stranger = await sms.get_or_create_conversation(session=session, phone="+447700900789", user_id=None)
        await session.commit()

    assert old.id == same.id == moved.id and moved.phone_e164 == "+447700900456"
    assert stranger.id != old.id and stranger.user_id is None


async def test_opt_out_is_idempotent_and_opt_in_lifts_it(stores: Stores) -> None:
    async with stores.sessions() as session:
        first, created = await sms.opt_out(session=session, phone=PHONE, user_id=7, keyword="STOP")
        again, created_again = await sms.opt_out(session=session, phone=PHONE, user_id=7, keyword="END")
        await session.commit()
        assert created and not created_again and again.keyword == "STOP"
        assert await sms.is_opted_out(session=session, phone=PHONE)
        assert await sms.send_blocked_reason(session=session, phone=PHONE, template=None) is not None
        # The acknowledgement of the STOP is the one text that still goes.
        assert await sms.send_blocked_reason(session=session, phone=PHONE, template="stop_confirmation") is None
        assert await sms.opt_in(session=session, phone=PHONE)
        assert not await sms.opt_in(session=session, phone=PHONE)
        assert await sms.send_blocked_reason(session=session, phone=PHONE, template=None) is None
        session.add(DoNotCall(phone_e164=PHONE, source="customer"))
        await session.flush()
        assert "do-not-call" in (await sms.send_blocked_reason(session=session, phone=PHONE, template=None) or "")


async def test_customers_are_found_by_number_whatever_its_format(stores: Stores, replica_writer: AsyncEngine) -> None:
    await add_customer(replica_writer, 1, phone="07700 900123")
    await add_customer(replica_writer, 2, phone="+44 (0)7700 900123")
    await add_customer(replica_writer, 3, phone="7700900123")
    await add_customer(replica_writer, 4, phone="07700 900124")
    await add_customer(replica_writer, 5, phone="01614960000")

    assert await sms.customers_with_phone(replica=stores.replica, phone=PHONE) == [1, 2, 3]
    assert await sms.customer_mobile(replica=stores.replica, user_id=2) == PHONE
    with pytest.raises(NoMobileNumber):
        await sms.customer_mobile(replica=stores.replica, user_id=5)  # a landline cannot get texts
    with pytest.raises(CustomerNotFound):
        await sms.customer_mobile(replica=stores.replica, user_id=99)


def test_inbound_numbers() -> None:
    assert sms.inbound_e164("+447700900123") == PHONE
    assert sms.inbound_e164("+12025550123") == "+12025550123"  # abroad: can still text STOP
    assert sms.inbound_e164("garbage") is None


async def _receive(stores: Stores, body: str, sid: str, at: datetime = NOW) -> sms.InboundResult:
    async with stores.sessions() as session:
        result = await sms.receive_inbound(
            session=session, replica=stores.replica, phone=PHONE, body=body, sid=sid, at=at
        )
        await session.commit()
        return result


async def test_inbound_texts_are_threaded_once_and_counted_unread(stores: Stores, replica_writer: AsyncEngine) -> None:
    await add_customer(replica_writer, 1)

    first = await _receive(stores, "call me tomorrow at 10", "SMin1")
    retried = await _receive(stores, "call me tomorrow at 10", "SMin1")
    second = await _receive(stores, "or after 2pm", "SMin2", NOW + timedelta(minutes=1))

    assert first.action is InboundAction.MESSAGE and first.user_ids == (1,) and not first.duplicate
    assert retried.duplicate and retried.message_id == first.message_id
    async with stores.sessions() as session:
        conversation = await session.get(SmsConversation, first.conversation_id)
        assert conversation is not None
        assert (conversation.user_id, conversation.unread_count) == (1, 2)
        assert conversation.last_message_at == NOW + timedelta(minutes=1)
        assert [m.body for m in await sms.list_messages(session=session, conversation_id=conversation.id)] == [
            "call me tomorrow at 10",
            "or after 2pm",
        ]
        await sms.mark_read(session=session, conversation_id=conversation.id)
        await session.commit()
        await session.refresh(conversation)
        assert conversation.unread_count == 0
    assert second.conversation_id == first.conversation_id


async def test_inbound_stop_opts_out_every_customer_with_the_number_once(
    stores: Stores, replica_writer: AsyncEngine
) -> None:
    await add_customer(replica_writer, 1)
    await add_customer(replica_writer, 2, phone="+447700900123")

    stop = await _receive(stores, "Stop", "SMstop")
    retried = await _receive(stores, "Stop", "SMstop")
    again = await _receive(stores, "STOP", "SMstop2")

    assert stop.action is InboundAction.OPT_OUT and stop.user_ids == (1, 2)
    # One opt-out episode, whoever asks how many times: one confirmation.
    assert stop.opt_out_episode is not None and stop.opt_out_episode == retried.opt_out_episode == again.opt_out_episode
    assert retried.duplicate
    async with stores.sessions() as session:
        opt_out = await session.scalar(select(OptOut))
    assert opt_out is not None and (opt_out.phone_e164, opt_out.user_id, opt_out.keyword) == (PHONE, 1, "STOP")

    start = await _receive(stores, "START", "SMstart")
    late_retry_of_stop = await _receive(stores, "Stop", "SMstop")

    assert start.action is InboundAction.OPT_IN and start.opted_in and start.user_ids == (1, 2)
    # Twilio retrying the old STOP after the START must not opt the customer out again.
    assert late_retry_of_stop.action is InboundAction.MESSAGE and late_retry_of_stop.user_ids == ()
    async with stores.sessions() as session:
        assert not await sms.is_opted_out(session=session, phone=PHONE)


async def test_a_text_from_an_unknown_number_is_kept_for_supervisors(
    stores: Stores, replica_writer: AsyncEngine
) -> None:
    result = await _receive(stores, "who is this?", "SMwho")

    assert result.user_ids == () and result.action is InboundAction.MESSAGE
    async with stores.sessions() as session:
        all_ = await sms.list_conversations(session=session, agent_id=None)
        mine = await sms.list_conversations(session=session, agent_id=1)
    assert [c.id for c in all_] == [result.conversation_id] and all_[0].last_body == "who is this?"
    assert mine == []


async def test_a_stop_is_recorded_even_when_the_replica_is_down(stores: Stores) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    unreachable = create_async_engine("mysql+aiomysql://root@127.0.0.1:1/claims_app")
    try:
        async with stores.sessions() as session:
            result = await sms.receive_inbound(
                session=session, replica=unreachable, phone=PHONE, body="STOP", sid="SMdown", at=NOW
            )
            await session.commit()
            assert await sms.is_opted_out(session=session, phone=PHONE)
    finally:
        await unreachable.dispose()
    assert result.action is InboundAction.OPT_OUT and result.opt_out_episode is not None
