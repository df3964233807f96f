"""predictions.routed: whether the traffic policy routed a request (else it pinned a version);
a rollout's analysis judges routed requests only. Rows logged before were all counted: true."""

import sqlalchemy as sa
from alembic import op

revision = "0002_prediction_routed"
down_revision = "0001_baseline"


def upgrade() -> None:
    with op.batch_alter_table("predictions") as table:
        table.add_column(sa.Column("routed", sa.Boolean, nullable=False,
                                   server_default=sa.true()))
