"""presence history is append-only: a stint ends where the agent's next one starts

The current state moved to Redis (compare-and-set), so a change no longer locks the agent's row to
close the open stint: it appends one row. ``ended_at`` is derived (``lead(started_at)``) instead of
stored.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_column("agent_presence_events", "ended_at")


def downgrade() -> None:
    op.add_column("agent_presence_events", sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE agent_presence_events e SET ended_at = n.next_start FROM ("
        " SELECT id, lead(started_at) OVER (PARTITION BY agent_id ORDER BY started_at, id) AS next_start"
        " FROM agent_presence_events) n WHERE n.id = e.id"
    )
