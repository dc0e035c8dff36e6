"""Several nodes on one store: claim owners and worker heartbeats, the node and tier of each logged
question and its message key (logged once), the node and heartbeat of a job, the serving index version.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("replies", sa.Column("owner", sa.Text))
    op.create_table(
        "workers",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("node", sa.Text, nullable=False),
        sa.Column("seen", sa.Double, nullable=False),
    )
    op.add_column("query_log", sa.Column("tier", sa.Text))
    op.add_column("query_log", sa.Column("node", sa.Text))
    op.add_column("query_log", sa.Column("msg_key", sa.Text))
    op.create_index("query_log_msg_key", "query_log", ["msg_key"], unique=True)
    op.create_index("query_log_user_hash", "query_log", ["user_hash", "id"])
    op.add_column("jobs", sa.Column("node", sa.Text))
    op.add_column("jobs", sa.Column("heartbeat", sa.Double))
    op.create_table(
        "index_activations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("node", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("index_activations")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("heartbeat")
        batch.drop_column("node")
    op.drop_index("query_log_user_hash", "query_log")
    op.drop_index("query_log_msg_key", "query_log")
    with op.batch_alter_table("query_log") as batch:
        batch.drop_column("msg_key")
        batch.drop_column("node")
        batch.drop_column("tier")
    op.drop_table("workers")
    with op.batch_alter_table("replies") as batch:
        batch.drop_column("owner")
