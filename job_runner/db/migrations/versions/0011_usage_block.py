"""Accounting: ``usage_block``, the daily rollup summed over 8-day blocks per tenant/user/GPU model/kind
(job_runner/db/accounting.py UsageBlock), filled from ``usage_daily`` so that reports over existing data use
it at once (issue 15, docs/accounting.md "Reports").

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BLOCK_DAYS = 8  # job_runner.accounting.rollup.BLOCK_DAYS (a migration does not import the code it serves)
SUMS = ("gpu_s", "charged_gpu_s", "cpu_s", "mem_gib_s", "idle_gpu_s", "held_s")
KEYS = ("tenant", "user", "gpu_model", "kind")


def upgrade():
    op.create_table(
        "usage_block",
        sa.Column("blk", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("gpu_model", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        *[sa.Column(c, sa.Float(), nullable=False) for c in SUMS],
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("blk", "tenant", "user", "gpu_model", "kind"),
    )
    # a tenant admin's report (tenant=...) reads only that tenant's blocks
    op.create_index("ix_usage_block_tenant_blk", "usage_block", ["tenant", "blk"])
    daily = sa.table("usage_daily", sa.column("day", sa.Integer()), *[sa.column(k) for k in KEYS],
                     *[sa.column(c) for c in SUMS + ("runs",)])
    block = sa.table("usage_block", sa.column("blk"), *[sa.column(k) for k in KEYS],
                     *[sa.column(c) for c in SUMS + ("runs",)])
    # day numbers are >= 0 (epoch days): integer / integer is the floor in SQLite and PostgreSQL alike. A literal
    # (not a bound parameter) so that PostgreSQL sees the same expression in SELECT and GROUP BY.
    blk = sa.literal_column(f"usage_daily.day / {BLOCK_DAYS}", sa.Integer())
    sel = sa.select(blk, *[daily.c[k] for k in KEYS], *[sa.func.sum(daily.c[c]) for c in SUMS + ("runs",)]) \
        .group_by(blk, *[daily.c[k] for k in KEYS])
    op.execute(block.insert().from_select(["blk", *KEYS, *SUMS, "runs"], sel))


def downgrade():
    op.drop_index("ix_usage_block_tenant_blk", table_name="usage_block")
    op.drop_table("usage_block")
