from __future__ import annotations

import httpx

from dialler.agents.models import Role
from dialler.cdc import metrics
from dialler.config import Settings
from dialler.runtime import Stores
from tests.support.api_agents import LoginAs


async def test_metrics_need_the_scrape_key_and_expose_commit_to_queue_latency(
    client: httpx.AsyncClient, stores: Stores, settings: Settings
) -> None:
    await metrics.observe(stores.redis, settings.redis_prefix, latencies=[0.08, 0.3, 1.5], invalid=1)

    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
    response = await client.get("/metrics", headers={"Authorization": "Bearer dev-metrics-token"})

    assert response.status_code == 200
    body = response.text
    assert 'dialler_cdc_commit_to_queue_seconds_bucket{le="0.1"} 1.0' in body
    assert 'dialler_cdc_commit_to_queue_seconds_bucket{le="+Inf"} 3.0' in body
    assert "dialler_cdc_invalid_messages_total 1.0" in body


async def test_supervisors_see_cdc_status_agents_do_not(
    client: httpx.AsyncClient, stores: Stores, settings: Settings, login_as: LoginAs
) -> None:
    await metrics.observe(stores.redis, settings.redis_prefix, latencies=[0.2] * 99 + [0.9])
    await stores.redis.hset(f"{settings.redis_prefix}:cdc:publisher", mapping={"lag_s": "0.4", "state": "streaming"})
    supervisor = await login_as(Role.SUPERVISOR)
    agent = await login_as(Role.AGENT)

    assert (await client.get("/api/v1/cdc/status", headers=agent.headers)).status_code == 403
    status = (await client.get("/api/v1/cdc/status", headers=supervisor.headers)).json()

    assert status["records_applied"] == 100
    assert status["commit_to_queue_p50_s"] == 0.2 and status["commit_to_queue_p99_s"] == 0.9
    assert status["publisher_lag_s"] == 0.4 and status["dlq_messages"] == 0
