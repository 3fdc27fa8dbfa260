"""A message body being filled: records packed into one JSON array, and the position it completes."""

from __future__ import annotations

from dataclasses import dataclass, field

from dialler.cdc.publisher.common import BinlogPosition


@dataclass
class _Batch:
    records: list[str] = field(default_factory=list)
    nbytes: int = 0  # record bytes (the budget's unit), without the array's brackets and commas
    end: BinlogPosition | None = None
    opened_at: float = 0.0

    @property
    def empty(self) -> bool:
        return not self.records and self.end is None

    def body(self) -> str:
        return "[" + ",".join(self.records) + "]"

    def body_bytes_with(self, record: str) -> int:
        return self.nbytes + len(record) + len(self.records) + 2
