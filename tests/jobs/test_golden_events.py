"""What each job type sends the page, checked against golden files (tests/jobs/golden/*.json).

A change in what the page receives shows up here as a diff; if it is meant, record the files
again with ``pytest --update-golden tests/jobs/test_golden_events.py`` and commit them.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from microblog.exports.jobs import export_posts
from microblog.extensions import db
from microblog.jobs.models import Task
from microblog.jobs.recording import Recording, comparable
from microblog.stats.jobs import count_words
from tests.support import ROOT
from tests.support.data import insert_posts

WORDS = ["The cat sat.", "The cat ran; the dog didn't.", "Ünïcode words count too: café CAFÉ"]


def test_an_export_sends_what_its_golden_file_says(app, make_user, run_job, golden, mailbox):
    user_id = make_user("golden")
    with app.app_context():
        insert_posts(user_id, [f"post {i}" for i in range(20)])
    recording = run_job(export_posts, user_id)
    golden("export_posts", recording)
    assert len(mailbox) == 1


def test_a_word_count_sends_what_its_golden_file_says(app, make_user, run_job, golden):
    user_id = make_user("counter")
    with app.app_context():
        insert_posts(user_id, WORDS)
    recording = run_job(count_words, user_id)
    golden("count_words", recording)
    with app.app_context():
        task = db.session.get(Task, recording.events[-1]["data"]["task_id"])
        assert task.result == {"posts": 3, "words": 15,
                               "top": [["the", 3], ["cat", 2], ["café", 2], ["sat", 1],
                                       ["ran", 1], ["dog", 1], ["didn't", 1], ["ünïcode", 1],
                                       ["words", 1], ["count", 1]]}  # fmt: skip
    assert recording.events[-1]["data"]["summary"] == "3 posts · 15 words · most used: the"


def test_a_changed_sequence_fails_with_a_readable_diff(golden, request):
    if request.config.getoption("--update-golden"):
        pytest.skip("with --update-golden it would write its changed sequence as the golden file")
    recording = Recording.load(ROOT / "tests" / "jobs" / "golden" / "count_words.json")
    recording.events[-1]["data"]["summary"] = "something else"
    with pytest.raises(pytest.fail.Exception) as failure:
        golden("count_words", recording)
    message = str(failure.value)
    assert '-   "summary": "3 posts · 15 words · most used: the",' in message
    assert '+   "summary": "something else",' in message


def test_progress_events_collapse_to_the_first_and_last_of_each_run():
    def event(status: str, progress: int) -> dict:
        data = {"task_id": "abc", "status": status, "progress": progress}
        return {"type": "task.progress", "data": data, "after_ms": 0}

    slow = Recording("job", [event("queued", 0), *(event("running", p) for p in range(0, 101, 10))])
    fast = Recording("job", [event("queued", 0), event("running", 0), event("running", 100)])
    assert comparable(slow) == comparable(fast)
    assert [e["data"]["progress"] for e in comparable(slow)] == [0, 0, 100]
    assert {e["data"]["task_id"] for e in comparable(slow)} == {"<task id>"}


PROJECT_TEST = '''
    """A job type's test in another project, with only the plugin's fixtures."""

    import pytest

    from microblog import create_app
    from microblog.extensions import db
    from microblog.stats.jobs import count_words
    from microblog.auth.models import User


    @pytest.fixture
    def app(redis_server, smtp_server, tmp_path):
        app = create_app({
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "REDIS_URL": redis_server.url, "MAIL_PORT": smtp_server.port, "SECRET_KEY": "t",
        })
        with app.app_context():
            db.create_all()
            db.session.add(User(username="ada", email="ada@example.com", password_hash="x"))
            db.session.commit()
        return app


    def test_counting(run_job, golden):
        recording = run_job(count_words, 1)
        assert recording.events[-1]["data"]["status"] == "succeeded"
        golden("empty_count", recording)
'''


def test_the_plugin_serves_another_projects_tests(tmp_path):
    (tmp_path / "test_counting.py").write_text(textwrap.dedent(PROJECT_TEST))
    command = [sys.executable, "-m", "pytest", "-p", "devkit.pytest_plugin", "-p", "no:randomly",
               "-p", "no:cacheprovider", "-o", "addopts=", "-q", str(tmp_path)]  # fmt: skip
    options = {"cwd": tmp_path, "capture_output": True, "text": True, "timeout": 120,
               "env": {**os.environ, "PYTHONPATH": str(ROOT)}}  # fmt: skip
    first = subprocess.run([*command, "--update-golden"], **options)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (tmp_path / "golden" / "empty_count.json").exists()
    again = subprocess.run(command, **options)
    assert again.returncode == 0 and "1 passed" in again.stdout, again.stdout + again.stderr
