"""Job types: declared by JOB_MODULES, known exactly by real workers, and deploy skew handled."""

import os
import re
import signal
import textwrap

import pytest

from devkit.services import wait_until
from microblog import create_app
from microblog.config import defaults
from microblog.extensions import db
from microblog.jobs.events import task_event
from microblog.jobs.launch import launch
from microblog.jobs.registry import job_types
from microblog.jobs.worker.runner import UNKNOWN_JOB_TYPE
from microblog.stats.jobs import count_words
from tests.support import ROOT
from tests.support.data import insert_posts, task_row
from tests.support.servers import running_worker
from tests.support.web import JSON

# Minutes of wall time, mostly waiting: started first, beside the rest of the suite.
pytestmark = pytest.mark.long

ERRANDS = [
    "send_address_change_notice",
    "send_confirmation",
    "send_password_changed",
    "send_password_reset",
]
OLD_VERSION = {"JOB_MODULES": "microblog.exports.jobs"}  # a worker from before count_words


def worker_runs(live_app, predicate, what: str):
    """Wait until ``jobs status`` shows the live workers as ``predicate`` wants; return it."""
    runner = live_app.test_cli_runner()
    output = []

    def shown() -> bool:
        output[:] = [runner.invoke(args=["jobs", "status"]).output]
        return predicate(output[0])

    wait_until(shown, 30, what)
    return output[0]


def test_the_app_loads_the_job_types_of_its_job_modules(app):
    with app.app_context():
        assert sorted(job_types()) == ["count_words", "export_posts"]
    # and every errand, whatever JOB_MODULES says
    assert set(app.extensions["dramatiq"].get_declared_actors()) == {
        "count_words", "export_posts", *ERRANDS
    }  # fmt: skip


def test_a_real_worker_runs_exactly_the_declared_job_types(live_app, live_env, tmp_path):
    with running_worker(live_env, tmp_path / "worker.log"):
        status = worker_runs(live_app, lambda out: "live workers: 1" in out, "the worker")
    runs = ", ".join(["count_words", "export_posts", *ERRANDS])
    assert status.rstrip().endswith(f"runs: {runs}"), status
    assert "no live worker runs" not in status


def test_a_worker_without_a_job_type_fails_its_tasks_at_once(
    live_app, live_env, live_user, tmp_path
):
    user_id, _ = live_user("skew", posts=5)
    with running_worker({**live_env, **OLD_VERSION}, tmp_path / "old.log"):
        status = worker_runs(live_app, lambda out: "runs: export_posts" in out, "the old worker")
        assert "no live worker runs (their tasks fail at once): count_words" in status
        with live_app.app_context():
            task_id = launch(count_words, user_id).id
        wait_until(lambda: task_row(live_app, task_id).status == "failed", 30,
                   "the old worker to fail the task it cannot run")  # fmt: skip
    task = task_row(live_app, task_id)
    assert task.error == UNKNOWN_JOB_TYPE
    assert "does not know the job type 'count_words'" in task.failure_detail


def test_a_worker_without_a_job_type_leaves_it_for_one_that_has_it(
    live_app, live_env, live_user, tmp_path
):
    user_id, _ = live_user("handover", posts=5)
    old_log = tmp_path / "old.log"
    # A frozen worker counts as live until the heartbeat timeout after its last beat: long
    # enough here that a busy machine's delays cannot make it dead before the old worker
    # looks (at the default 10 s, a loaded run saw the old worker take the message after the
    # frozen one had been silent that long, and fail the task as nobody's)
    env = {**live_env, "JOBS_HEARTBEAT_TIMEOUT_MS": "120000"}
    with (
        running_worker({**env, **OLD_VERSION}, old_log),
        running_worker(env, tmp_path / "new.log") as new,
    ):
        worker_runs(live_app, lambda out: "runs: count_words" in out and "live workers: 2" in out,
                    "both workers")  # fmt: skip
        # Only the old worker takes messages: the new one is frozen, yet still counts as live
        os.killpg(new.pid, signal.SIGSTOP)
        try:
            with live_app.app_context():
                task_id = launch(count_words, user_id).id
            try:
                wait_until(lambda: "back to the queue for one that does" in old_log.read_text(),
                           30, "the old worker to hand the message over")  # fmt: skip
            except TimeoutError as error:  # what the old worker did instead
                raise AssertionError(old_log.read_text()[-3000:]) from error
        finally:
            os.killpg(new.pid, signal.SIGCONT)
        wait_until(lambda: task_row(live_app, task_id).status == "succeeded", 30,
                   "the new worker to run the task")  # fmt: skip
    task = task_row(live_app, task_id)
    assert task.result["posts"] == 5 and task.attempts == 1


