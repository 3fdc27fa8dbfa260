from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx

from dialler.agents.models import Role
from dialler.agents.presence import Initiator, PresenceState, presence_history, presence_key, set_presence
from dialler.calls.models import CallSession
from dialler.config import Settings
from dialler.runtime import Stores
from tests.support.api_agents import LoginAs

ME = "/api/v1/agents/me/presence"
BOARD = "/api/v1/agents/presence"


async def test_an_agent_starts_offline_and_sets_available_then_break(
    client: httpx.AsyncClient, login_as: LoginAs, stores: Stores, settings: Settings
) -> None:
    agent = await login_as()

    start = await client.get(ME, headers=agent.headers)
    available = await client.put(ME, json={"state": "available"}, headers=agent.headers)
    on_break = await client.put(ME, json={"state": "break", "reason": "lunch"}, headers=agent.headers)

    assert start.json()["state"] == "offline"
    assert set(start.json()["can_set"]) == {"available"}
    assert available.status_code == 200 and available.json()["state"] == "available"
    assert on_break.status_code == 200, on_break.text
    assert on_break.json() | {"since": None, "seconds_in_state": None} == {
        "agent_id": agent.agent.id,
        "state": "break",
        "reason": "lunch",
        "since": None,
        "seconds_in_state": None,
        "user_id": None,
        "can_set": ["available", "offline", "break"],
    }
    assert await stores.redis.hget(presence_key(settings, agent.agent.id), "state") == "break"
    async with stores.sessions() as session:
        rows = await presence_history(session=session, agent_id=agent.agent.id)
    assert [(r.state, r.reason, r.ended_at is None) for r in rows] == [
        ("available", None, False),
        ("break", "lunch", True),
    ]


async def test_refused_changes_explain_why(client: httpx.AsyncClient, login_as: LoginAs) -> None:
    agent = await login_as()
    await client.put(ME, json={"state": "available"}, headers=agent.headers)

    no_reason = await client.put(ME, json={"state": "break"}, headers=agent.headers)
    bad_reason = await client.put(ME, json={"state": "break", "reason": "nap"}, headers=agent.headers)
    reserve = await client.put(ME, json={"state": "reserved"}, headers=agent.headers)
    on_call = await client.put(ME, json={"state": "on_call"}, headers=agent.headers)
    unknown = await client.put(ME, json={"state": "asleep"}, headers=agent.headers)

    assert no_reason.status_code == 422 and "lunch" in no_reason.json()["error"]["message"]
    assert bad_reason.status_code == 422 and no_reason.json()["error"]["code"] == "invalid_presence_reason"
    assert reserve.status_code == 409 and "next call" in reserve.json()["error"]["message"]
    assert on_call.status_code == 409
    assert on_call.json()["error"]["details"] == {"current": "available", "target": "on_call"}
    assert unknown.status_code == 422
    assert (await client.get(ME, headers=agent.headers)).json()["state"] == "available"


async def test_supervisor_sees_every_agent_with_time_in_state(client: httpx.AsyncClient, login_as: LoginAs) -> None:
    priya = await login_as(Role.AGENT, display_name="Priya")
    tom = await login_as(Role.AGENT, display_name="Tom")
    sam = await login_as(Role.SUPERVISOR, display_name="Sam")
    await client.put(ME, json={"state": "available"}, headers=priya.headers)
    await client.put(ME, json={"state": "available"}, headers=tom.headers)
    await client.put(ME, json={"state": "break", "reason": "comfort"}, headers=tom.headers)

    board = await client.get(BOARD, headers=sam.headers)

    assert board.status_code == 200
    rows = {row["display_name"]: row for row in board.json()["items"]}
    assert rows["Priya"]["state"] == "available" and rows["Priya"]["seconds_in_state"] >= 0
    assert rows["Tom"]["state"] == "break" and rows["Tom"]["reason"] == "comfort"
    assert rows["Sam"]["state"] == "offline" and rows["Sam"]["seconds_in_state"] is None
    assert board.json()["counts"] == {
        "offline": 1,
        "available": 1,
        "reserved": 0,
        "on_call": 0,
        "wrap_up": 0,
        "break": 1,
    }
    assert (await client.get(BOARD, headers=priya.headers)).status_code == 403


async def test_board_survives_a_redis_flush(
    client: httpx.AsyncClient, login_as: LoginAs, stores: Stores, settings: Settings
) -> None:
    agent = await login_as()
    sam = await login_as(Role.SUPERVISOR)
    await client.put(ME, json={"state": "available"}, headers=agent.headers)
    await stores.redis.delete(presence_key(settings, agent.agent.id))

    board = await client.get(BOARD, headers=sam.headers)

    row = next(r for r in board.json()["items"] if r["agent_id"] == agent.agent.id)
    assert row["state"] == "available" and row["since"] is not None
    assert await stores.redis.hget(presence_key(settings, agent.agent.id), "state") == "available"


async def test_an_agent_left_in_wrap_up_with_no_call_behind_them_is_freed_by_their_own_click(
    client: httpx.AsyncClient, login_as: LoginAs, stores: Stores, settings: Settings
) -> None:
    """A Redis flush between a session's wrap-up and its close left agents in wrap-up for good (the
    chaos run: 409 on every click for 55 minutes). With no lease and no open session behind the
    state, the agent's own change frees them; an agent whose call is still open is refused as before."""
    stranded, busy = await login_as(), await login_as()
    async with stores.sessions() as session:
        for agent in (stranded, busy):
            await client.put(ME, json={"state": "available"}, headers=agent.headers)
            for state in (PresenceState.RESERVED, PresenceState.ON_CALL, PresenceState.WRAP_UP):
                await set_presence(
                    session=session,
                    redis=stores.redis,
                    settings=settings,
                    agent_id=agent.agent.id,
                    target=state,
                    now=datetime.now(UTC),
                    by=Initiator.SYSTEM,
                )
        session.add(
            CallSession(
                id=uuid.uuid4(),
                workflow_id="call-1",
                user_id=1,
                agent_id=busy.agent.id,
                queue="unsigned",
                phone_e164="+447700900123",
                status="wrap_up",
                started_at=datetime.now(UTC),
            )
        )
        await session.commit()

    freed = await client.put(ME, json={"state": "available"}, headers=stranded.headers)
    refused = await client.put(ME, json={"state": "available"}, headers=busy.headers)

    assert freed.status_code == 200 and freed.json()["state"] == "available", freed.text
    assert refused.status_code == 409 and refused.json()["error"]["details"]["current"] == "wrap_up"
    async with stores.sessions() as session:
        rows = await presence_history(session=session, agent_id=stranded.agent.id)
    assert [r.state for r in rows][-2:] == ["wrap_up", "available"]
