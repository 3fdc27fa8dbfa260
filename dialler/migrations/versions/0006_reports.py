"""reports: conversion_events (signatures and documents seen through CDC), queue_depth_samples (every minute),
and time indexes for the reports' range scans

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The reports scan these tables by time (dialler/reports/models.py declares the same indexes).
REPORT_INDEXES = (
    ("ix_call_sessions_started_at", "call_sessions", "started_at"),
    ("ix_contact_attempts_attempted_at", "contact_attempts", "attempted_at"),
    ("ix_compliance_decisions_decided_at", "compliance_decisions", "decided_at"),
    ("ix_sms_messages_created_at", "sms_messages", "created_at"),
    ("ix_magic_links_created_at", "magic_links", "created_at"),
)


def upgrade() -> None:
    op.create_table(
        "conversion_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source_key", sa.String(length=100), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversion_events")),
        sa.UniqueConstraint("source_key", name="uq_conversion_events_source_key"),
    )
    op.create_index("ix_conversion_events_user_at", "conversion_events", ["user_id", "occurred_at"], unique=False)
    op.create_table(
        "queue_depth_samples",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("sampled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queue", sa.String(length=32), nullable=False),
        sa.Column("depth", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_depth_samples")),
        sa.UniqueConstraint("sampled_at", "queue", name="uq_queue_depth_samples_sampled_at"),
    )
    for name, table, column in REPORT_INDEXES:
        op.create_index(name, table, [column], unique=False)


def downgrade() -> None:
    for name, table, _ in REPORT_INDEXES:
        op.drop_index(name, table_name=table)
    op.drop_table("queue_depth_samples")
    op.drop_index("ix_conversion_events_user_at", table_name="conversion_events")
    op.drop_table("conversion_events")
