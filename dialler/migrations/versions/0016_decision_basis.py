"""compliance_decisions.basis: why the customer may be called at all (PECR reg. 21A), with every dial

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Null for the decisions recorded before the basis was.
    op.add_column("compliance_decisions", sa.Column("basis", sa.String(length=120), nullable=True))


def downgrade() -> None:
    op.drop_column("compliance_decisions", "basis")
