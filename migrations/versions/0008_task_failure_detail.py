"""task failure detail and a created_at index, for operators

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    # "cancelled" joins the task statuses too; the column is plain text, so only code changes.
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failure_detail', sa.Text(), nullable=True))
        # The operators' task list reads the newest tasks first.
        batch_op.create_index('ix_task_created_at', ['created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.drop_index('ix_task_created_at')
        batch_op.drop_column('failure_detail')
