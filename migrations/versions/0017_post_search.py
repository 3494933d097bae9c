"""post search: each post's language, and a full-text index kept by the database

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01

PostgreSQL: a GIN index over to_tsvector(<the post's language's configuration>, body), built
CONCURRENTLY, so writes go on while a large table is indexed (nothing is stored per row, so
there is nothing to backfill). SQLite: an FTS5 table over the post table, kept by triggers,
filled from the existing posts. A later migration that rebuilds the post table on SQLite
(batch mode) drops these triggers with it and must create them again.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

CONFIGURATION_FUNCTION = """\
CREATE FUNCTION microblog_ts_config(language text) RETURNS regconfig
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE language
    WHEN 'ar' THEN 'arabic'::regconfig
    WHEN 'da' THEN 'danish'::regconfig
    WHEN 'de' THEN 'german'::regconfig
    WHEN 'el' THEN 'greek'::regconfig
    WHEN 'en' THEN 'english'::regconfig
    WHEN 'es' THEN 'spanish'::regconfig
    WHEN 'fi' THEN 'finnish'::regconfig
    WHEN 'fr' THEN 'french'::regconfig
    WHEN 'ga' THEN 'irish'::regconfig
    WHEN 'hu' THEN 'hungarian'::regconfig
    WHEN 'id' THEN 'indonesian'::regconfig
    WHEN 'it' THEN 'italian'::regconfig
    WHEN 'lt' THEN 'lithuanian'::regconfig
    WHEN 'nb' THEN 'norwegian'::regconfig
    WHEN 'ne' THEN 'nepali'::regconfig
    WHEN 'nl' THEN 'dutch'::regconfig
    WHEN 'no' THEN 'norwegian'::regconfig
    WHEN 'pt' THEN 'portuguese'::regconfig
    WHEN 'ro' THEN 'romanian'::regconfig
    WHEN 'ru' THEN 'russian'::regconfig
    WHEN 'sv' THEN 'swedish'::regconfig
    WHEN 'ta' THEN 'tamil'::regconfig
    WHEN 'tr' THEN 'turkish'::regconfig
    ELSE 'simple'::regconfig
  END
$$"""

SQLITE_INDEX = [
    "CREATE VIRTUAL TABLE post_fts USING fts5(body, content='post', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER post_fts_insert AFTER INSERT ON post BEGIN "
    "INSERT INTO post_fts(rowid, body) VALUES (new.id, new.body); END",
    "CREATE TRIGGER post_fts_delete AFTER DELETE ON post BEGIN "
    "INSERT INTO post_fts(post_fts, rowid, body) VALUES ('delete', old.id, old.body); END",
    "CREATE TRIGGER post_fts_update AFTER UPDATE OF body ON post BEGIN "
    "INSERT INTO post_fts(post_fts, rowid, body) VALUES ('delete', old.id, old.body); "
    "INSERT INTO post_fts(rowid, body) VALUES (new.id, new.body); END",
    "INSERT INTO post_fts(post_fts) VALUES ('rebuild')",
]


def upgrade():
    op.add_column('post', sa.Column('language', sa.String(length=5), nullable=True))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(CONFIGURATION_FUNCTION)
        with op.get_context().autocommit_block():
            op.execute(
                'CREATE INDEX CONCURRENTLY ix_post_search ON post '
                'USING gin (to_tsvector(microblog_ts_config(language), body))'
            )
    else:
        for statement in SQLITE_INDEX:
            op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP INDEX ix_post_search')
        op.execute('DROP FUNCTION microblog_ts_config(text)')
    else:
        for trigger in ('post_fts_insert', 'post_fts_delete', 'post_fts_update'):
            op.execute(f'DROP TRIGGER {trigger}')
        op.execute('DROP TABLE post_fts')
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.drop_column('language')
