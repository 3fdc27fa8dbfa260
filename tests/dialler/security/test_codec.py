"""The payload codec: every payload sealed with AES-256-GCM under the newest key, named by its id;
old keys still open what they sealed; an unknown key is a clear error; failures' messages and stack
traces are sealed too; payloads from before encryption pass as they are."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.exceptions import InvalidTag
from pydantic import SecretStr, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from dialler.config import Settings
from dialler.security.codec import ENCODING, KEY_ID, EncryptionCodec, codec, data_converter
from dialler.security.keys import KeyRing, UnknownKey, parse_keys

PHONE = "07700 900123"


def new_key(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


def settings(keys: str) -> Settings:
    return Settings(_env_file=None, payload_keys=SecretStr(keys))  # type: ignore[call-arg]


async def test_a_payload_is_sealed_under_the_newest_key_and_opens_again() -> None:
    dc = data_converter(settings(f"{new_key('k2')},{new_key('k1')}"))
    [sealed] = await dc.encode([{"notes": f"call me on {PHONE}"}])

    assert sealed.metadata["encoding"] == ENCODING == b"binary/encrypted"
    assert sealed.metadata[KEY_ID] == b"k2"
    assert PHONE.encode() not in sealed.SerializeToString()
    assert await dc.decode([sealed], [dict]) == [{"notes": f"call me on {PHONE}"}]


async def test_rotation_old_keys_open_what_they_sealed_and_an_unknown_key_is_named() -> None:
    old, new = new_key("2026-01"), new_key("2027-01")
    [sealed_before] = await codec(settings(old)).encode([Payload(data=PHONE.encode())])

    rotated = codec(settings(f"{new},{old}"))
    assert (await rotated.decode([sealed_before]))[0].data == PHONE.encode()
    [sealed_after] = await rotated.encode([Payload(data=b"x")])
    assert sealed_after.metadata[KEY_ID] == b"2027-01"

    with pytest.raises(UnknownKey, match="2027-01"):
        await codec(settings(old)).decode([sealed_after])


async def test_a_tampered_or_misattributed_ciphertext_does_not_open() -> None:
    a = new_key("a")
    enc = codec(settings(a))
    [sealed] = await enc.encode([Payload(data=b"hello")])
    tampered = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(InvalidTag):
        await enc.decode([tampered])
    # The same key bytes under another id: the id is authenticated, so the ciphertext is refused.
    renamed = EncryptionCodec(KeyRing([("b", parse_keys(a)[0][1])]))
    moved = Payload(metadata={"encoding": ENCODING, KEY_ID: b"b"}, data=sealed.data)
    with pytest.raises(InvalidTag):
        await renamed.decode([moved])


async def test_payloads_recorded_before_encryption_decode_as_they_are() -> None:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"hello"')
    assert await codec(Settings(_env_file=None)).decode([plain]) == [plain]  # type: ignore[call-arg]


async def test_failure_messages_and_stack_traces_are_sealed() -> None:
    dc = data_converter(Settings(_env_file=None))  # type: ignore[call-arg]
    try:
        raise ApplicationError(f"duplicate phone {PHONE}", type="IntegrityError")
    except ApplicationError as exc:
        error = exc
    failure = Failure()
    await dc.encode_failure(error, failure)

    assert PHONE.encode() not in failure.SerializeToString()
    assert failure.message == "Encoded failure"
    assert failure.encoded_attributes.metadata["encoding"] == ENCODING
    decoded = await dc.decode_failure(failure)
    assert PHONE in str(decoded)


def test_malformed_keys_are_refused_at_start_up() -> None:
    with pytest.raises(ValidationError, match="must be 32 bytes"):
        settings(f"short:{base64.b64encode(b'x' * 16).decode()}")
    with pytest.raises(ValidationError, match="appears twice"):
        k = new_key("same")
        settings(f"{k},{k}")
    # Production refuses the development key: tests/dialler/test_config.py, with every other refusal.
