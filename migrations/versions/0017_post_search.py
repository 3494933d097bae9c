"""post search: each post's language, and a full-text index kept by the database

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01

PostgreSQL: a search_vector column written by a trigger, filled for the existing posts in
batches of their own transactions, then a GIN index built CONCURRENTLY: writes go on while a
large table is indexed. SQLite: an FTS5 table over the post table, kept by triggers,
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

# Every statement may run again: a migration cut off half-way (the PostgreSQL part runs
# outside one transaction) is finished by running it again.
CONFIGURATION_FUNCTION = """\
CREATE OR REPLACE FUNCTION microblog_ts_config(language text) RETURNS regconfig
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
    "CREATE VIRTUAL TABLE IF NOT EXISTS post_fts USING fts5(body, content='post', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS post_fts_insert AFTER INSERT ON post BEGIN "
    "INSERT INTO post_fts(rowid, body) VALUES (new.id, new.body); END",
    "CREATE TRIGGER IF NOT EXISTS post_fts_delete AFTER DELETE ON post BEGIN "
    "INSERT INTO post_fts(post_fts, rowid, body) VALUES ('delete', old.id, old.body); END",
    "CREATE TRIGGER IF NOT EXISTS post_fts_update AFTER UPDATE OF body ON post BEGIN "
    "INSERT INTO post_fts(post_fts, rowid, body) VALUES ('delete', old.id, old.body); "
    "INSERT INTO post_fts(rowid, body) VALUES (new.id, new.body); END",
    "INSERT INTO post_fts(post_fts) VALUES ('rebuild')",
]


POSTGRESQL_INDEX = [
    CONFIGURATION_FUNCTION,
    """\
CREATE OR REPLACE FUNCTION post_search_vector() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.search_vector := to_tsvector(microblog_ts_config(NEW.language), NEW.body);
  RETURN NEW;
END
$$""",
    'ALTER TABLE post ADD COLUMN IF NOT EXISTS search_vector tsvector',
    'DROP TRIGGER IF EXISTS post_search_vector ON post',
    'CREATE TRIGGER post_search_vector BEFORE INSERT OR UPDATE OF body, language ON post '
    'FOR EACH ROW EXECUTE FUNCTION post_search_vector()',
]
BATCH = 10_000  # posts per transaction while the existing posts are indexed


def upgrade():
    if 'language' not in {column['name'] for column in sa.inspect(op.get_bind()).get_columns('post')}:
        op.add_column('post', sa.Column('language', sa.String(length=5), nullable=True))
    if op.get_bind().dialect.name != 'postgresql':
        for statement in SQLITE_INDEX:
            op.execute(statement)
        return
    for statement in POSTGRESQL_INDEX:  # new posts are indexed from here on
        op.execute(statement)
    # The existing posts, a batch per transaction: each locks only its own rows, briefly, so
    # the site keeps writing; then the index, built without blocking writes.
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        last = bind.execute(sa.text('SELECT coalesce(max(id), 0) FROM post')).scalar()
        for first in range(0, last, BATCH):
            bind.execute(sa.text(
                'UPDATE post SET search_vector = to_tsvector(microblog_ts_config(language), body)'
                ' WHERE id > :first AND id <= :last AND search_vector IS NULL'
            ), {'first': first, 'last': first + BATCH})
        op.execute('DROP INDEX CONCURRENTLY IF EXISTS ix_post_search')  # left invalid if cut off
        op.execute('CREATE INDEX CONCURRENTLY ix_post_search ON post USING gin (search_vector)')


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP INDEX ix_post_search')
        op.execute('DROP TRIGGER post_search_vector ON post')
        op.execute('ALTER TABLE post DROP COLUMN search_vector')
        op.execute('DROP FUNCTION post_search_vector()')
        op.execute('DROP FUNCTION microblog_ts_config(text)')
    else:
        for trigger in ('post_fts_insert', 'post_fts_delete', 'post_fts_update'):
            op.execute(f'DROP TRIGGER {trigger}')
        op.execute('DROP TABLE post_fts')
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.drop_column('language')
