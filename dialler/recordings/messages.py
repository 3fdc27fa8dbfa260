"""The retention workflow's messages (plain data: no personal data, no phone numbers)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PurgeInput:
    batch: int = 200


@dataclass(frozen=True)
class PurgeResult:
    deleted: int
    more: bool  # a full batch: another one may be due
