"""export email sending marker

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('archive', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_sending_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('archive', schema=None) as batch_op:
        batch_op.drop_column('email_sending_at')
