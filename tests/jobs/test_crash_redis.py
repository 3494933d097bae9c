"""An export survives its Redis going away for longer than the heartbeat timeout: a real
`dramatiq tasks` process on a Redis of the test's own, frozen mid-export, then let go. The
export ends once, with one email. (Workers killed or frozen are in ``test_crash.py``.)
"""

import signal
import time

import pytest

from devkit.services import RedisServer, wait_until
from microblog import create_app
from microblog.exports.jobs import export_posts
from microblog.exports.models import Archive
from microblog.extensions import db
from microblog.jobs.launch import launch
from microblog.jobs.models import Task, TaskStatus
from tests.support.data import emails_to, final_row

# Minutes of wall time, mostly waiting: started first, beside the rest of the suite.
pytestmark = pytest.mark.long


@pytest.mark.parametrize("outage_seconds", [12, 30])
def test_an_export_survives_redis_going_away_past_the_heartbeat_timeout(
    live_database, live_user, workers, mailbox, smtp_server, worker_log, outage_seconds
):
    # Given a worker on a Redis of this test's own, exporting many posts
    own_redis = RedisServer().start()
    app = create_app({"SQLALCHEMY_DATABASE_URI": live_database, "REDIS_URL": own_redis.url,
                      "MAIL_PORT": smtp_server.port})  # fmt: skip
    try:
        user_id, username = live_user("cutoff", posts=60_000)
        workers(REDIS_URL=own_redis.url)
        with app.app_context():
            task_id = launch(export_posts, user_id).id

            def running() -> bool:
                db.session.expire_all()
                return db.session.get(Task, task_id).done > 0

            wait_until(running, 60, "the export to be under way")
            # When Redis stops answering for longer than the heartbeat timeout (10 s)
            own_redis.process.send_signal(signal.SIGSTOP)
            time.sleep(outage_seconds)  # the outage itself, not a wait for something to happen
            own_redis.process.send_signal(signal.SIGCONT)

            # Then the export ends succeeded, once, with one email
            def final() -> bool:
                db.session.expire_all()
                return db.session.get(Task, task_id).status in ("succeeded", "failed")

            wait_until(final, 120, "the export to end")
            archive = db.session.get(Archive, task_id)
            assert archive is not None and archive.emailed_at is not None
        task = final_row(app, task_id, user_id)
        assert (task.status, task.done) == (TaskStatus.SUCCEEDED, 60_000)
        assert emails_to(mailbox, username) == 1
        worker_log.seek(0)
        assert "Traceback" not in worker_log.read()
    finally:
        with app.app_context():
            db.engine.dispose()
        own_redis.stop()
