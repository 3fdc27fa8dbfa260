"""the compliance desk: the compliance role, the review queue, customer flags

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_agents_role"), "agents", type_="check")
    op.create_check_constraint(
        op.f("ck_agents_role"), "agents", "role IN ('agent', 'supervisor', 'compliance', 'admin')"
    )
    op.create_table(
        "review_items",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("call_session_id", sa.Uuid(), nullable=True),
        sa.Column("call_outcome_id", sa.BigInteger(), nullable=True),
        sa.Column("agent_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("assignee_agent_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledge_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("final_response_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by_agent_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_session_id"], ["call_sessions.id"], name=op.f("fk_review_items_call_session_id_call_sessions")
        ),
        sa.ForeignKeyConstraint(
            ["call_outcome_id"], ["call_outcomes.id"], name=op.f("fk_review_items_call_outcome_id_call_outcomes")
        ),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name=op.f("fk_review_items_agent_id_agents")),
        sa.ForeignKeyConstraint(
            ["assignee_agent_id"], ["agents.id"], name=op.f("fk_review_items_assignee_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by_agent_id"], ["agents.id"], name=op.f("fk_review_items_resolved_by_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_items")),
        sa.UniqueConstraint("call_session_id", "kind", name="uq_review_items_session_kind"),
    )
    op.create_index("ix_review_items_status_created", "review_items", ["status", "created_at"])
    op.create_index("ix_review_items_user", "review_items", ["user_id"])
    op.create_table(
        "customer_flags",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("flag", sa.String(length=24), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("set_by_agent_id", sa.BigInteger(), nullable=True),
        sa.Column("call_session_id", sa.Uuid(), nullable=True),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cleared_by_agent_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["set_by_agent_id"], ["agents.id"], name=op.f("fk_customer_flags_set_by_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["cleared_by_agent_id"], ["agents.id"], name=op.f("fk_customer_flags_cleared_by_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("user_id", "flag", name=op.f("pk_customer_flags")),
    )


def downgrade() -> None:
    op.drop_table("customer_flags")
    op.drop_table("review_items")
    op.drop_constraint(op.f("ck_agents_role"), "agents", type_="check")
    op.create_check_constraint(op.f("ck_agents_role"), "agents", "role IN ('agent', 'supervisor', 'admin')")
