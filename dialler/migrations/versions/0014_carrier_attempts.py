"""carrier_attempts: every call and text asked of the carrier, recorded before asking (nobody rung twice)

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "carrier_attempts",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("body_digest", sa.String(length=64), nullable=True),
        sa.Column("sid", sa.String(length=64), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_carrier_attempts")),
    )


def downgrade() -> None:
    op.drop_table("carrier_attempts")
