"""compliance_decisions: every dial's gate decision (allowed or refused, rules, reasons, facts' versions)

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "compliance_decisions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=16), nullable=False),
        sa.Column("call_session_id", sa.Uuid(), nullable=True),
        sa.Column("agent_id", sa.BigInteger(), nullable=True),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("blocking_rule", sa.String(length=48), nullable=True),
        sa.Column("rules_checked", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("reasons", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("facts_versions", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("next_allowed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_decisions")),
        sa.UniqueConstraint("call_session_id", "path", name="uq_compliance_decisions_session_path"),
    )
    op.create_index(
        "ix_compliance_decisions_user_decided", "compliance_decisions", ["user_id", "decided_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_compliance_decisions_user_decided", table_name="compliance_decisions")
    op.drop_table("compliance_decisions")
