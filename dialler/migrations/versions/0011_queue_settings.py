"""queue_settings: each queue's abandoned-call ceiling (at most Ofcom's 3 %); call_sessions by queue and start

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "queue_settings",
        sa.Column("queue", sa.String(length=32), nullable=False),
        sa.Column("abandon_rate_ceiling", sa.Numeric(precision=5, scale=4), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by_agent_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "abandon_rate_ceiling IS NULL OR (abandon_rate_ceiling >= 0 AND abandon_rate_ceiling <= 0.03)",
            name=op.f("ck_queue_settings_abandon_rate_ceiling_within_ofcom"),
        ),
        sa.ForeignKeyConstraint(
            ["updated_by_agent_id"], ["agents.id"], name=op.f("fk_queue_settings_updated_by_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("queue", name=op.f("pk_queue_settings")),
    )
    op.create_index("ix_call_sessions_queue_started", "call_sessions", ["queue", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_call_sessions_queue_started", table_name="call_sessions")
    op.drop_table("queue_settings")
