"""GPU samples and culling state (issue 15 B): gpu_samples, workload_samples, gpu_idle_state,
gpu_idle_intervals, gpu_idle_policies, monitoring_alarms (job_runner.db.monitoring).

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "gpu_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("gpu", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False, server_default=""),
        sa.Column("util_pct", sa.Float, nullable=True),
        sa.Column("engine_active", sa.Float, nullable=True),
        sa.Column("mem_used_mib", sa.Float, nullable=True),
        sa.Column("mem_total_mib", sa.Float, nullable=True),
    )
    op.create_index("ix_gpu_samples_ts", "gpu_samples", ["ts"])
    op.create_index("ix_gpu_samples_gpu_ts", "gpu_samples", ["node", "gpu", "ts"])
    op.create_table(
        "workload_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("workload", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False, server_default=""),
        sa.Column("user", sa.String(255), nullable=False, server_default=""),
        sa.Column("util_pct", sa.Float, nullable=True),
        sa.Column("mem_used_mib", sa.Float, nullable=True),
    )
    op.create_index("ix_workload_samples_ts", "workload_samples", ["ts"])
    op.create_index("ix_workload_samples_w_ts", "workload_samples", ["workload", "ts"])
    op.create_table(
        "gpu_idle_state",
        sa.Column("allocation_id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False, server_default=""),
        sa.Column("user", sa.String(255), nullable=False, server_default=""),
        sa.Column("server_name", sa.String(255), nullable=False, server_default=""),
        sa.Column("idle_since", sa.Float, nullable=True),
        sa.Column("last_sample_ts", sa.Float, nullable=True),
        sa.Column("last_util", sa.Float, nullable=True),
        sa.Column("keep_until", sa.Float, nullable=True),
        sa.Column("warned_at", sa.Float, nullable=True),
        sa.Column("stopped_at", sa.Float, nullable=True),
    )
    op.create_table(
        "gpu_idle_intervals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("allocation_id", sa.Integer, nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("gpu_milli", sa.Integer, nullable=False, server_default="0"),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("end_reason", sa.String(16), nullable=True),
    )
    op.create_index("ix_gpu_idle_intervals_alloc", "gpu_idle_intervals", ["allocation_id"])
    op.create_index("ix_gpu_idle_intervals_tenant_start", "gpu_idle_intervals", ["tenant", "started_at"])
    op.create_table(
        "gpu_idle_policies",
        sa.Column("tenant", sa.String(63), primary_key=True),
        sa.Column("enabled", sa.Boolean, nullable=True),
        sa.Column("threshold_pct", sa.Float, nullable=True),
        sa.Column("idle_s", sa.Float, nullable=True),
        sa.Column("warn_s", sa.Float, nullable=True),
        sa.Column("max_keep_hours", sa.Float, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=True),
    )
    op.create_table(
        "monitoring_alarms",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False, server_default="warning"),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("first_at", sa.Float, nullable=False),
        sa.Column("last_at", sa.Float, nullable=False),
        sa.Column("cleared_at", sa.Float, nullable=True),
    )
    op.create_index("ix_monitoring_alarms_open", "monitoring_alarms", ["kind", "subject", "cleared_at"])


def downgrade():
    for t in ("monitoring_alarms", "gpu_idle_policies", "gpu_idle_intervals", "gpu_idle_state",
              "workload_samples", "gpu_samples"):
        op.drop_table(t)
