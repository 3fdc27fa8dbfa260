"""Fixtures for the Twilio layer: the Twilio emulator (its own process, with this layer's test
account and API key), a real HTTP webhook receiver, and settings that point at both. No database or
Temporal: these tests need only loopback HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio

from devstack import services
from devstack.twilio_emulator.client import EmulatorClient
from dialler.config import Settings
from tests.support.telephony import (
    ACCOUNT_SID,
    API_KEY_SECRET,
    API_KEY_SID,
    AUTH_TOKEN,
    Receiver,
    make_settings,
)


@pytest.fixture(scope="session")
def _twilio_server(process_group: services.ProcessGroup) -> Iterator[EmulatorClient]:
    port = services.free_port()
    services.start_twilio_emulator(
        process_group,
        port,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        api_keys={API_KEY_SID: API_KEY_SECRET},
        demo_rules=False,
    )
    client = EmulatorClient(f"http://127.0.0.1:{port}")
    yield client
    client.close()


@pytest.fixture
def twilio(_twilio_server: EmulatorClient) -> EmulatorClient:
    """The session's Twilio emulator for this account, emptied for this test; its customers ring for
    a minute before answering, so a call placed here stays queued or ringing while a test looks at it."""
    _twilio_server.reset()
    _twilio_server.demo_rules(False)
    _twilio_server.script("*", behaviour="no-answer", answer_after_s=60)
    return _twilio_server


@pytest.fixture(scope="session")
def _receiver_server() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def receiver(_receiver_server: Receiver) -> Receiver:
    _receiver_server.reset()
    return _receiver_server


@pytest.fixture
def twilio_settings(twilio: EmulatorClient, receiver: Receiver) -> Settings:
    """The product's Twilio settings against the emulator; public URL = the receiver."""
    return make_settings(twilio_api_base_url=twilio.url, public_base_url=receiver.url)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client
