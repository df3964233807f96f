"""predictions.confidence: the probability of the class a classifier answered, for the
label-free estimate of its accuracy (confidence-based performance estimation). Null for rows
logged before, and for answers without class probabilities."""

import sqlalchemy as sa
from alembic import op

revision = "0005_prediction_confidence"
down_revision = "0004_shadow_predictions"


def upgrade() -> None:
    with op.batch_alter_table("predictions") as table:
        table.add_column(sa.Column("confidence", sa.Double))
