"""when each follow began, and lists of people in that order

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

"""
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    # Follows made before this revision get its time: when they began was never recorded.
    # (SQLite cannot add a column whose default is an expression; a literal it can.)
    now = datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')  # how SQLAlchemy stores it in SQLite
    if op.get_bind().dialect.name == 'postgresql':
        now += '+00'
    with op.batch_alter_table('followers', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('created_at', sa.DateTime(timezone=True), nullable=False, server_default=now)
        )
    with op.batch_alter_table('followers', schema=None) as batch_op:
        batch_op.alter_column('created_at', server_default=None)
        batch_op.drop_index('ix_followers_followed_id')
        batch_op.create_index(
            'ix_followers_follower_id_created_at',
            ['follower_id', 'created_at', 'followed_id'],
            unique=False,
        )
        batch_op.create_index(
            'ix_followers_followed_id_created_at',
            ['followed_id', 'created_at', 'follower_id'],
            unique=False,
        )


def downgrade():
    with op.batch_alter_table('followers', schema=None) as batch_op:
        batch_op.drop_index('ix_followers_followed_id_created_at')
        batch_op.drop_index('ix_followers_follower_id_created_at')
        batch_op.create_index('ix_followers_followed_id', ['followed_id'], unique=False)
        batch_op.drop_column('created_at')
