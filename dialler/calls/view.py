"""The live view of a call session in Redis, for the agent's screen.

The agent's screen polls its call every second or so. A Temporal query is a workflow task on the
worker and a round trip through the server, each time: at that rate the polls cost more than the call.
So the session's own steps write what the screen shows as they record progress (the API writes the
first, reserved view when it starts the session), and a poll reads one Redis hash. The workflow stays
the truth: a session with no view here (started before it existed, or expired) is queried instead.

The workspace's poll of "my live state" finds the session from the agent's lease, which names it:
who holds whom is recorded once, in the lease, and nothing here repeats it. A view's session,
customer and agent are the session's identity, fixed when it opens (the API checks ownership
against them before any signal).

Fields the API writes only if absent (so a session that already moved on is never set back); the
session's steps overwrite theirs in the order the workflow takes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from dialler.calls.messages import CallSessionView
from dialler.config import Settings
from dialler.queues.engine import Lease

VIEW_TTL_S = 24 * 3600  # a session lives minutes; its view answers for a day


def view_key(settings: Settings, session_id: str) -> str:
    return f"{settings.redis_prefix}:session-view:{session_id}"


def _encode(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


async def open_view(redis: Redis, settings: Settings, view: CallSessionView) -> None:
    key = view_key(settings, view.session_id)
    async with redis.pipeline(transaction=True) as pipe:
        for name, value in view.__dict__.items():
            pipe.hsetnx(key, name, _encode(value))
        pipe.expire(key, VIEW_TTL_S)
        await pipe.execute()


async def update_view(redis: Redis, settings: Settings, session_id: str, **fields: object) -> None:
    """Sets the fields given; None leaves a field as it is."""
    mapping: dict[Any, Any] = {name: _encode(value) for name, value in fields.items() if value is not None}
    if not mapping:
        return
    key = view_key(settings, session_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, VIEW_TTL_S)
        await pipe.execute()


async def read_view(redis: Redis, settings: Settings, session_id: str) -> CallSessionView | None:
    fields: Mapping[Any, Any] = await redis.hgetall(view_key(settings, session_id))  # type: ignore[misc]
    try:
        return CallSessionView(
            session_id=fields["session_id"],
            user_id=int(fields["user_id"]),
            agent_id=int(fields["agent_id"]),
            queue=fields["queue"],
            state=fields["state"],
            call_sid=fields.get("call_sid") or None,
            end_reason=fields.get("end_reason") or None,
            disposition=fields.get("disposition") or None,
            answered=fields.get("answered") == "1",
            started_at=datetime.fromisoformat(fields["started_at"]),
            wrap_up_deadline=datetime.fromisoformat(d) if (d := fields.get("wrap_up_deadline")) else None,
            progressive=fields.get("progressive") == "1",
            answered_by=fields.get("answered_by") or None,
        )
    except (KeyError, ValueError):
        return None  # none (or only the session's later fields, before the API's): ask the workflow


async def read_agent_view(redis: Redis, settings: Settings, lease: Lease) -> CallSessionView | None:
    """The view of the session the agent's lease is for, while it is open. None when the lease names
    no session (taken before leases did) or the session has no view yet: ask the workflow."""
    if lease.session_id is None:
        return None
    view = await read_view(redis, settings, lease.session_id)
    if view is None or view.user_id != lease.user_id or view.agent_id != lease.agent_id or view.state == "closed":
        return None
    return view
