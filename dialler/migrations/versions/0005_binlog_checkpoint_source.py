"""binlog checkpoints remember their source server and a pending queue-rebuild request

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("binlog_checkpoints", sa.Column("source_server", sa.String(length=128), nullable=True))
    op.add_column("binlog_checkpoints", sa.Column("rebuild_requested", sa.String(length=255), nullable=True))


def downgrade() -> None:
    op.drop_column("binlog_checkpoints", "rebuild_requested")
    op.drop_column("binlog_checkpoints", "source_server")
