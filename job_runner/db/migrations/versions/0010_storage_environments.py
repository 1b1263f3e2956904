"""Tenant storage and environments (issue 15 C): tenant_storage, datasets, dataset_grants, environments
(job_runner/db/resources.py).

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "tenant_storage",
        sa.Column("tenant", sa.String(63), primary_key=True),
        sa.Column("quota_gib", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "datasets",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("size_gib", sa.Float(), nullable=False),
        sa.Column("volume_name", sa.String(253), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "dataset_grants",
        sa.Column("dataset", sa.String(63), sa.ForeignKey("datasets.name", ondelete="CASCADE"), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.PrimaryKeyConstraint("dataset", "tenant"),
    )
    op.create_table(
        "environments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tenants", sa.JSON(), nullable=False),
        sa.Column("kernel_name", sa.String(64), nullable=True),
        sa.Column("python", sa.String(1024), nullable=True),
        sa.Column("image", sa.String(1024), nullable=True),
        sa.Column("env", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def downgrade():
    op.drop_table("environments")
    op.drop_table("dataset_grants")
    op.drop_table("datasets")
    op.drop_table("tenant_storage")
