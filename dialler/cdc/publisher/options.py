"""The publisher's tuning: the ``publisher_*`` fields of :class:`dialler.config.Settings` (read from
``DIALLER_PUBLISHER_<FIELD>``), gathered for the parts of the publisher."""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Any

from dialler.config import Settings

PREFIX = "publisher_"


@dataclass(frozen=True)
class PublisherOptions:
    """Publisher tuning; the defaults and their meaning are in :class:`dialler.config.Settings`."""

    checkpoint_name: str
    server_id: int | None
    metrics_host: str
    metrics_port: int | None
    max_message_bytes: int
    max_message_records: int
    linger_s: float
    heartbeat_s: float
    max_unsent_bytes: int
    status_interval_s: float
    retry_max_s: float
    shutdown_grace_s: float

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> PublisherOptions:
        values = {f.name: getattr(settings, PREFIX + f.name) for f in dataclasses.fields(cls)}
        return cls(**(values | overrides))

    def replication_server_id(self) -> int:
        # Stable per checkpoint name: a restarted publisher replaces its predecessor's dump thread on
        # the server (same id) instead of running beside it. Kept clear of small ids used by servers.
        if self.server_id is not None:
            return self.server_id
        return 100_000 + zlib.crc32(self.checkpoint_name.encode()) % 2_000_000_000
