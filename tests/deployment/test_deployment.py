"""The compose file and the image are deployable as the docs say, checked without an engine.

What an engine would be needed for (building and starting the containers) is covered by
test_fresh_install.py, which installs and runs the image's build context the same way.
"""

import re

import pytest
import yaml

from microblog import config
from tests.support import ROOT

APP_SERVICES = ("migrate", "web", "worker")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def documented_settings() -> list[str]:
    """Return every variable named in the first column of the configuration table."""
    docs = (ROOT / "docs" / "configuration.md").read_text()
    table = docs.split("\n## ", 1)[0]
    first_column = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return [name for cell in first_column for name in re.findall(r"`([A-Z_]+)`", cell)]


def milliseconds(duration: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)", duration).groups()
    return int(number) * {"ms": 1, "s": 1000, "m": 60_000}[unit]


def test_every_documented_setting_is_read_and_can_be_set_in_the_env_file():
    settings = documented_settings()
    assert len(settings) > 20, settings
    read_by_app = config.environment_variables()
    read_by_gunicorn = set(re.findall(r'environ\.get\("([A-Z_]+)"', (ROOT / "gunicorn.conf.py")
                                      .read_text()))  # fmt: skip
    example = (ROOT / ".env.example").read_text()
    for name in settings:
        assert name in read_by_app | read_by_gunicorn, f"{name} is documented but never read"
        assert re.search(rf"^#? ?{name}=", example, re.MULTILINE), f"{name} missing in .env.example"


def test_app_services_take_the_env_file_and_never_bake_it_into_the_image(compose):
    for name in APP_SERVICES:
        env_files = compose["services"][name]["env_file"]
        assert {"path": ".env", "required": False} in env_files, name
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored and "tests" in ignored


def test_web_and_worker_start_only_after_the_migrations_succeed(compose):
    for name in ("web", "worker"):
        depends = compose["services"][name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
    assert compose["services"]["migrate"]["command"][-2:] == ["db", "upgrade"]
    assert compose["services"]["migrate"]["restart"] == "no"


def test_web_scales_behind_a_proxy_that_trusts_itself_only(compose):
    web, proxy = compose["services"]["web"], compose["services"]["proxy"]
    assert "ports" not in web, "a fixed host port stops `--scale web=N`"
    assert proxy["ports"]
    proxy_address = proxy["networks"]["backend"]["ipv4_address"]
    assert web["environment"]["FORWARDED_ALLOW_IPS"] == proxy_address


def test_the_proxy_streams_events_unbuffered_with_long_reads(compose):
    nginx = compose["configs"]["nginx"]["content"]
    stream = nginx.split("location = /stream", 1)[1].split("}", 1)[0]
    assert "proxy_buffering off;" in stream
    read_timeout = re.search(r"proxy_read_timeout (\d+)(h|m|s);", stream).groups()
    seconds = int(read_timeout[0]) * {"h": 3600, "m": 60, "s": 1}[read_timeout[1]]
    assert seconds > config.defaults("")["SSE_MAX_STREAM_SECONDS"]
    assert "resolver 127.0.0.11" in nginx, "scaled-out replicas need DNS asked again"


def test_the_worker_stops_gracefully_within_its_grace_period(compose):
    worker = compose["services"]["worker"]
    command = worker["command"]
    assert command[:2] == ["dramatiq", "tasks"], "exec form, so dramatiq itself gets SIGTERM"
    assert worker["stop_signal"] == "SIGTERM"
    shutdown_ms = int(command[command.index("--worker-shutdown-timeout") + 1])
    assert shutdown_ms < milliseconds(worker["stop_grace_period"])
    assert milliseconds(worker["stop_grace_period"]) >= 60_000, "longer than a typical export"
    assert worker["healthcheck"]["test"] == ["CMD", "flask", "--app", "wsgi", "check"]


def test_every_healthcheck_has_a_start_period(compose):
    checked = {name: s["healthcheck"] for name, s in compose["services"].items()
               if "healthcheck" in s}  # fmt: skip
    assert set(checked) >= {"web", "worker", "proxy", "redis", "postgres"}
    for name, healthcheck in checked.items():
        assert "start_period" in healthcheck, name


def test_redis_keeps_queued_jobs_across_restarts(compose):
    redis = compose["services"]["redis"]
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_the_image_runs_as_a_non_root_user_on_the_production_lock():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^COPY requirements\.txt \.$", dockerfile, re.MULTILINE)
    assert "requirements-" not in dockerfile
    assert re.search(r"^USER \d+", dockerfile, re.MULTILINE)
    base = re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE).group(1)
    assert base.startswith("python:3.") and ":latest" not in base
