"""call sessions: a customer's workflow id repeats from call to call

The session workflow of a customer is always ``call-<user id>`` (Temporal refuses a second open one),
so every later call to the same customer reuses the id: it cannot be unique in the mirror. At most one
*open* session per customer is still enforced by ``uq_call_sessions_open_user``.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("uq_call_sessions_workflow_id"), "call_sessions", type_="unique")
    op.create_index(op.f("ix_call_sessions_workflow_id"), "call_sessions", ["workflow_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_call_sessions_workflow_id"), table_name="call_sessions")
    op.create_unique_constraint(op.f("uq_call_sessions_workflow_id"), "call_sessions", ["workflow_id"])
