"""Notebooks stored once (by content hash), not per job; the runs of the retention cleanup.

A sweep of N jobs used to copy its notebook into each of the N rows (a 3 MiB request grew the database by
178 MiB). ``notebooks`` holds each distinct snapshot once, keyed by its SHA-256; ``jobs.notebook_sha`` points
at it. ``retention_runs`` records what each cleanup of finished jobs removed (the admin page shows it).

Revision ID: 0003
Revises: 0002
"""
import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "notebooks",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        # the last submission that used it: retention removes an unused notebook only when this is old
        sa.Column("used_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "retention_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("replica", sa.String(255), nullable=True),
        sa.Column("cutoff", sa.DateTime(), nullable=True),
        sa.Column("jobs_removed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("notebooks_removed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("files_removed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("bytes_freed", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("seconds", sa.Float(), nullable=False, server_default="0"),
        sa.Column("error", sa.Text(), nullable=True),
    )
    with op.batch_alter_table("jobs") as b:
        b.add_column(sa.Column("notebook_sha", sa.String(64), nullable=True))
    # Move the stored snapshots over: one row per distinct text.
    conn = op.get_bind()
    jobs = sa.table("jobs", sa.column("id", sa.Integer), sa.column("notebook", sa.Text),
                    sa.column("notebook_sha", sa.String), sa.column("created_at", sa.DateTime))
    notebooks = sa.table("notebooks", sa.column("sha256", sa.String), sa.column("text", sa.Text),
                         sa.column("size", sa.Integer), sa.column("used_at", sa.DateTime))
    seen = set()
    for row in conn.execute(sa.select(jobs.c.id, jobs.c.notebook, jobs.c.created_at)).fetchall():
        text = row.notebook or ""
        sha = hashlib.sha256(text.encode()).hexdigest()
        if sha not in seen:
            seen.add(sha)
            conn.execute(notebooks.insert().values(sha256=sha, text=text, size=len(text.encode()),
                                                   used_at=row.created_at))
        conn.execute(jobs.update().where(jobs.c.id == row.id).values(notebook_sha=sha))
    with op.batch_alter_table("jobs") as b:
        b.drop_column("notebook")
        b.alter_column("notebook_sha", existing_type=sa.String(64), nullable=False)
        b.create_index("ix_jobs_notebook_sha", ["notebook_sha"])
        b.create_index("ix_jobs_finished", ["finished_at"])


def downgrade():
    with op.batch_alter_table("jobs") as b:
        b.drop_index("ix_jobs_finished")
        b.drop_index("ix_jobs_notebook_sha")
        b.add_column(sa.Column("notebook", sa.Text(), nullable=True))
    conn = op.get_bind()
    conn.execute(sa.text("UPDATE jobs SET notebook = (SELECT text FROM notebooks WHERE notebooks.sha256 = "
                         "jobs.notebook_sha)"))
    with op.batch_alter_table("jobs") as b:
        b.drop_column("notebook_sha")
        b.alter_column("notebook", existing_type=sa.Text(), nullable=False)
    op.drop_table("retention_runs")
    op.drop_table("notebooks")
