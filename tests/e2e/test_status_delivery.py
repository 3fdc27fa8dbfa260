"""A call status callback is marked seen only once its signal has landed in the session: one that
arrives while the API cannot reach Temporal is answered 503 (Twilio retries a failed callback), and the
retry, once Temporal is back, moves the call; a further repeat is dropped. On the real API, worker and
Temporal, the API's link to Temporal cut by a proxy.
"""

from __future__ import annotations

import httpx
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from dialler.calls.messages import DialRequest
from dialler.config import Settings
from dialler.integrations.twilio_voice import sign
from dialler.runtime import Stores
from tests.support.call_sessions import queue_one_customer, start_available
from tests.support.live_api import eventually
from tests.support.proxy import CuttableProxy
from workflows.call_session import CallSessionWorkflow

pytestmark = pytest.mark.e2e


@pytest.fixture
def settings(settings: Settings, temporal_link: CuttableProxy) -> Settings:
    """The API reaches Temporal through the cuttable link."""
    return settings.model_copy(update={"temporal_address": f"127.0.0.1:{temporal_link.port}"})


async def test_a_status_that_could_not_be_delivered_is_not_marked_seen_and_its_retry_lands(
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_url: str,
    temporal_client: Client,
    temporal_link: CuttableProxy,
) -> None:
    await queue_one_customer(stores, replica_url)
    headers = await start_available(http, "priya@rmc.example")

    async def offered_call() -> dict | None:  # the API's first link to Temporal may still be connecting
        answer = await http.post("/api/v1/agents/me/next-call", headers=headers)
        if answer.status_code == 503:
            assert answer.headers.get("Retry-After"), answer.text
            return None
        assert answer.status_code == 200, answer.text
        return answer.json()

    offered = await eventually(offered_call, within=60, every=1)
    handle = temporal_client.get_workflow_handle_for(CallSessionWorkflow.run, offered["workflow_id"])
    await handle.signal(CallSessionWorkflow.dial, DialRequest(1, browser_call_sid="CAbrowser"))

    async def dialing() -> bool:
        return (await handle.query(CallSessionWorkflow.view)).state == "dialing"

    await eventually(dialing)
    path = f"/api/v1/webhooks/twilio/voice-status?wf={offered['workflow_id']}"
    ringing = {"CallSid": "CAbrowser", "CallStatus": "ringing", "SequenceNumber": "1", "AccountSid": "AC0"}
    signed = {"X-Twilio-Signature": sign(stores.settings, stores.settings.public_base_url + path, ringing)}

    await temporal_link.cut()
    lost = await http.post(path, data=ringing, headers=signed, timeout=30)
    assert lost.status_code == 503 and lost.headers.get("Retry-After"), lost.text
    assert (await handle.query(CallSessionWorkflow.view)).state == "dialing"  # nothing reached the session

    await temporal_link.restore()

    async def retried() -> bool:  # Twilio's retry, until the API's link is back
        return (await http.post(path, data=ringing, headers=signed)).status_code == 204

    await eventually(retried, within=30, every=1)

    async def ringing_now() -> bool:
        return (await handle.query(CallSessionWorkflow.view)).state == "ringing"

    await eventually(ringing_now)
    assert (await http.post(path, data=ringing, headers=signed)).status_code == 204  # a repeat: dropped
    signals = [
        e.workflow_execution_signaled_event_attributes.signal_name
        async for e in handle.fetch_history_events()
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert signals.count("call_status") == 1
