"""Operators' views over many tasks: do they stay flat from a thousand rows to a million?

    python -m bench.tasks_bench [--sizes 1000 1000000] [--repeat 30]

For each size, a SQLite database is filled with that many task rows (1,000 users, 30 days,
mostly succeeded, 2 % failed, 1 % cancelled, 20 active) and each view is timed in this
process, median of ``--repeat`` runs: the query behind ``tasks list`` and ``/admin/tasks``
(unfiltered, by status, by user), the ``tasks list`` command, the admin page and a
``/metrics`` scrape (through the test client, with Redis), and the explore page (no posts) as the
baseline of what any page costs here.
"""

import argparse
import random
import statistics
import time
from datetime import timedelta

from sqlalchemy import insert

from bench.common import scratch_dir
from devkit.services import RedisServer
from microblog import create_app
from microblog.auth.models import User
from microblog.extensions import db
from microblog.jobs.models import Task, TaskFilter, find_tasks, new_task_id
from microblog.models import utcnow

USERS = 1_000
PASSWORD = "bench-password-1"


def fill(app, tasks: int) -> int:
    """Create the users and ``tasks`` task rows; return the id of a user with many tasks."""
    random.seed(7)
    with app.app_context():
        db.create_all()
        admin = User(username="operator", email="operator@example.com", is_admin=True)
        admin.set_password(PASSWORD)
        db.session.add(admin)
        db.session.execute(
            insert(User),
            [{"username": f"user{i}", "email": f"user{i}@example.com", "password_hash": "x"}
             for i in range(USERS)],
        )  # fmt: skip
        db.session.commit()
        now = utcnow()
        span = timedelta(days=30).total_seconds()
        batch = []
        for i in range(tasks):
            roll = random.random()
            status = "failed" if roll < 0.02 else "cancelled" if roll < 0.03 else "succeeded"
            created = now - timedelta(seconds=random.random() * span)
            batch.append({
                "id": new_task_id(), "user_id": 2 + i % USERS, "name": "export_posts",
                "description": "Exporting your posts", "status": status, "progress": 100,
                "done": 10, "total": 10, "attempts": 1, "created_at": created,
                "updated_at": created, "finished_at": created,
                "error": "The email could not be sent." if status == "failed" else None,
            })  # fmt: skip
            if len(batch) == 10_000:
                db.session.execute(insert(Task), batch)
                batch.clear()
        for user in range(20):  # one active task each (the rule allows no more)
            batch.append({"id": new_task_id(), "user_id": 2 + user, "name": "export_posts",
                          "description": "Exporting your posts", "status": "queued",
                          "created_at": now, "updated_at": now})  # fmt: skip
        db.session.execute(insert(Task), batch)
        db.session.commit()
    return 2


def median_ms(action, repeat: int) -> float:
    action()  # warm caches and statement cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def measure(size: int, repeat: int, redis_url: str) -> dict[str, float]:
    directory = scratch_dir()
    app = create_app({
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{directory / 'tasks.sqlite'}",
        "REDIS_URL": redis_url, "WTF_CSRF_ENABLED": False, "METRICS_TOKEN": "bench",
    })  # fmt: skip
    user_id = fill(app, size)
    client = app.test_client()
    client.post("/auth/login", data={"username": "operator", "password": PASSWORD})
    runner = app.test_cli_runner()

    def query(where: TaskFilter):
        def run():
            with app.app_context():
                assert find_tasks(where, 50)

        return run

    def get(url: str, **headers):
        def run():
            assert client.get(url, headers=headers).status_code == 200

        return run

    def cli():
        assert runner.invoke(args=["tasks", "list"]).exit_code == 0

    views = {
        "/explore, no posts (baseline)": get("/explore"),
        "query: newest 50": query(TaskFilter()),
        "query: failed": query(TaskFilter(statuses=("failed",))),
        "query: one user": query(TaskFilter(user_id=user_id)),
        "flask tasks list": cli,
        "/admin/tasks": get("/admin/tasks"),
        "/admin/tasks?status=failed": get("/admin/tasks?status=failed"),
        "/metrics": get("/metrics", Authorization="Bearer bench"),
    }
    return {name: median_ms(view, repeat) for name, view in views.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    redis = RedisServer().start()
    try:
        results = {size: measure(size, args.repeat, redis.url) for size in args.sizes}
    finally:
        redis.stop()
    small, large = args.sizes[0], args.sizes[-1]
    print(f"\n{'view':<30}" + "".join(f"{f'{size:,} tasks':>18}" for size in args.sizes)
          + f"{'ratio':>8}")  # fmt: skip
    for name in results[small]:
        times = "".join(f"{results[size][name]:>15.2f} ms" for size in args.sizes)
        print(f"{name:<30}{times}{results[large][name] / results[small][name]:>8.2f}")


if __name__ == "__main__":
    main()
