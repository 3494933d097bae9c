"""Recovery benchmark: a worker lost, stopped or cut off from a dependency mid-export → the
export running again, with the defaults.

    python -m bench.recovery_bench [--trials 10]

Kills: each trial starts a worker that stops itself mid-export
(``tests.support.crash_worker``), then either another worker that is already live when the
first is killed ("live"), or one started right after the kill, as a supervisor restarting the
dead one would ("restart"); the time runs
from the SIGKILL to the task's row showing the next attempt running. "graceful stop": the busy
worker is stopped with a one-second ``--worker-shutdown-timeout`` while its job is stuck on a
relay that never answers; the time runs from its exit to the next attempt running elsewhere.
Outages: the mail relay (or PostgreSQL) is away for a while mid-export; the time runs from the
dependency answering again to the next attempt running. Default settings throughout: a 10 s
heartbeat timeout, maintenance every second, retries doubling from 2 s up to a minute.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

import psutil
import redis

from bench.common import ROOT, create_database, make_app, scratch_dir
from devkit.services import MailCatcher, RedisServer, free_port, wait_until
from microblog.exports.jobs import export_posts
from microblog.extensions import db
from microblog.jobs.ending import end
from microblog.jobs.launch import launch
from microblog.jobs.models import Task, TaskStatus
from microblog.jobs.worker.liveness import WORKERS_KEY
from tests.support.data import Tarpit

POSTS = 20_000


def start_worker(env: dict[str, str], crash_at: str | None = None, *args: str) -> subprocess.Popen:
    module = "tests.support.crash_worker" if crash_at else "tasks"
    env = {**env, **({"CRASH_AT": crash_at} if crash_at else {})}
    return subprocess.Popen(
        [sys.executable, "-m", "dramatiq", module, "--processes", "1", "--threads", "2", *args],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip


def kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def stopped(process: subprocess.Popen) -> bool:
    children = psutil.Process(process.pid).children(recursive=True)
    return any(child.status() == psutil.STATUS_STOPPED for child in children)


def beating(redis_url: str, worker: subprocess.Popen) -> bool:
    """Tell whether one of ``worker``'s processes beat in the last two seconds (its
    maintenance tick, which names it "host:pid")."""
    pids = {str(child.pid) for child in psutil.Process(worker.pid).children(recursive=True)}
    recent = redis.Redis.from_url(redis_url).zrangebyscore(
        WORKERS_KEY, time.time() * 1000 - 2000, "+inf"
    )
    return any(name.decode().rsplit(":", 1)[1] in pids for name in recent)


def trial(app, env: dict[str, str], user_id: int, live: bool) -> float:
    """Run one kill; return the seconds from the kill to the next attempt running."""
    first = start_worker(env, crash_at="mid-read")
    second = None
    try:
        with app.app_context():
            task_id = launch(export_posts, user_id).id
            wait_until(lambda: stopped(first), 60, "the first worker to stop mid-export")
            if live:
                second = start_worker(env)
                wait_until(lambda: beating(env["REDIS_URL"], second), 60, "a second worker")
            killed_at = time.monotonic()
            kill(first)
            if not live:
                second = start_worker(env)

            def running_again() -> bool:
                db.session.expire_all()
                task = db.session.get(Task, task_id)
                return task.attempts >= 2 and task.status in ("running", "succeeded")

            wait_until(running_again, 120, "the export to run again")
            elapsed = time.monotonic() - killed_at

            def succeeded() -> bool:
                db.session.expire_all()
                return db.session.get(Task, task_id).status == "succeeded"

            wait_until(succeeded, 120, "the export to finish")
            return elapsed
    finally:
        kill(first)
        if second is not None:
            kill(second)


def attempt_running(task_id: str, number: int) -> bool:
    db.session.expire_all()
    task = db.session.get(Task, task_id)
    return task.attempts >= number and task.status in ("running", "succeeded")


def graceful_stop(app, env: dict[str, str], user_id: int) -> float:
    """Stop the busy worker past a 1 s shutdown timeout; return the seconds from its exit to
    the next attempt running on another worker."""
    pit = Tarpit()
    stuck = {**env, "MAIL_PORT": str(pit.port)}
    first = start_worker(stuck, None, "--worker-shutdown-timeout", "1000")
    second = None
    try:
        with app.app_context():
            task_id = launch(export_posts, user_id).id
            wait_until(lambda: attempt_running(task_id, 1) and progress_of(task_id) == 100, 120,
                       "the export to reach its email")  # fmt: skip
            second = start_worker(stuck)
            wait_until(lambda: beating(env["REDIS_URL"], second), 60, "a second worker")
            first.terminate()  # to the main process, as a supervisor does; it tells its workers
            first.wait(timeout=30)
            exited = time.monotonic()
            wait_until(lambda: attempt_running(task_id, 2), 60, "the export to run again")
            elapsed = time.monotonic() - exited
            end(task_id, TaskStatus.CANCELLED)  # stuck on the relay: free the slot
            return elapsed
    finally:
        kill(first)
        if second is not None:
            kill(second)
        pit.close()


def progress_of(task_id: str) -> int:
    db.session.expire_all()
    return db.session.get(Task, task_id).progress


def status_of(task_id: str) -> str:
    db.session.expire_all()
    return str(db.session.get(Task, task_id).status)


def relay_outage(app, env: dict[str, str], user_id: int, seconds: float) -> float:
    """Keep the relay away ``seconds`` while an export's email is due; return the seconds from
    its return to the next attempt running."""
    port = free_port()
    worker = start_worker({**env, "MAIL_PORT": str(port)})
    try:
        with app.app_context():
            task_id = launch(export_posts, user_id).id
            wait_until(lambda: attempt_running(task_id, 2), 120, "a first retry")
            time.sleep(seconds)  # the outage itself
            db.session.expire_all()
            before = db.session.get(Task, task_id).attempts
            relay = MailCatcher(port=port).start()
            back = time.monotonic()
            try:
                wait_until(lambda: attempt_running(task_id, before + 1), 300, "a retry")
                elapsed = time.monotonic() - back
                wait_until(lambda: status_of(task_id) == "succeeded", 300, "the export")
                return elapsed
            finally:
                relay.stop()
    finally:
        kill(worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()

    directory = scratch_dir()
    redis_server, mail = RedisServer().start(), MailCatcher().start()
    try:
        database = directory / "bench.sqlite"
        app = make_app(database, redis_server.url)
        user_id = create_database(app, {"crash": POSTS})["crash"]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": f"sqlite:///{database}",
               "REDIS_URL": redis_server.url, "MAIL_PORT": str(mail.port)}  # fmt: skip
        for name, live in (("live", True), ("restart", False)):
            report(f"{name} kill", [trial(app, env, user_id, live) for _ in range(args.trials)])
        report("graceful stop", [graceful_stop(app, env, user_id) for _ in range(args.trials)])
        for seconds in (20, 60):
            times = [relay_outage(app, env, user_id, seconds) for _ in range(min(args.trials, 3))]
            report(f"relay away {seconds} s", times, "relay back")
    finally:
        mail.stop()
        redis_server.stop()


def report(name: str, times: list[float], since: str = "kill/exit") -> None:
    print(f"{name:18} {since} → running again over {len(times)} trials: "
          f"min {min(times):.1f} s, median {statistics.median(times):.1f} s, "
          f"max {max(times):.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
