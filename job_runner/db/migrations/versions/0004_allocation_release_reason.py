"""Why an allocation was released when the service released it by itself.

Adds ``allocations.release_reason``: NULL when the hub's spawner released the slice (its server stopped);
otherwise what the service saw (its server is not running in the hub, its placement no longer exists in the
inventory, preempted, refused), shown in ``GET allocations/released`` and on the admin page.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("allocations") as b:
        b.add_column(sa.Column("release_reason", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("allocations") as b:
        b.drop_column("release_reason")
