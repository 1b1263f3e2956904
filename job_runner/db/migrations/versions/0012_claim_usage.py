"""Tenant storage on Kubernetes: the last measured usage of a tenant's claim (issue 15 C).

Adds to ``tenant_storage``: ``claim_used_bytes``, ``claim_files``, ``claim_partial``, ``claim_measured_at``
(what the last scan Job in the tenant's namespace found: job_runner/executors/k8s_storage_scan.py) and
``claim_message`` (why the last scan could not measure it). Read by every replica; NULL: never measured.

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

COLUMNS = (("claim_used_bytes", sa.BigInteger()), ("claim_files", sa.Integer()), ("claim_partial", sa.Boolean()),
           ("claim_measured_at", sa.DateTime()), ("claim_message", sa.Text()))


def upgrade():
    with op.batch_alter_table("tenant_storage") as b:
        for name, kind in COLUMNS:
            b.add_column(sa.Column(name, kind, nullable=True))


def downgrade():
    with op.batch_alter_table("tenant_storage") as b:
        for name, _ in COLUMNS:
            b.drop_column(name)
