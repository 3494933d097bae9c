"""Shared set-up for benchmarks: a throwaway database and Redis, and fast seeding."""

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import requests
from flask import Flask

from microblog import create_app
from microblog.auth.models import User
from microblog.extensions import db
from microblog.models import utcnow
from tests.support.data import insert_posts

ROOT = Path(__file__).resolve().parent.parent


def make_app(database: Path, redis_url: str) -> Flask:
    return create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}", "REDIS_URL": redis_url})


def create_database(app: Flask, users: dict[str, int]) -> dict[str, int]:
    """Create the schema and one user per name with that many posts; return their ids."""
    ids = {}
    with app.app_context():
        db.create_all()
        for name, posts in users.items():
            user = User(username=name, email=f"{name}@example.com", email_confirmed_at=utcnow())
            user.set_password("bench-password-1")
            db.session.add(user)
            db.session.commit()
            insert_posts(user.id, [f"benchmark post {i} with some words ✨" for i in range(posts)])
            ids[name] = user.id
    return ids


def run_child(module: str, *args: str) -> dict:
    """Run ``python -m module args`` in a fresh process; return the JSON it prints last.

    The process's peak resident memory is added as ``peak_rss_mb``, measured from outside:
    the kernel's high-water mark for the process (``VmHWM``), read until it exits.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = HighWaterMark(process.pid)
    out, errors = process.communicate()
    peak.stop()
    if process.returncode:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{errors}")
    return json.loads(out.strip().splitlines()[-1]) | {"peak_rss_mb": peak.kib / 1024}


class HighWaterMark:
    """Follow a process's peak resident memory from outside, every 20 ms until it ends."""

    def __init__(self, pid: int) -> None:
        self.status = Path(f"/proc/{pid}/status")
        self.kib = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._done.wait(0.02):
            try:
                text = self.status.read_text()
            except (FileNotFoundError, ProcessLookupError):
                return
            match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE)
            if match:  # absent once the process is a zombie
                self.kib = max(self.kib, int(match.group(1)))

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)


def session_cookie(base_url: str, username: str, password: str) -> str:
    """Sign in through the real login form; return the session's Cookie header."""
    session = requests.Session()
    page = session.get(base_url + "/auth/login", timeout=10).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    form = {"username": username, "password": password, "csrf_token": token}
    session.post(base_url + "/auth/login", data=form, timeout=10).raise_for_status()
    return "; ".join(f"{k}={v}" for k, v in session.cookies.items())


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="microblog-bench-"))
