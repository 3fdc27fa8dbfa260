"""CdcIngestWorkflow's input and its activity's result: counts only, never change payloads
(the workflow's history stays small and free of personal data)."""

from __future__ import annotations

from dataclasses import dataclass


def ingest_workflow_id(queue_name: str) -> str:
    return f"cdc-ingest-{queue_name}"


@dataclass(frozen=True)
class IngestInput:
    queue_name: str
    wait_s: int = 1  # SQS long poll per batch
    batches_per_run: int = 500  # continue-as-new after this many batches
    processed_before: int = 0  # carried across continue-as-new, for the Web UI


@dataclass(frozen=True)
class BatchResult:
    messages: int = 0
    records: int = 0
    customers: int = 0
    refused: int = 0  # records (or unreadable bodies) the consumer sent to the DLQ, with their reason
    stale: int = 0  # older than a change already applied
