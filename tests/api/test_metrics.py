"""/metrics after a journey: the API's requests by route template, the floor (queues, calls,
callbacks) and CDC, behind the scrape key; and JSON logs that carry the request's ids."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from api.middleware import HTTP_FAMILIES
from dialler.callbacks.models import Callback
from dialler.calls.models import CallSession, ContactAttempt
from dialler.cdc.metrics import FAMILIES as CDC_FAMILIES
from dialler.config import Environment, LogFormat, Settings
from dialler.logs import handler_for
from dialler.metrics import FLOOR_FAMILIES
from dialler.queues.keys import QueueKeys
from dialler.runtime import Stores
from tests.support.api_agents import LoginAs


async def a_day_on_the_floor(stores: Stores) -> None:
    """40 answered calls, 1 abandoned; a callback 20 minutes overdue, one missed; 2 queued, 1 leased."""
    now = datetime.now(UTC)
    async with stores.sessions() as session:
        for n in range(41):
            sid = uuid.uuid4()
            session.add(
                CallSession(
                    id=sid,
                    workflow_id=f"call-{n}",
                    user_id=n,
                    queue="unsigned",
                    phone_e164="+447700900001",
                    status="closed",
                    started_at=now - timedelta(hours=1),
                    answered_at=None if n == 40 else now,
                )
            )
            await session.flush()
            session.add(
                ContactAttempt(
                    user_id=n,
                    phone_e164="+447700900001",
                    call_session_id=sid,
                    result="answered",
                    abandoned=n == 40,
                    attempted_at=now - timedelta(hours=1),
                )
            )
        session.add(
            Callback(
                workflow_id="callback-7",
                workflow_run_key="r7",
                user_id=7,
                due_at=now - timedelta(minutes=20),
                status="due",
            )
        )
        session.add(
            Callback(
                workflow_id="callback-8",
                workflow_run_key="r8",
                user_id=8,
                due_at=now - timedelta(hours=3),
                status="missed",
            )
        )
        await session.commit()
    keys = QueueKeys(stores.settings.redis_prefix)
    await stores.redis.zadd(keys.queue("unsigned"), {"101": 1.0, "102": 2.0})
    await stores.redis.zadd(keys.lease_expiry, {"103": time.time() + 60})
    await stores.redis.hset(keys.lease(103), mapping={"agent": "1", "queue": "callbacks", "token": "1"})
    await stores.redis.hset(f"{stores.settings.redis_prefix}:cdc:publisher", mapping={"lag_s": "4.5"})
    await stores.redis.set(f"{stores.settings.redis_prefix}:cdc:dlq_depth", "0")


def samples_of(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def scrape_key(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.metrics_token.get_secret_value()}"}


async def test_metrics_expose_the_api_floor_and_cdc_families_after_a_journey(
    client: httpx.AsyncClient, login_as: LoginAs, stores: Stores, settings: Settings
) -> None:
    await a_day_on_the_floor(stores)
    login = (("method", "POST"), ("route", "/api/v1/auth/login"), ("status", "200"))
    before = samples_of((await client.get("/metrics", headers=scrape_key(settings))).text).get(
        ("dialler_http_requests_total", login), 0
    )
    supervisor = await login_as()
    await client.get("/api/v1/auth/me", headers=supervisor.headers)
    await client.get("/api/v1/sms/customers/12345/messages", headers=supervisor.headers)
    await client.get("/api/v1/nope")

    anonymous = await client.get("/metrics")
    body = (await client.get("/metrics", headers=scrape_key(settings))).text

    assert anonymous.status_code == 401
    families = {family.name: family for family in text_string_to_metric_families(body)}
    assert set(FLOOR_FAMILIES) | set(HTTP_FAMILIES) | set(CDC_FAMILIES) <= set(families)
    samples = samples_of(body)
    # Route templates, never raw ids; unknown paths in one bucket.
    routes = {s.labels.get("route") for s in families["dialler_http_requests"].samples}
    expected = {"/api/v1/auth/login", "/api/v1/auth/me", "/api/v1/sms/customers/{user_id}/messages", "<unmatched>"}
    assert expected <= routes
    assert not any("12345" in (route or "") for route in routes)
    assert samples[("dialler_http_requests_total", login)] == before + 1  # counters live as long as the process
    latency = [s for s in families["dialler_http_request_duration_seconds"].samples if s.name.endswith("_count")]
    assert latency
    assert samples[("dialler_queue_depth", (("queue", "unsigned"),))] == 2
    assert samples[("dialler_queue_leases", (("queue", "callbacks"),))] == 1
    assert samples[("dialler_queue_leases_expired", ())] == 0
    assert samples[("dialler_queue_oldest_waiting_seconds", (("queue", "callbacks"),))] >= 20 * 60
    assert samples[("dialler_calls_answered_24h", ())] == 41
    assert samples[("dialler_calls_abandoned_24h", ())] == 1
    assert abs(samples[("dialler_calls_abandoned_rate_24h", ())] - 1 / 41) < 1e-9
    # Per queue (dialler.pacing): 1 of 41 live calls on unsigned ≥ its 1 % ceiling: progressive paused.
    unsigned, callbacks = (("queue", "unsigned"),), (("queue", "callbacks"),)
    assert abs(samples[("dialler_queue_abandoned_rate_24h", unsigned)] - 1 / 41) < 1e-9
    assert ("dialler_queue_abandoned_rate_24h", callbacks) not in samples  # no live call: no rate, not 0
    assert samples[("dialler_queue_abandoned_ceiling", unsigned)] == 0.01
    assert samples[("dialler_queue_progressive_paused", unsigned)] == 1
    assert samples[("dialler_queue_progressive_paused", callbacks)] == 0
    assert samples[("dialler_callbacks_due", ())] == 1
    assert samples[("dialler_callbacks_late", ())] == 1  # 20 minutes > the 10-minute grace
    assert samples[("dialler_callbacks_missed_today", ())] in (0, 1)  # 1 unless the UK day began < 3 h ago
    assert samples[("dialler_cdc_publisher_lag_seconds", ())] == 4.5
    assert samples[("dialler_cdc_dlq_messages", ())] == 0
    assert "+447700900001" not in body


async def test_json_logs_carry_the_request_id_and_no_phone_number(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    production = settings.model_copy(update={"environment": Environment.PRODUCTION})
    handler = handler_for(production)
    lines: list[str] = []
    handler.emit = lambda record: lines.append(handler.format(record))  # type: ignore[method-assign]
    log = logging.getLogger("dialler")
    log.addHandler(handler)
    try:
        response = await client.post(
            "/api/v1/webhooks/twilio/sms-status?m=1", data={"To": "+447700900123"}, headers={"X-Twilio-Signature": "x"}
        )
    finally:
        log.removeHandler(handler)

    assert response.status_code == 403
    assert lines, "the rejected webhook is logged"
    entry = json.loads(lines[-1])
    assert entry["request_id"] == response.headers["X-Request-ID"]
    assert entry["level"] == "WARNING"
    assert "rejected a Twilio webhook" in entry["message"]
    assert "+447700900123" not in lines[-1]
    assert production.log_format is None and handler.formatter.__class__.__name__ == "PrivateJsonFormatter"
    assert settings.model_copy(update={"log_format": LogFormat.JSON}).log_format == LogFormat.JSON
