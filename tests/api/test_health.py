from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from dialler.config import Settings
from dialler.integrations.sqs import ensure_cdc_queues


def monitoring(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.metrics_token.get_secret_value()}"}


async def test_health_reports_every_dependency_up(
    client: httpx.AsyncClient, settings: Settings, replica_url: str
) -> None:
    response = await client.get("/api/v1/health", headers=monitoring(settings))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "up"
    deps = {d["name"]: d for d in body["dependencies"]}
    assert set(deps) == {"postgres", "replica", "redis", "temporal", "sqs"}
    assert all(d["up"] and d["latency_ms"] >= 0 for d in deps.values())
    assert response.headers["X-Request-ID"]


@pytest.mark.parametrize("broken", ["redis_url", "sqs_endpoint_url"])
async def test_health_is_503_and_names_the_dependency_that_is_down(
    settings: Settings, stores, replica_url: str, broken: str
) -> None:  # type: ignore[no-untyped-def]
    ensure_cdc_queues(settings)
    bad = {"redis_url": "redis://127.0.0.1:1/0", "sqs_endpoint_url": "http://127.0.0.1:1"}[broken]
    app: FastAPI = create_app(settings.model_copy(update={broken: bad}))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/api/v1/health", headers=monitoring(settings))
        anonymous = await http.get("/api/v1/health")

    assert (response.status_code, anonymous.status_code) == (503, 503)
    assert anonymous.json() == {"status": "down"}  # which one, and why, only with the key
    down = [d["name"] for d in response.json()["dependencies"] if not d["up"]]
    assert down == [{"redis_url": "redis", "sqs_endpoint_url": "sqs"}[broken]]


async def test_unknown_route_uses_the_one_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nope")

    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not Found", "details": None}}
