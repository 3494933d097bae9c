"""confirmed addresses: when each user's address was confirmed, an address change waiting for
its confirmation, and messages for workers kept while the broker was away

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07

Accounts made before confirmation existed start unconfirmed: nothing proves their addresses
belong to them (anyone could register with anyone's address), so the site writes to them only
confirmation and password reset links until their owners confirm from the account page, or
use a reset link, which confirms the address too.

"""
from alembic import op
import sqlalchemy as sa



# revision identifiers, used by Alembic.
revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('user') as batch_op:
        batch_op.add_column(sa.Column('email_confirmed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('pending_email', sa.String(length=120), nullable=True))
    op.create_table(
        'kept_message',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('actor_name', sa.String(length=128), nullable=False),
        sa.Column('args', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_kept_message')),
    )
    with op.batch_alter_table('kept_message') as batch_op:
        batch_op.create_index(batch_op.f('ix_kept_message_created_at'), ['created_at'])


def downgrade():
    op.drop_table('kept_message')
    with op.batch_alter_table('user') as batch_op:
        batch_op.drop_column('pending_email')
        batch_op.drop_column('email_confirmed_at')
