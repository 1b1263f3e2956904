"""Accounting: usage intervals, their daily rollup, the price book, budgets (issue 15 A, docs/accounting.md).

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "usage_intervals",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("workload_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("profile", sa.String(255), nullable=False),
        sa.Column("slice_kind", sa.String(16), nullable=False),
        sa.Column("gpu_model", sa.String(63), nullable=False),
        sa.Column("gpus", sa.Float(), nullable=False),
        sa.Column("gpu_milli", sa.Integer(), nullable=False),
        sa.Column("whole_gpus", sa.Integer(), nullable=False),
        sa.Column("mig_profile", sa.String(32), nullable=True),
        sa.Column("cpu", sa.Float(), nullable=False),
        sa.Column("memory_gib", sa.Float(), nullable=False),
        sa.Column("start_ts", sa.Float(), nullable=False),
        sa.Column("end_ts", sa.Float(), nullable=True),
        sa.Column("long", sa.Boolean(), nullable=False),
        sa.Column("idle_s", sa.Float(), nullable=False),
        sa.Column("used_gpu_s", sa.Float(), nullable=True),
        sa.Column("end_reason", sa.String(64), nullable=True),
        sa.UniqueConstraint("kind", "workload_id", "attempt", name="uq_usage_workload_attempt"),
    )
    op.create_index("ix_usage_open", "usage_intervals", ["end_ts"])
    op.create_index("ix_usage_start", "usage_intervals", ["start_ts"])
    op.create_index("ix_usage_long", "usage_intervals", ["long", "start_ts"])
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("gpu_model", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("gpu_s", sa.Float(), nullable=False),
        sa.Column("charged_gpu_s", sa.Float(), nullable=False),
        sa.Column("cpu_s", sa.Float(), nullable=False),
        sa.Column("mem_gib_s", sa.Float(), nullable=False),
        sa.Column("idle_gpu_s", sa.Float(), nullable=False),
        sa.Column("held_s", sa.Float(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "tenant", "user", "gpu_model", "kind"),
    )
    op.create_index("ix_usage_daily_tenant_day", "usage_daily", ["tenant", "day"])
    op.create_table(
        "usage_daily_tenant",
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("gpu_model", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        *[sa.Column(c, sa.Float(), nullable=False) for c in
          ("gpu_s", "charged_gpu_s", "cpu_s", "mem_gib_s", "idle_gpu_s", "held_s")],
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "tenant", "gpu_model", "kind"),
    )
    op.create_table(
        "prices",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("resource", sa.String(16), nullable=False),
        sa.Column("gpu_model", sa.String(63), nullable=False),
        sa.Column("unit_price", sa.Float(), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("resource", "gpu_model", "effective_from", name="uq_price_version"),
    )
    op.create_table(
        "budgets",
        sa.Column("tenant", sa.String(63), primary_key=True),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("hold", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def downgrade():
    op.drop_table("budgets")
    op.drop_table("prices")
    op.drop_table("usage_daily_tenant")
    op.drop_index("ix_usage_daily_tenant_day", table_name="usage_daily")
    op.drop_table("usage_daily")
    for ix in ("ix_usage_long", "ix_usage_start", "ix_usage_open"):
        op.drop_index(ix, table_name="usage_intervals")
    op.drop_table("usage_intervals")
