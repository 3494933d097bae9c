"""No task stays queued or running forever; expired archives are deleted."""

from datetime import timedelta

from sqlalchemy import func, select, update

from devkit.pytest_plugin import in_process_worker
from devkit.services import wait_until
from microblog import create_app
from microblog.exports.jobs import delete_expired_archives, export_posts
from microblog.exports.models import Archive, ArchiveChunk
from microblog.extensions import db
from microblog.jobs import registry
from microblog.jobs.launch import launch
from microblog.jobs.models import Task, TaskStatus
from microblog.jobs.worker.reaper import (
    LOST_REASON,
    delete_old_tasks,
    purge_dead_letters,
    reap,
    run_pass,
)
from microblog.models import utcnow
from microblog.posts.seed import seed_demo

GRACE = timedelta(minutes=2)


def age(task_id: str, by: timedelta) -> None:
    db.session.execute(update(Task).where(Task.id == task_id).values(updated_at=utcnow() - by))
    db.session.commit()


def launched_task(app, user_id: int, lose_message: bool, older_than_grace: bool) -> str:
    """Launch an export; optionally lose its message (empty its Redis database) and age its row."""
    with app.app_context():
        task_id = launch(export_posts, user_id).id
        if lose_message:
            app.extensions["dramatiq"].client.flushdb()
        if older_than_grace:
            age(task_id, GRACE * 2)
        return task_id


def test_reaper_fails_an_old_task_that_no_message_backs(app, make_user, recorded_events):
    # Given a task whose message is gone (Redis flushed after the launch)
    task_id = launched_task(app, make_user("alice"), lose_message=True, older_than_grace=True)
    with app.app_context():
        # When the reaper passes
        reaped = reap(app.extensions["dramatiq"], GRACE)

        # Then the task failed with a reason, and the user was told
        assert reaped == [task_id]
        task = db.session.get(Task, task_id)
        assert (task.status, task.error) == (TaskStatus.FAILED, LOST_REASON)
    assert recorded_events.finished(task_id).data["error"] == LOST_REASON


def test_reaper_leaves_a_task_whose_message_is_still_queued(app, app_context, make_user):
    task_id = launched_task(app, make_user("alice"), lose_message=False, older_than_grace=True)
    assert reap(app.extensions["dramatiq"], GRACE) == []
    assert db.session.get(Task, task_id).status == TaskStatus.QUEUED


def test_reaper_leaves_a_recent_task_alone(app, app_context, make_user):
    task_id = launched_task(app, make_user("alice"), lose_message=True, older_than_grace=False)
    assert reap(app.extensions["dramatiq"], GRACE) == []
    assert db.session.get(Task, task_id).status == TaskStatus.QUEUED


def test_worker_boot_runs_the_reaper(app, make_user):
    task_id = launched_task(app, make_user("alice"), lose_message=True, older_than_grace=True)
    with in_process_worker(app, threads=1):
        with app.app_context():

            def reaped() -> bool:
                db.session.expire_all()
                return db.session.get(Task, task_id).status == TaskStatus.FAILED

            wait_until(reaped, 30, "the reaper to run at worker boot")


def test_expired_archives_are_deleted_and_their_link_says_so(client, app, worker, recorded_events):
    # Given a finished export whose archive has expired
    with app.app_context():
        demo = seed_demo(posts=20)
        demo_id = demo.id
        task_id = launch(export_posts, demo_id).id
    recorded_events.finished(task_id)
    client.post("/auth/login", data={"username": "demo", "password": "demo-password-1"})
    assert client.get(f"/exports/{task_id}/download").status_code == 200
    with app.app_context():
        db.session.execute(update(Archive).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()

        # When the reaper's chore runs, the archive and its chunks are gone
        assert client.get(f"/exports/{task_id}/download").status_code == 410
        assert delete_expired_archives() == 1
        assert db.session.scalar(select(func.count()).select_from(ArchiveChunk)) == 0

    # Then the link shows the expired page
    response = client.get(f"/exports/{task_id}/download")
    assert response.status_code == 410
    assert "This export has expired" in response.get_data(as_text=True)


def test_ended_tasks_are_deleted_after_their_retention_failed_ones_later(app, make_user):
    alice = make_user("alice")
    ages = {"succeeded": [29, 31], "cancelled": [31], "failed": [31, 91], "queued": [400]}
    ids = {}
    with app.app_context():
        for status, days in ages.items():
            for day in days:
                task = Task(user_id=alice, name="export_posts", description="Exporting",
                            status=status, updated_at=utcnow() - timedelta(days=day))  # fmt: skip
                db.session.add(task)
                db.session.flush()
                # updated_at is set on every write: put the age back after the insert
                db.session.execute(
                    update(Task).where(Task.id == task.id)
                    .values(updated_at=utcnow() - timedelta(days=day))
                )  # fmt: skip
                ids[status, day] = task.id
        db.session.commit()
        assert delete_old_tasks() == 3
        kept = set(db.session.scalars(select(Task.id)))
    assert kept == {ids["succeeded", 29], ids["failed", 31], ids["queued", 400]}


def test_dead_letters_of_ended_tasks_are_purged_and_of_active_ones_kept(app, make_user):
    # Given two tasks whose messages both ended in the dead-letter queue
    alice, bob = make_user("alice"), make_user("bob")
    broker = app.extensions["dramatiq"]
    with app.app_context():
        ended, active = launch(export_posts, alice).id, launch(export_posts, bob).id
        db.session.execute(update(Task).where(Task.id == ended).values(status="failed"))
        db.session.commit()
        xq, queue = broker.key("default.XQ"), broker.key("default")
        for task_id in (ended, active):
            entry = f"{task_id}.0.q"
            broker.client.lrem(queue, 0, entry)
            broker.client.zadd(xq, {entry: 1})
            broker.client.hset(f"{xq}.msgs", entry, broker.client.hget(f"{queue}.msgs", entry))
        # When the reaper's chores run
        assert purge_dead_letters(broker) == 1
    # Then only the active task's dead letter is left, for an operator to look at
    assert [e.decode() for e in broker.client.zrange(xq, 0, -1)] == [f"{active}.0.q"]
    assert broker.client.hkeys(f"{xq}.msgs") == [f"{active}.0.q".encode()]


def test_a_chore_runs_only_in_apps_whose_job_modules_declare_it(app, app_config, make_user):
    # Given an expired archive, and an app without the export job (another deployment's)
    alice = make_user("alice")
    without_exports = create_app(app_config | {"JOB_MODULES": ["microblog.stats.jobs"]})
    with app.app_context():
        task_id = launch(export_posts, alice).id
        db.session.add(Archive(task_id=task_id, filename="a.json.gz", size=1, json_size=1,
                               post_count=0, expires_at=utcnow() - timedelta(days=1)))  # fmt: skip
        db.session.commit()

    # When that app's reaper passes, the export's chore does not run there
    with without_exports.app_context():
        try:
            assert delete_expired_archives not in registry.chores()
            run_pass(without_exports.extensions["dramatiq"])
            assert db.session.get(Archive, task_id) is not None
        finally:
            db.session.remove()
            db.engine.dispose()  # its connections, closed here rather than by the collector

    # Then it runs in the app whose JOB_MODULES declare it
    with app.app_context():
        assert delete_expired_archives in registry.chores()
        run_pass(app.extensions["dramatiq"])
        assert db.session.get(Archive, task_id) is None
