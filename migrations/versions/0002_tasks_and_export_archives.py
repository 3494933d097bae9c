"""tasks and export archives

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('task',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=200), nullable=False),
    sa.Column('status', sa.Enum('queued', 'running', 'succeeded', 'failed', name='taskstatus', native_enum=False, length=16), nullable=False),
    sa.Column('progress', sa.Integer(), nullable=False),
    sa.Column('done', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_task_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task'))
    )
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.create_index('ix_task_status_updated_at', ['status', 'updated_at'], unique=False)
        batch_op.create_index('ix_task_user_id_created_at', ['user_id', 'created_at'], unique=False)
        batch_op.create_index('uq_task_active_per_user', ['user_id', 'name'], unique=True, sqlite_where=sa.text("status IN ('queued', 'running')"), postgresql_where=sa.text("status IN ('queued', 'running')"))

    op.create_table('archive',
    sa.Column('task_id', sa.String(length=32), nullable=False),
    sa.Column('filename', sa.String(length=200), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('json_size', sa.Integer(), nullable=False),
    sa.Column('post_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('emailed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['task_id'], ['task.id'], name=op.f('fk_archive_task_id_task'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('task_id', name=op.f('pk_archive'))
    )
    with op.batch_alter_table('archive', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_archive_expires_at'), ['expires_at'], unique=False)

    op.create_table('archive_chunk',
    sa.Column('task_id', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['archive.task_id'], name=op.f('fk_archive_chunk_task_id_archive'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('task_id', 'seq', name=op.f('pk_archive_chunk'))
    )


def downgrade():
    op.drop_table('archive_chunk')
    with op.batch_alter_table('archive', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_archive_expires_at'))

    op.drop_table('archive')
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.drop_index('uq_task_active_per_user', sqlite_where=sa.text("status IN ('queued', 'running')"), postgresql_where=sa.text("status IN ('queued', 'running')"))
        batch_op.drop_index('ix_task_user_id_created_at')
        batch_op.drop_index('ix_task_status_updated_at')

    op.drop_table('task')
