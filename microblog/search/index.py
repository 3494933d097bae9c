"""The search index of posts, kept by the database itself.

Whatever writes a post (the app, a bulk insert, a migration, ``psql``), the database updates
the index in the same transaction, so a post is found as soon as it is committed and never
after it is gone:

- PostgreSQL: a ``search_vector`` column holding ``to_tsvector(<configuration>, body)``, where
  the configuration follows the post's detected language (``microblog_ts_config``), written by
  a trigger on every insert and on every change of the body or the language; and a GIN index
  on it. Stored rather than computed at query time: checking a phrase, or filtering while
  walking the newest posts, then reads the words instead of parsing the text again.
- SQLite: an FTS5 table whose content is the post table (``content='post'``), kept in step by
  triggers on the post table (foreign-key cascades fire them too).

The same DDL builds the schema for ``db.create_all()`` and is frozen in the migration.
"""

from sqlalchemy import DDL, Column, Integer, MetaData, Table, Text, event, literal_column
from sqlalchemy.dialects.postgresql import TSVECTOR

from microblog.posts.models import Post

# Languages whose PostgreSQL text-search configuration ships with every supported server
# (ISO 639-1 code → configuration); any other language, or none detected, gets "simple".
CONFIGURATIONS = {
    "ar": "arabic",
    "da": "danish",
    "de": "german",
    "el": "greek",
    "en": "english",
    "es": "spanish",
    "fi": "finnish",
    "fr": "french",
    "ga": "irish",
    "hu": "hungarian",
    "id": "indonesian",
    "it": "italian",
    "lt": "lithuanian",
    "nb": "norwegian",
    "ne": "nepali",
    "nl": "dutch",
    "no": "norwegian",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sv": "swedish",
    "ta": "tamil",
    "tr": "turkish",
}
FALLBACK = "simple"


def _configuration_function() -> str:
    cases = "\n".join(
        f"    WHEN '{code}' THEN '{name}'::regconfig" for code, name in CONFIGURATIONS.items()
    )
    return (
        "CREATE FUNCTION microblog_ts_config(language text) RETURNS regconfig\n"
        "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$\n"
        f"  SELECT CASE language\n{cases}\n    ELSE '{FALLBACK}'::regconfig\n  END\n$$"
    )


INDEX = "ix_post_search"
VECTOR = "search_vector"  # the column, on PostgreSQL only: no model maps it
POSTGRESQL_CREATE = [
    _configuration_function(),
    "CREATE FUNCTION post_search_vector() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    f"  NEW.{VECTOR} := to_tsvector(microblog_ts_config(NEW.language), NEW.body);\n"
    "  RETURN NEW;\n"
    "END\n$$",
    f"ALTER TABLE post ADD COLUMN {VECTOR} tsvector",
    "CREATE TRIGGER post_search_vector BEFORE INSERT OR UPDATE OF body, language ON post "
    "FOR EACH ROW EXECUTE FUNCTION post_search_vector()",
    f"CREATE INDEX {INDEX} ON post USING gin ({VECTOR})",
]
POSTGRESQL_DROP = [
    "DROP FUNCTION IF EXISTS post_search_vector()",
    "DROP FUNCTION IF EXISTS microblog_ts_config(text)",
]

# The column, for queries: words (lexemes) with their positions, in the post's language.
search_vector = literal_column(f"post.{VECTOR}", TSVECTOR)


# The table SQLite searches: a rowid (the post's id) and the post's body. Its own metadata, so
# that create_all and migrations' comparisons leave the virtual table to the DDL below.
FTS_TABLE = "post_fts"
post_fts = Table(FTS_TABLE, MetaData(), Column("rowid", Integer), Column("body", Text))

SQLITE_CREATE = [
    # unicode61 folds case and diacritics in every script; porter adds English stemming.
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(body, content='post', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    f"CREATE TRIGGER post_fts_insert AFTER INSERT ON post BEGIN "
    f"INSERT INTO {FTS_TABLE}(rowid, body) VALUES (new.id, new.body); END",
    f"CREATE TRIGGER post_fts_delete AFTER DELETE ON post BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, body) VALUES ('delete', old.id, old.body); END",
    f"CREATE TRIGGER post_fts_update AFTER UPDATE OF body ON post BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, body) VALUES ('delete', old.id, old.body); "
    f"INSERT INTO {FTS_TABLE}(rowid, body) VALUES (new.id, new.body); END",
]
SQLITE_REBUILD = f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')"
SQLITE_DROP = [f"DROP TABLE IF EXISTS {FTS_TABLE}"]  # its triggers go with the post table


def declared_by_models(name: str | None, type_: str, parent_names: dict) -> bool:
    """Alembic's ``include_name`` hook: false for what this DDL builds and no model declares
    (FTS5's tables, PostgreSQL's column and index), so that schema comparisons leave them
    alone."""
    if type_ == "column":
        return name != VECTOR
    ours = bool(name) and (name == INDEX or name.startswith(FTS_TABLE))
    return not (type_ in ("table", "index") and ours)


def _attach(when: str, statements: list[str], dialect: str) -> None:
    for statement in statements:
        event.listen(Post.__table__, when, DDL(statement).execute_if(dialect=dialect))


_attach("after_create", POSTGRESQL_CREATE, "postgresql")
_attach("after_drop", POSTGRESQL_DROP, "postgresql")
_attach("after_create", SQLITE_CREATE, "sqlite")
_attach("before_drop", SQLITE_DROP, "sqlite")
