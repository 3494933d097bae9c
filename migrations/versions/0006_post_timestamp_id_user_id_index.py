"""post index for walking the site's newest posts with their authors

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    # The timeline walks the newest posts and checks each author; with the author in the index
    # that walk never touches the table. It also serves every (timestamp, id) order, so the
    # timestamp-only index is dropped.
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.create_index(
            'ix_post_timestamp_id_user_id', ['timestamp', 'id', 'user_id'], unique=False
        )
        batch_op.drop_index('ix_post_timestamp')


def downgrade():
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.create_index('ix_post_timestamp', ['timestamp'], unique=False)
        batch_op.drop_index('ix_post_timestamp_id_user_id')
