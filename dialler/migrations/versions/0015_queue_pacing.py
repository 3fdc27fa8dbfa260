"""queue_settings: each queue's pacing mode and maximum ratio (the pacing workflow reads them every tick)

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("queue_settings", sa.Column("pacing_mode", sa.String(length=16), nullable=True))
    op.add_column("queue_settings", sa.Column("max_ratio", sa.Numeric(precision=4, scale=2), nullable=True))
    op.create_check_constraint(
        op.f("ck_queue_settings_pacing_mode_known"),
        "queue_settings",
        "pacing_mode IS NULL OR pacing_mode IN ('preview', 'progressive', 'predictive')",
    )
    op.create_check_constraint(
        op.f("ck_queue_settings_max_ratio_range"),
        "queue_settings",
        "max_ratio IS NULL OR (max_ratio >= 1 AND max_ratio <= 5)",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_queue_settings_max_ratio_range"), "queue_settings", type_="check")
    op.drop_constraint(op.f("ck_queue_settings_pacing_mode_known"), "queue_settings", type_="check")
    op.drop_column("queue_settings", "max_ratio")
    op.drop_column("queue_settings", "pacing_mode")
