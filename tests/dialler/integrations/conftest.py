"""Fixtures for the Twilio layer: a fake Twilio REST API, a real HTTP webhook receiver, and settings
that point at both. No database or Temporal: these tests need only loopback HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio

from dialler.config import Settings
from tests.support.telephony import (
    ACCOUNT_SID,
    API_KEY_SECRET,
    API_KEY_SID,
    AUTH_TOKEN,
    Receiver,
    make_settings,
)
from tests.support.twilio_api import FakeTwilio


@pytest.fixture(scope="session")
def _fake_twilio_server() -> Iterator[FakeTwilio]:
    fake = FakeTwilio(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, api_key_sid=API_KEY_SID, api_key_secret=API_KEY_SECRET
    ).start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_twilio(_fake_twilio_server: FakeTwilio) -> FakeTwilio:
    """The session's fake Twilio API, emptied for this test."""
    _fake_twilio_server.reset()
    return _fake_twilio_server


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
def twilio_settings(fake_twilio: FakeTwilio, receiver: Receiver) -> Settings:
    """``telephony_mode=twilio`` against the fake API; public URL = the receiver."""
    return make_settings(twilio_api_base_url=fake_twilio.url, public_base_url=receiver.url)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client
