"""The database stores slice assignments, never an environment; no per-job working directory.

Drops ``jobs.env`` and ``allocations.env`` (the environment of a slice is computed from the assignment when a
process starts: job_runner.binding.local.local_env) and ``jobs.cwd`` (never settable: the API always refused it).

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    # batch mode: SQLite cannot drop a column in place (alembic copies the table)
    with op.batch_alter_table("jobs") as b:
        b.drop_column("env")
        b.drop_column("cwd")
    with op.batch_alter_table("allocations") as b:
        b.drop_column("env")


def downgrade():
    with op.batch_alter_table("allocations") as b:
        b.add_column(sa.Column("env", sa.JSON(), nullable=True))
    with op.batch_alter_table("jobs") as b:
        b.add_column(sa.Column("cwd", sa.String(1024), nullable=True))
        b.add_column(sa.Column("env", sa.JSON(), nullable=True))