@pytest.mark.parametrize("modules", ["microblog.exports.jobs,no.such.module"])
def test_a_job_module_that_does_not_exist_stops_the_app(modules, app_config, monkeypatch):
    from microblog import create_app

    monkeypatch.setenv("JOB_MODULES", modules)
    with pytest.raises(ModuleNotFoundError):
        create_app({k: v for k, v in app_config.items()})


def readme_job_module() -> str:
    """Return the job module the README's "Adding a job type" tells a newcomer to write."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Adding a job type", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    return textwrap.dedent(code)


def test_a_job_module_written_from_the_readme_runs_under_a_real_worker(
    live_app, live_env, live_user, tmp_path, monkeypatch
):
    # Given the README's example module, declared in JOB_MODULES as step 2 says
    package = tmp_path / "newcomer"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "jobs.py").write_text(readme_job_module())
    modules = [*defaults("")["JOB_MODULES"], "newcomer.jobs"]
    monkeypatch.syspath_prepend(str(tmp_path))
    web = create_app({key: live_app.config[key] for key in
                      ("SQLALCHEMY_DATABASE_URI", "REDIS_URL", "MAIL_PORT")}
                     | {"JOB_MODULES": modules})  # fmt: skip
    env = {**live_env, "JOB_MODULES": ",".join(modules),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}  # fmt: skip
    user_id, _ = live_user("newcomer")
    try:
        with web.app_context():
            insert_posts(user_id, ["short", "x" * 250, "y" * 201])
        # When a real worker runs and a user starts the job, with no other change anywhere
        with running_worker(env, tmp_path / "worker.log"):
            worker_runs(web, lambda out: "check_posts" in out, "the worker to run check_posts")
            with web.app_context():
                task_id = launch(job_types()["check_posts"].actor, user_id).id
            wait_until(lambda: task_row(web, task_id).status == "succeeded", 30,
                       "the README's job to succeed")  # fmt: skip
        task = task_row(web, task_id)
        assert task.result == {"long": 2}
        with web.app_context():
            assert task_event(task)["summary"] == "2 long posts"
    finally:
        with web.app_context():
            db.engine.dispose()  # its connections, not the garbage collector's, closed here


def test_users_start_a_job_type_by_name_from_its_button(client, auth):
    auth.signed_in("alice")
    profile = client.get("/user/alice").text
    form = r'<form method="post" action="/tasks/start/count_words" data-job="count_words"'
    assert re.search(form, profile)
    started = client.post("/tasks/start/count_words", headers=JSON)
    assert started.status_code == 202 and started.get_json()["task_id"]
    again = client.post("/tasks/start/count_words", headers=JSON)
    assert again.status_code == 409 and "already under way" in again.get_json()["message"]
    assert re.search(r'id="count-words-button"\s+disabled', client.get("/user/alice").text)
    assert client.post("/tasks/start/no_such_job").status_code == 404
    browser = client.post("/tasks/start/export_posts", data={"next": "/explore"})
    assert browser.status_code == 303 and browser.headers["Location"] == "/explore"
