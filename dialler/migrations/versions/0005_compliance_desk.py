"""the compliance desk: the compliance role

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_agents_role"), "agents", type_="check")
    op.create_check_constraint(
        op.f("ck_agents_role"), "agents", "role IN ('agent', 'supervisor', 'compliance', 'admin')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_agents_role"), "agents", type_="check")
    op.create_check_constraint(op.f("ck_agents_role"), "agents", "role IN ('agent', 'supervisor', 'admin')")
