"""report rollups: counts per queue and hour and per agent and UK day, and the days rolled up

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "report_counts",
        sa.Column("grain", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("measure", sa.String(length=100), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("grain", "key", "bucket", "measure", name=op.f("pk_report_counts")),
    )
    op.create_index("ix_report_counts_bucket", "report_counts", ["bucket"])
    op.create_table(
        "report_rolled_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("rolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_report_rolled_days")),
    )


def downgrade() -> None:
    op.drop_table("report_rolled_days")
    op.drop_index("ix_report_counts_bucket", table_name="report_counts")
    op.drop_table("report_counts")
