"""Seeded rows for the report tests: one UK day (Sunday 25/10/2026, the clocks go back) with rows just
outside it; the expected figures are worked out by hand in tests/dialler/reports/test_reports.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from dialler.agents.models import Agent, PresenceEvent
from dialler.callbacks.models import Callback
from dialler.calls.models import CallOutcome, CallSession, ContactAttempt
from dialler.comms.models import MagicLink, SmsConversation, SmsMessage
from dialler.compliance.models import ComplianceDecision, OptOut
from dialler.reports.models import ConversionEvent


def z(day: int, hour: int, minute: int = 0, month: int = 10) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


async def seed(session: AsyncSession) -> int:
    zoe = Agent(email="zoe@example.org", display_name="Zoë Ångström", password_hash="x", role="agent", queues=[])
    other = Agent(email="bob@example.org", display_name="Bob", password_hash="x", role="agent", queues=[])
    session.add_all([zoe, other])
    await session.flush()
    session.add_all(
        [
            PresenceEvent(agent_id=zoe.id, state="available", reason=None, started_at=z(24, 22)),  # before the start
            PresenceEvent(agent_id=zoe.id, state="on_call", reason=None, started_at=z(25, 1, 30)),
            PresenceEvent(agent_id=zoe.id, state="wrap_up", reason=None, started_at=z(25, 2)),
            PresenceEvent(agent_id=zoe.id, state="break", reason="lunch", started_at=z(25, 2, 10)),
            PresenceEvent(agent_id=zoe.id, state="offline", reason=None, started_at=z(25, 3, 10)),
            PresenceEvent(agent_id=zoe.id, state="available", reason=None, started_at=z(25, 23, 30)),  # past the end
            PresenceEvent(agent_id=zoe.id, state="offline", reason=None, started_at=z(26, 1)),
        ]
    )

    def call(user: int, at: datetime, queue: str = "unsigned", *, answered: bool = True) -> CallSession:
        return CallSession(
            id=uuid.uuid4(),
            workflow_id=f"call-{user}",
            user_id=user,
            agent_id=zoe.id,
            queue=queue,
            phone_e164=f"+4477009{user:05d}",
            status="ended",
            started_at=at,
            answered_at=at + timedelta(seconds=20) if answered else None,
            closed_at=at + timedelta(minutes=10),
        )

    before, signed, dropped, boundary = (
        call(100, z(24, 22, 30)),
        call(101, z(25, 1, 30)),
        call(102, z(25, 1, 45), answered=False),
        call(103, z(26, 0)),
    )
    session.add_all([before, signed, dropped, boundary])
    await session.flush()
    session.add_all(
        [
            ContactAttempt(
                user_id=101,
                phone_e164=signed.phone_e164,
                call_session_id=signed.id,
                result="answered",
                attempted_at=signed.started_at,
            ),  # fmt: skip
            ContactAttempt(
                user_id=102,
                phone_e164=dropped.phone_e164,
                call_session_id=dropped.id,
                result="abandoned",
                abandoned=True,
                attempted_at=dropped.started_at,
            ),  # fmt: skip
            ContactAttempt(
                user_id=103,
                phone_e164=boundary.phone_e164,
                call_session_id=boundary.id,
                result="answered",
                attempted_at=boundary.started_at,
            ),  # fmt: skip
            CallOutcome(
                call_session_id=signed.id,
                user_id=101,
                agent_id=zoe.id,
                disposition="signed_on_call",
                recorded_at=z(25, 2),
            ),  # fmt: skip
            CallOutcome(
                call_session_id=boundary.id,
                user_id=103,
                agent_id=zoe.id,
                disposition="no_answer",
                recorded_at=z(26, 0, 5),
            ),  # fmt: skip
            # 101 signs two days after the call; 102's document came before the call (not a conversion),
            # and their signature 11 days after (outside the 7-day window).
            ConversionEvent(user_id=101, kind="signature", source_key="users:101:a", occurred_at=z(27, 10)),
            ConversionEvent(user_id=102, kind="document", source_key="claim_requirements:9:a", occurred_at=z(24, 12)),
            ConversionEvent(user_id=102, kind="signature", source_key="users:102:a", occurred_at=z(5, 12, month=11)),
        ]
    )
    for i, (rule, at, allowed) in enumerate(
        [
            ("calling_hours", z(25, 6), False),
            ("calling_hours", z(25, 22), False),
            ("tps", z(25, 9), False),
            ("tps", z(24, 22), False),
            (None, z(25, 9), True),
        ]  # fmt: skip
    ):
        session.add(
            ComplianceDecision(
                user_id=200 + i,
                channel="voice",
                path="dial",
                call_session_id=uuid.uuid4(),
                allowed=allowed,
                blocking_rule=rule,
                rules_checked=[],
                reasons=[],
                facts_versions={},
                decided_at=at,
            )  # fmt: skip
        )
    kept = Callback(workflow_id="cb-1", workflow_run_key="cb-1-a", user_id=301, due_at=z(25, 10), status="completed")
    missed = Callback(workflow_id="cb-2", workflow_run_key="cb-2-a", user_id=302, due_at=z(25, 11), status="missed")
    session.add_all([kept, missed])
    await session.flush()
    session.add_all(
        [
            Callback(
                workflow_id="cb-2",
                workflow_run_key="cb-2-b",
                user_id=302,
                due_at=z(27, 11),
                status="scheduled",
                rebooked_from_id=missed.id,
            ),  # fmt: skip
            Callback(workflow_id="cb-3", workflow_run_key="cb-3-a", user_id=303, due_at=z(26, 0), status="cancelled"),
        ]
    )
    thread = SmsConversation(user_id=101, phone_e164="+447700900101")
    session.add(thread)
    await session.flush()
    for direction, status, at in [
        ("outbound", "delivered", z(25, 2)),
        ("outbound", "failed", z(25, 3)),
        ("outbound", "undelivered", z(25, 4)),
        ("outbound", "sent", z(25, 5)),
        ("inbound", "received", z(25, 6)),
        ("outbound", "delivered", z(26, 0)),  # the next day
    ]:
        session.add(SmsMessage(conversation_id=thread.id, direction=direction, body="…", status=status, created_at=at))
    session.add_all(
        [
            OptOut(phone_e164="+447700900102", user_id=102, keyword="STOP", created_at=z(25, 7)),
            MagicLink(
                token_hash="a" * 64,
                user_id=101,
                purpose="sign",
                created_at=z(25, 2),
                expires_at=z(26, 2),
                used_at=z(25, 2, 5),
            ),  # fmt: skip
            MagicLink(token_hash="b" * 64, user_id=102, purpose="upload", created_at=z(25, 3), expires_at=z(26, 3)),
        ]
    )
    zoe_id = zoe.id
    await session.commit()
    return zoe_id
