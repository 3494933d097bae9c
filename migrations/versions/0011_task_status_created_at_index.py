"""task status/created_at index: the operators' list of one status, newest first

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.create_index(
            'ix_task_status_created_at', ['status', 'created_at', 'id'], unique=False
        )


def downgrade():
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.drop_index('ix_task_status_created_at')
