"""The supervisors' pacing controls on the real app, Temporal and worker: a queue's mode, ratio and
ceiling set (validated, audited; agents refused), its pacer started and stopped (audited, clear 409s),
and the pacer's live decision read back through GET /pacing/queues. The agent phone's heartbeat lasts
``device_ready_ttl_s``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from temporalio.worker import Worker

from dialler.agents.models import Role
from dialler.calls.inbound import device_key
from dialler.config import Settings
from dialler.runtime import Stores
from tests.support.api_agents import LoginAs
from tests.support.audit import audit_rows
from tests.support.live_api import eventually

QUEUES = "/api/v1/pacing/queues"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"pacing_tick_s": 0.3, "device_ready_ttl_s": 6})


async def row(client: httpx.AsyncClient, headers: dict[str, str], queue: str) -> dict[str, Any]:
    response = await client.get(QUEUES, headers=headers)
    assert response.status_code == 200, response.text
    [found] = [q for q in response.json()["queues"] if q["queue"] == queue]
    return dict(found)


async def test_a_supervisor_sets_a_queue_pacing_and_starts_and_stops_its_pacer(
    client: httpx.AsyncClient, login_as: LoginAs, stores: Stores, worker: Worker
) -> None:
    sam = await login_as(Role.SUPERVISOR)
    agent = await login_as(Role.AGENT)
    fresh = await row(client, sam.headers, "unsigned")
    assert (fresh["mode"], fresh["max_ratio"], fresh["pacer"]) == ("preview", 3.0, None)

    # Agents may not change pacing or start a pacer.
    url = f"{QUEUES}/unsigned"
    assert (await client.put(f"{url}/settings", json={"mode": "predictive"}, headers=agent.headers)).status_code == 403
    assert (await client.post(f"{url}/start", headers=agent.headers)).status_code == 403
    # Preview: agents dial; a pacer has nothing to do, and says why it was not started.
    refused = await client.post(f"{url}/start", headers=sam.headers)
    assert refused.status_code == 409, refused.text
    assert "preview mode" in refused.json()["error"]["message"]

    too_many = await client.put(f"{url}/settings", json={"max_ratio": 9}, headers=sam.headers)
    assert too_many.status_code == 422 and "from 1 to 5" in too_many.json()["error"]["message"]
    too_loose = await client.put(f"{url}/settings", json={"ceiling": 0.05}, headers=sam.headers)
    assert too_loose.status_code == 422 and too_loose.json()["error"]["code"] == "ceiling_above_ofcom_limit"
    unknown = await client.put(f"{url}/settings", json={"mode": "turbo"}, headers=sam.headers)
    assert unknown.status_code == 422

    body = {"mode": "predictive", "max_ratio": 2.5, "ceiling": 0.02}
    saved = await client.put(f"{url}/settings", json=body, headers=sam.headers)
    assert saved.status_code == 200, saved.text
    assert (saved.json()["mode"], saved.json()["max_ratio"], saved.json()["ceiling"]) == ("predictive", 2.5, 0.02)
    [audited] = await audit_rows(stores, "pacing.settings_set")
    assert audited.details == {"mode": "predictive", "max_ratio": "2.5", "ceiling": "0.0200"}

    started = await client.post(f"{url}/start", headers=sam.headers)
    assert started.status_code == 202, started.text
    assert started.json() == {"workflow_id": "pacing-unsigned", "queue": "unsigned", "started": True}
    again = await client.post(f"{url}/start", headers=sam.headers)
    assert again.status_code == 202 and again.json()["started"] is False

    async def decided() -> dict[str, Any] | None:
        pacer = (await row(client, sam.headers, "unsigned"))["pacer"]
        return pacer["decision"] if pacer and pacer["decision"] else None

    decision = await eventually(decided, within=15)
    assert (decision["requested"], decision["governed"], decision["paused"]) == ("predictive", "predictive", False)
    assert (decision["ready"], decision["calls"], decision["max_ratio"], decision["ceiling"]) == (0, 0, 2.5, 0.02)
    assert decision["reason"] == "predictive: abandoned 0.00% in 24 h, ceiling 2.00%"

    stopped = await client.post(f"{url}/stop", headers=sam.headers)
    assert stopped.status_code == 202, stopped.text

    async def gone() -> bool:
        return (await row(client, sam.headers, "unsigned"))["pacer"] is None

    await eventually(gone, within=15)
    assert (await client.post(f"{url}/stop", headers=sam.headers)).status_code == 409
    assert [len(await audit_rows(stores, a)) for a in ("pacing.started", "pacing.stopped")] == [2, 1]


async def test_the_phone_heartbeat_lasts_seconds(
    client: httpx.AsyncClient, login_as: LoginAs, stores: Stores, settings: Settings
) -> None:
    agent = await login_as(Role.AGENT)
    assert (await client.post("/api/v1/voice/device-ready", headers=agent.headers)).status_code == 204
    ttl = await stores.redis.ttl(device_key(settings, agent.agent.id))
    assert 0 < ttl <= 6
    assert (await client.delete("/api/v1/voice/device-ready", headers=agent.headers)).status_code == 204
    assert not await stores.redis.exists(device_key(settings, agent.agent.id))
