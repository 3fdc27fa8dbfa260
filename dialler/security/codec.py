"""Temporal's data converter for every client in every process: payloads encrypted with the key ring.

Every payload a client or worker sends — workflow and activity inputs and results, signal, update and
query arguments, memos — is serialised whole (metadata included) and sealed with AES-256-GCM; the
envelope carries ``encoding: binary/encrypted`` and ``encryption-key-id`` so that any process holding
that key (and the codec server, for a supervisor in the Temporal UI) can open it. Failure messages and
stack traces go into an encoded attribute (``encode_common_attributes``), so an exception text that
quotes a phone number is ciphertext in the history too. Search attributes are not payload-codec'd by
Temporal: they stay plain, and hold only ids and codes (dialler.search_attributes).

Payloads recorded before this codec (no ``binary/encrypted`` encoding) decode as they are: old
histories still replay.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import temporalio.converter
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from dialler.config import Settings
from dialler.security.keys import KeyRing, SettingsKeyProvider, key_ring

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"


class EncryptionCodec(PayloadCodec):
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encode_one(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decode_one(p) for p in payloads]

    def encode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") == ENCODING:
            return payload  # already sealed (a payload passed through unchanged)
        key_id, blob = self.ring.encrypt(payload.SerializeToString())
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=blob)

    def decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # recorded before encryption (or by a client without it): as it is
        key_id = payload.metadata.get(KEY_ID, b"").decode()
        return Payload.FromString(self.ring.decrypt(key_id, payload.data))


def codec(settings: Settings) -> EncryptionCodec:
    """The codec for these settings (``payload_keys``)."""
    spec = settings.payload_keys.get_secret_value()
    return EncryptionCodec(key_ring(SettingsKeyProvider(spec)))


def data_converter(settings: Settings) -> DataConverter:
    """THE data converter: every Temporal client (worker, API, CLI, tests, bench) is built with it."""
    return dataclasses.replace(
        temporalio.converter.default(),
        payload_codec=codec(settings),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
