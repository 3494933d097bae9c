"""languages: each user's chosen language, each task's, and export results as data

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02

An export's card says "12 posts · 1.2 KB" in the reader's language, from the task's result;
exports made before kept those figures only in their archive row, so they are copied over.

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('user') as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=8), nullable=True))
    with op.batch_alter_table('task') as batch_op:
        batch_op.add_column(sa.Column('locale', sa.String(length=8), nullable=True))
    build = 'json_build_object' if op.get_bind().dialect.name == 'postgresql' else 'json_object'
    op.execute(
        f"UPDATE task SET result = {build}('posts', archive.post_count, 'bytes', archive.size) "
        "FROM archive WHERE archive.task_id = task.id AND task.name = 'export_posts' "
        "AND task.result IS NULL"
    )


def downgrade():
    with op.batch_alter_table('task') as batch_op:
        batch_op.drop_column('locale')
    with op.batch_alter_table('user') as batch_op:
        batch_op.drop_column('language')
