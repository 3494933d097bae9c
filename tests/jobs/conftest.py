"""Fixtures of the job tests that run `dramatiq tasks` processes, crash workers among them."""

import signal
import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support.servers import signal_group


@pytest.fixture
def worker_log(tmp_path):
    with (tmp_path / "worker.log").open("w+") as log:
        yield log
        log.seek(0)
        print(log.read())  # pytest shows it when the test fails


@pytest.fixture
def workers(live_env, worker_log, tmp_path):
    """Start `dramatiq tasks` (or the crash worker) processes, on the test's own Redis
    database; all are stopped afterwards."""
    started: list[subprocess.Popen] = []

    def start(crash_at: str | None = None, extra_args: tuple = (), **env: str) -> subprocess.Popen:
        module = "tests.support.crash_worker" if crash_at else "tasks"
        report = tmp_path / f"crash-report-{len(started)}"
        crash = {"CRASH_AT": crash_at, "CRASH_REPORT": str(report)} if crash_at else {}
        env = {**live_env, **env, **crash}
        process = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", module, "--processes", "1", "--threads", "2",
             *extra_args],
            cwd=ROOT, env=env, stdout=worker_log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        process.report = report
        worker_log.write(f"--- started pid {process.pid}: {module} {crash}\n")
        worker_log.flush()  # the log says whose lines follow
        started.append(process)
        return process

    yield start
    for process in started:
        signal_group(process, signal.SIGCONT)
        signal_group(process, signal.SIGKILL)
        process.wait(timeout=30)
