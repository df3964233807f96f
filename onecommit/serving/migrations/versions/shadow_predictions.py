"""shadow_comparisons.request_id, champion_prediction and challenger_prediction: what each
variant answered a mirrored request, so feedback to it judges both (shadow judged on
correctness). Null for comparisons logged before: they count for agreement only."""

import sqlalchemy as sa
from alembic import op

revision = "0004_shadow_predictions"
down_revision = "0003_serving_state_retired"


def upgrade() -> None:
    with op.batch_alter_table("shadow_comparisons") as table:
        table.add_column(sa.Column("request_id", sa.Text))
        table.add_column(sa.Column("champion_prediction", sa.Double))
        table.add_column(sa.Column("challenger_prediction", sa.Double))
        table.create_index("ix_shadow_request_id", ["request_id"])
