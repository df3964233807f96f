"""The serving database as it was before migrations: desired state, its history, and the
prediction log (requests, feedback, shadow comparisons)."""

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("variant", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Double, nullable=False),
        sa.Column("infra", sa.Boolean, nullable=False),
        sa.Column("prediction", sa.Double),
        sa.Column("revision", sa.BigInteger),
        sa.Column("replica", sa.String(128), nullable=False))
    op.create_index("ix_predictions_model_at", "predictions", ["model", "at"])
    op.create_index("ix_predictions_request_id", "predictions", ["request_id"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("label", sa.Double, nullable=False),
        sa.Column("replica", sa.String(128), nullable=False))
    op.create_index("ix_feedback_request_id", "feedback", ["request_id"])
    op.create_table(
        "shadow_comparisons",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("result", sa.String(16), nullable=False))
    op.create_index("ix_shadow_model_at", "shadow_comparisons", ["model", "at"])
    op.create_table(
        "serving_state",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("pins", sa.Text, nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("analysis_since", sa.Double, nullable=False),
        sa.Column("analysis_revision", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("updated_by", sa.String(256), nullable=False))
    op.create_table(
        "serving_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("change", sa.Text, nullable=False))
    op.create_index("ix_serving_events_model", "serving_events", ["model"])
