"""What every part of the publisher shares: its error, a binlog position, the SQS size limit."""

from __future__ import annotations

from dataclasses import dataclass

SQS_MAX_MESSAGE_BYTES = 262_144


class PublisherError(RuntimeError):
    """The publisher cannot run; the message is one line for the operator (passwords masked)."""


class PositionUnavailable(PublisherError):
    """The server refused to stream from the position (purged, or not an event boundary on this
    server): the checkpoint is reset before the publisher stops, so its restart does not fail again."""


@dataclass(frozen=True, order=True, slots=True)
class BinlogPosition:
    log_file: str
    log_pos: int

    def __str__(self) -> str:
        return f"{self.log_file}:{self.log_pos}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
