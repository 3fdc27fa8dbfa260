"""inbound_calls: when the agent answered a returned call and when it ended (the screen-pop ends)

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("inbound_calls", sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("inbound_calls", sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("inbound_calls", "ended_at")
    op.drop_column("inbound_calls", "answered_at")
