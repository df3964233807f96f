"""serving_state.retired: why and at which commit a model was retired (its spec gone from the
gitops tip), so the gateway can say so; null for every model served before."""

import sqlalchemy as sa
from alembic import op

revision = "0003_serving_state_retired"
down_revision = "0002_prediction_routed"


def upgrade() -> None:
    with op.batch_alter_table("serving_state") as table:
        table.add_column(sa.Column("retired", sa.Text))
