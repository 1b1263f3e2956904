"""Run files in the database (job logs, output notebooks, progress and results that job pods send).

Adds ``run_files``: with several service replicas on one PostgreSQL a pod's upload reaches any replica,
and the leader (and every replica serving GET jobs/{id}/output or /logs) must read it; a folder per
replica (an emptyDir) lost it. Rows go with their job (ON DELETE CASCADE).

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "run_files",
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("pos", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "attempt", "name", "version", "pos"),
    )


def downgrade():
    op.drop_table("run_files")
