"""account security: canonical usernames and emails, revocable sign-ins

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

"""
import unicodedata

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def canonical(text):
    # A copy of microblog.auth.models.canonical as it is today: a migration must not change
    # meaning when the application's code does.
    return unicodedata.normalize('NFKC', unicodedata.normalize('NFKC', text).casefold())


def upgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('username_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('email_key', sa.String(length=120), nullable=True))

    # Existing accounts keep working: the oldest of any look-alikes gets the key, the others
    # keep none and stay reachable by their exact name only.
    user = sa.table('user', sa.column('id', sa.Integer), sa.column('username', sa.String),
                    sa.column('email', sa.String), sa.column('username_key', sa.String),
                    sa.column('email_key', sa.String))
    connection = op.get_bind()
    taken = {'username': set(), 'email': set()}
    rows = connection.execute(sa.select(user.c.id, user.c.username, user.c.email).order_by(user.c.id))
    for user_id, username, email in rows.all():
        keys = {}
        for column, value in (('username', username), ('email', email)):
            key = canonical(value)
            keys[column + '_key'] = None if key in taken[column] else key
            taken[column].add(key)
        connection.execute(user.update().where(user.c.id == user_id).values(**keys))

    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_username_key'), ['username_key'], unique=True)
        batch_op.create_index(batch_op.f('ix_user_email_key'), ['email_key'], unique=True)

    op.create_table('sign_in',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_sign_in_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_sign_in'))
    )
    with op.batch_alter_table('sign_in', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sign_in_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('sign_in', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sign_in_user_id'))
    op.drop_table('sign_in')
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_email_key'))
        batch_op.drop_index(batch_op.f('ix_user_username_key'))
        batch_op.drop_column('email_key')
        batch_op.drop_column('username_key')
