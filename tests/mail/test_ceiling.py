"""No address gets more than the ceiling of emails, whatever sends them: fifty resets and
exports at one address deliver at most the ceiling, the rest dropped with a WARNING and the
export's card saying why; and starting exports is throttled per user."""

import logging
import time

import pytest
from sqlalchemy import select

from devkit.services import wait_until
from microblog.exports.jobs import export_posts
from microblog.extensions import db
from microblog.jobs.launch import launch
from microblog.jobs.models import Task
from microblog.recovery.mail import send_password_reset
from tests.support.servers import wait_until_idle
from tests.support.web import JSON

CEILING = 10


@pytest.fixture
def app_config(app_config):
    return {**app_config, "MAIL_LIMIT_PER_ADDRESS_HOUR": CEILING, "THROTTLE_ENABLED": False}


def test_fifty_emails_at_one_address_deliver_at_most_the_ceiling(
    app, make_user, worker, mailbox, recorded_events, caplog
):
    # Given ann, and bob at another address
    ann = make_user("ann")
    make_user("bob")
    first_hour = int(time.time()) // 3600
    with caplog.at_level(logging.WARNING, logger="microblog"):
        # When fifty emails are asked for her address: resets, and exports one after another
        for _ in range(45):
            send_password_reset.send("ann@example.com")
        wait_until_idle(app.extensions["dramatiq"], timeout=60)
        for _ in range(5):
            with app.app_context():
                task_id = launch(export_posts, ann).id
            recorded_events.finished(task_id)
        send_password_reset.send("bob@example.com")
        wait_until(lambda: any(m["To"] == "bob@example.com" for m in mailbox), 30, "bob's link")
    # Then she got exactly the ceiling (twice, if a clock hour began meanwhile), bob his link
    windows = int(time.time()) // 3600 - first_hour + 1
    delivered = len([m for m in mailbox if m["To"] == "ann@example.com"])
    assert delivered == CEILING or (windows > 1 and CEILING < delivered <= windows * CEILING)
    assert "an email is dropped: 1 address(es) at example.com had the most emails" in caplog.text
    # And the exports past it say on their card that they were not emailed
    with app.app_context():
        results = [t.result for t in db.session.scalars(select(Task))]
    assert windows > 1 or all(r["not_emailed"] == "ceiling" for r in results), results


def test_exports_are_throttled_per_user(make_app, make_user):
    app = make_app(THROTTLE_ENABLED=True, EXPORT_LIMIT_PER_USER="2 per hour")
    make_user("ann")
    client = app.test_client()
    client.post("/auth/login", data={"username": "ann", "password": "correct-horse-9"})
    answers = [client.post("/exports", headers=JSON) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 409, 429]
    assert "Too many attempts" in answers[2].get_json()["message"]
    assert answers[2].headers["Retry-After"]
