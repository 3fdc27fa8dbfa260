"""The Temporal SDK metric families the worker must export (the alert rules and dashboard use them)."""

from __future__ import annotations

SDK_FAMILIES = (
    "temporal_num_pollers",
    "temporal_worker_task_slots_available",
    "temporal_activity_execution_failed",
    "temporal_workflow_task_schedule_to_start_latency",
    "temporal_activity_schedule_to_start_latency",
)
