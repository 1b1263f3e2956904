"""Experiments: studies, trials and reported metrics (issue 13, job_runner/db/experiments.py).

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("profile", sa.String(255), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("notebook_sha", sa.String(64), nullable=False),
        sa.Column("notebook_path", sa.String(1024), nullable=True),
        sa.Column("kernel_name", sa.String(255), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_experiments_user", "experiments", ["user", "id"])
    op.create_index("ix_experiments_state", "experiments", ["state"])
    op.create_table(
        "experiment_trials",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.Integer(), sa.ForeignKey("experiments.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("budget", sa.Integer(), nullable=True),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("stopped_by", sa.String(255), nullable=True),
        sa.Column("steered", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_trials_experiment", "experiment_trials", ["experiment_id", "number"])
    op.create_index("ix_trials_job", "experiment_trials", ["job_id"])
    op.create_table(
        "job_metrics",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("at", sa.Float(), nullable=True),
    )
    op.create_index("ix_job_metrics_job", "job_metrics", ["job_id", "name", "step"])
    op.create_table(
        "metric_cursors",
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", "attempt", "source"),
    )


def downgrade():
    op.drop_table("metric_cursors")
    op.drop_index("ix_job_metrics_job", table_name="job_metrics")
    op.drop_table("job_metrics")
    op.drop_index("ix_trials_job", table_name="experiment_trials")
    op.drop_index("ix_trials_experiment", table_name="experiment_trials")
    op.drop_table("experiment_trials")
    op.drop_index("ix_experiments_state", table_name="experiments")
    op.drop_index("ix_experiments_user", table_name="experiments")
    op.drop_table("experiments")
