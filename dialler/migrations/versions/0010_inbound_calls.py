"""inbound_calls: every call a customer made to us (returned calls) and where it was routed

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbound_calls",
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("from_e164", sa.String(length=16), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=24), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name=op.f("fk_inbound_calls_agent_id_agents")),
        sa.PrimaryKeyConstraint("call_sid", name=op.f("pk_inbound_calls")),
    )
    op.create_index(op.f("ix_inbound_calls_user_id"), "inbound_calls", ["user_id"])
    op.create_index("ix_inbound_calls_agent_received", "inbound_calls", ["agent_id", "received_at"])


def downgrade() -> None:
    op.drop_table("inbound_calls")
