"""call_recordings: every Twilio recording of a call, its session, customer and claims, and its deletion

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_recordings",
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("call_session_id", sa.Uuid(), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("claim_ids", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("duration_s", sa.BigInteger(), nullable=True),
        sa.Column("channels", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("sid", name=op.f("pk_call_recordings")),
    )
    op.create_index(op.f("ix_call_recordings_call_sid"), "call_recordings", ["call_sid"])
    op.create_index("ix_call_recordings_user_created", "call_recordings", ["user_id", "created_at"])
    op.create_index("ix_call_recordings_session", "call_recordings", ["call_session_id"])


def downgrade() -> None:
    op.drop_table("call_recordings")
