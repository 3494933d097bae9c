"""followers followed_id index

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('followers', schema=None) as batch_op:
        batch_op.create_index('ix_followers_followed_id', ['followed_id'], unique=False)


def downgrade():
    with op.batch_alter_table('followers', schema=None) as batch_op:
        batch_op.drop_index('ix_followers_followed_id')
