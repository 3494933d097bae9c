"""Shared set-up for benchmarks: a throwaway database and Redis, and fast seeding."""

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from flask import Flask

from microblog import create_app
from microblog.auth.models import User
from microblog.extensions import db
from tests.helpers import insert_posts

ROOT = Path(__file__).resolve().parent.parent


def make_app(database: Path, redis_url: str) -> Flask:
    return create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}", "REDIS_URL": redis_url})


def create_database(app: Flask, users: dict[str, int]) -> dict[str, int]:
    """Create the schema and one user per name with that many posts; return their ids."""
    ids = {}
    with app.app_context():
        db.create_all()
        for name, posts in users.items():
            user = User(username=name, email=f"{name}@example.com")
            user.set_password("bench-password-1")
            db.session.add(user)
            db.session.commit()
            insert_posts(user.id, [f"benchmark post {i} with some words ✨" for i in range(posts)])
            ids[name] = user.id
    return ids


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(module: str, *args: str) -> dict:
    """Run ``python -m module args`` in a fresh process; return the JSON it prints last."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="microblog-bench-"))
