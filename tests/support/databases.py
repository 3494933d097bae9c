"""Throwaway databases for the tests: a PostgreSQL cluster of the session's own, and fresh
databases of either kind built by the migrations, as production builds them.
"""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from flask_migrate import upgrade

from devkit.services import free_port, wait_until
from microblog import create_app
from microblog.extensions import db

KINDS = ("sqlite", "postgresql")
INSTALL_HINT = "install Debian's postgresql package (the test command does it as root)"


def postgres_bindir() -> Path:
    """Return the directory holding initdb and postgres, newest major version first."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError(f"PostgreSQL's initdb was not found: {INSTALL_HINT}.")


def _major_version(path: str) -> int:
    return int(Path(path).parent.parent.name)


class PostgresServer:
    """A PostgreSQL cluster in a temporary directory, on a free loopback port.

    PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user
    that Debian's package creates. Durability is traded for speed: the cluster dies with the
    session anyway.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="microblog-pg-"))
        self.process: subprocess.Popen | None = None
        self._user = "postgres" if os.geteuid() == 0 else None

    def start(self, timeout: float = 60) -> "PostgresServer":
        """Start the server, creating its cluster first unless it has one (a restart)."""
        bindir = postgres_bindir()
        data = self.directory / "data"
        if not data.exists():
            if self._user:
                entry = pwd.getpwnam(self._user)
                os.chown(self.directory, entry.pw_uid, entry.pw_gid)
            self._run([bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust",
                       "--encoding=UTF8", "--locale=C", "--no-sync"])  # fmt: skip
        with (self.directory / "log").open("a") as log:
            self.process = subprocess.Popen(
                [bindir / "postgres", "-D", data, "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=300"],
                user=self._user, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        try:
            wait_until(self._answers, timeout, f"PostgreSQL on port {self.port}")
        except BaseException:
            self.stop()
            raise
        return self

    def _run(self, command: list) -> None:
        result = subprocess.run(command, user=self._user, capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed:\n{result.stdout}{result.stderr}")

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            log = (self.directory / "log").read_text()
            raise RuntimeError(f"postgres exited with code {self.process.returncode}:\n{log}")
        try:
            psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def url(self, database: str) -> str:
        """Return the SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str) -> None:
        self.execute_in(self.url("postgres"), sql)

    def execute_in(self, url: str, sql: str) -> None:
        """Run one statement outside any transaction in the database at ``url``."""
        database = url.rsplit("/", 1)[1]
        with psycopg.connect(self.dsn(database), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)

    def halt(self) -> None:
        """Shut the server down as ``pg_ctl stop -m fast`` does, keeping its data."""
        if self.process is not None and self.process.poll() is None:
            # SIGINT is PostgreSQL's "fast" shutdown: it ends the sessions still open (SIGTERM
            # would wait for every client to leave) and stops cleanly.
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.directory, ignore_errors=True)


def migrate(url: str) -> None:
    """Build the schema at ``url`` through the migrations."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
        db.engine.dispose()


class Databases:
    """Hand out fresh migrated databases of either kind, cheaply.

    The migrations run once per kind into a template; each test then gets a copy of it (a file
    copy for SQLite, ``CREATE DATABASE … TEMPLATE`` for PostgreSQL). Copying a PostgreSQL
    database costs about half a second of the server's CPU, so one given back (:meth:`drop`)
    is renewed for the next test instead: its sessions ended, its rows deleted, its sequences
    restarted, all when it is handed out, whatever the test before left in it. One whose
    schema is no longer the template's is dropped.
    """

    def __init__(self, directory: Path, postgres: Callable[[], "PostgresServer"]) -> None:
        self.directory = directory
        self._postgres = postgres  # started on first use, so SQLite-only runs need no server
        self._templates: dict[str, str] = {}
        self._copies: set[str] = set()  # the migrated PostgreSQL databases, by name
        self._returned: list[str] = []
        self._schema: tuple | None = None  # the template's, as _schema_of says it

    @property
    def postgres(self) -> PostgresServer:
        return self._postgres()

    def empty(self, kind: str, directory: Path) -> str:
        """Return the URL of a new database without any table."""
        if kind == "sqlite":
            return f"sqlite:///{directory / f'{uuid.uuid4().hex}.sqlite'}"
        return self._create_postgres()

    def migrated(self, kind: str, directory: Path) -> str:
        """Return the URL of a database holding the migrated schema and no rows, which no
        session is using."""
        template = self._template(kind)
        if kind == "sqlite":
            path = directory / f"{uuid.uuid4().hex}.sqlite"
            shutil.copyfile(template, path)
            return f"sqlite:///{path}"
        while self._returned:
            name = self._returned.pop()
            if self._renew(name):
                return self.postgres.url(name)
            self._drop_postgres(name)
        url = self._create_postgres(template)
        self._copies.add(url.rsplit("/", 1)[1])
        return url

    def _create_postgres(self, template: str | None = None) -> str:
        name = f"t_{uuid.uuid4().hex}"
        # A file copy: the default (WAL_LOG) writes every page to the WAL, about twice as slow
        # for a database this small.
        copy = f' TEMPLATE "{template}" STRATEGY = FILE_COPY' if template else ""
        self.postgres.execute(f'CREATE DATABASE "{name}"{copy}')
        return self.postgres.url(name)

    def drop(self, url: str) -> None:
        """Give back a database made by this class: a migrated PostgreSQL one is kept to be
        renewed, any other dropped; SQLite files go with their directory."""
        if url.startswith("postgresql"):
            name = url.rsplit("/", 1)[1]
            if name in self._copies:
                self._returned.append(name)
            else:
                self._drop_postgres(name)

    def _drop_postgres(self, name: str) -> None:
        self._copies.discard(name)
        self.postgres.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _renew(self, name: str) -> bool:
        """End every session of database ``name`` and empty it as the template is; say
        whether it could be (its schema is still the template's)."""
        self.postgres.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            f" WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        with psycopg.connect(self.postgres.dsn(name), connect_timeout=5) as conn:
            if self._schema_of(conn) != self._schema:
                return False
            tables = conn.execute(
                "SELECT quote_ident(relname) FROM pg_class WHERE relkind = 'r'"
                " AND relnamespace = 'public'::regnamespace AND relname <> 'alembic_version'"
            ).fetchall()
            conn.execute("SET LOCAL session_replication_role = replica")  # no trigger, no FK
            for (table,) in tables:
                conn.execute(f"DELETE FROM {table}")
            conn.execute(
                "SELECT setval(format('%I.%I', schemaname, sequencename)::regclass,"
                " start_value, false) FROM pg_sequences WHERE schemaname = 'public'"
            )
        return True

    @staticmethod
    def _schema_of(conn: psycopg.Connection) -> tuple:
        """What a test could have changed of the schema: its relations, columns, triggers,
        functions and migration version (a copy keeps the template's object ids)."""
        return conn.execute(
            "SELECT (SELECT array_agg(oid ORDER BY oid) FROM pg_class"
            "        WHERE relnamespace = 'public'::regnamespace),"
            "       (SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            "        WHERE c.relnamespace = 'public'::regnamespace AND NOT a.attisdropped),"
            "       (SELECT array_agg(oid ORDER BY oid) FROM pg_trigger),"
            "       (SELECT array_agg(oid ORDER BY oid) FROM pg_proc"
            "        WHERE pronamespace = 'public'::regnamespace),"
            "       (SELECT array_agg(version_num) FROM alembic_version)"
        ).fetchone()

    def _template(self, kind: str) -> str:
        if kind not in self._templates:
            if kind == "sqlite":
                path = self.directory / "template.sqlite"
                migrate(f"sqlite:///{path}")
                self._templates[kind] = str(path)
            else:
                self.postgres.execute('CREATE DATABASE "template_migrated"')
                migrate(self.postgres.url("template_migrated"))
                with psycopg.connect(self.postgres.dsn("template_migrated")) as conn:
                    self._schema = self._schema_of(conn)
                self._templates[kind] = "template_migrated"
        return self._templates[kind]
