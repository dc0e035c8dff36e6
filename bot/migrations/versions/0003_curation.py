"""Curation: official answers, sensitive words, keyword replies, settings (welcome, menu, synonym groups),
the change counter every worker watches, feedback, answers waiting for feedback, dismissed questions.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "curation_faq",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("alternatives", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("vectors", sa.LargeBinary),
        sa.Column("model", sa.String(200)),
        sa.Column("updated", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "curation_sensitive_words",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("word", sa.String(200), nullable=False, unique=True),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("hits", sa.Integer, nullable=False),
        sa.Column("last_hit", sa.Float),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "curation_keyword_replies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("keyword", sa.String(200), nullable=False),
        sa.Column("match", sa.String(10), nullable=False),
        sa.Column("reply", sa.Text, nullable=False),
        sa.Column("hits", sa.Integer, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "curation_settings",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "curation_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.execute("INSERT INTO curation_state (id, version) VALUES (1, 1)")
    op.create_table(
        "curation_feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("log_id", sa.Integer),
        sa.Column("user_hash", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(10), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("tier", sa.String(20), nullable=False),
        sa.Column("faq_id", sa.Integer),
        sa.Column("doc", sa.Text),
        sa.Column("question", sa.Text, nullable=False),
    )
    op.create_table(
        "curation_pending_feedback",
        sa.Column("user_hash", sa.String(64), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_table(
        "curation_dismissed",
        sa.Column("key", sa.String(500), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("who", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    for table in ("curation_dismissed", "curation_pending_feedback", "curation_feedback", "curation_state",
                  "curation_settings", "curation_keyword_replies", "curation_sensitive_words", "curation_faq"):
        op.drop_table(table)
