"""The production paths, tried as a newcomer and an operator would, on a clean copy of the tree.

A newcomer runs the README's run command on a fresh clone: it must install what it needs by
itself (and nothing from the test requirements), serve the site, deliver an export's email to
the local catcher, and stop everything on Ctrl-C. The image is built and run for real in
test_image.py.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from devkit.services import free_port, wait_until
from microblog.posts.seed import DEMO_PASSWORD, DEMO_USERNAME
from tests.support import ROOT
from tests.support.web import live_session, start_export

# Minutes of wall time, mostly waiting: started first, beside the rest of the suite.
pytestmark = pytest.mark.long


def tree_files() -> list[str]:
    """Return the files a fresh clone of this work tree would hold (committed or not)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True, timeout=30,
    ).stdout.decode()  # fmt: skip
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def copy_tree(destination: Path, leave_out=lambda name: False) -> Path:
    for name in tree_files():
        if not leave_out(name):
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target)
    return destination


def newcomer_environment(tmp: Path) -> dict[str, str]:
    """A shell's environment with nothing of this test session's virtual environment in it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = os.pathsep.join(
        entry for entry in env["PATH"].split(os.pathsep) if not entry.startswith(sys.prefix)
    )
    env["TMPDIR"] = str(tmp)
    env["PORT"] = str(free_port())  # not 8000, which a developer's own `make run` may hold
    return env


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_run_command_serves_a_fresh_clone_and_stopping_it_leaves_nothing(tmp_path, stop_signal):
    # Given a fresh clone, and a shell that knows nothing of the test requirements
    clone = copy_tree(tmp_path / "clone")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    log_path = tmp_path / "run.log"

    # When the newcomer types the README's run command
    with log_path.open("w") as log:
        make = subprocess.Popen(
            ["make", "run"], cwd=clone, env=newcomer_environment(scratch),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        banner = re.compile(r"running at (http://127\.0\.0\.1:\d+)/")

        def banner_printed():
            if make.poll() is not None:
                raise AssertionError(
                    f"`make run` exited with {make.returncode}:\n{log_tail(log_path)}"
                )
            return banner.search(log_path.read_text(errors="replace"))

        wait_until(banner_printed, 600, "the run command's banner")
        base_url = banner_printed().group(1)

        # Then the site answers at once, the demo signs in, and an export's email is caught
        session = live_session(base_url, DEMO_USERNAME, DEMO_PASSWORD)
        start_export(session, base_url)
        mail = clone / "instance" / "mail"
        wait_until(lambda: mail.is_dir() and any(mail.glob("*.eml")), 60, "the export's email")
        message = next(mail.glob("*.eml")).read_text(errors="replace")
        assert f"To: {DEMO_USERNAME}@example.com" in message
        assert "/exports/" in message

        # When Ctrl-C (or a process manager's SIGTERM) reaches the command's process group
        started = psutil.Process(make.pid).children(recursive=True)
        os.killpg(make.pid, stop_signal)
        make.wait(timeout=60)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait(timeout=10)

    # Then every process it started is gone, and nothing is left in temporary directories
    alive = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left running: {[p.cmdline() for p in alive]}"
    assert list(scratch.iterdir()) == []
    output = log_path.read_text(errors="replace")
    assert "stopping: web, worker, then Redis and the mail catcher" in output
    assert "CRITICAL" not in output and "Traceback" not in output, log_tail(log_path, 80)
