"""Export benchmark: the streaming export job against a seed-style loop, in the same run.

    python -m bench.export_bench [--sizes 10000 100000 1000000] [--baseline-posts 2000]

Each measurement runs in a fresh process so that its peak memory is its own, followed from
outside by the parent (the kernel's high-water mark); the job's own peak allocations come
from a second run under tracemalloc. The time runs from the job's start to its email sent,
the archive stored on the way. The seed-style
loop is the tutorial's: load every post as an ORM object, and for each one write the task's
progress and commit, then dump the whole list as JSON at the end. Its rate does not depend on
the number of posts (one commit each), so it runs on fewer posts to keep the run short.
"""

import argparse
import gzip
import json
import os
import time
import tracemalloc

from sqlalchemy import select

from bench.common import create_database, make_app, run_child, scratch_dir
from devkit.services import MailCatcher, RedisServer
from microblog.extensions import db
from microblog.jobs.launch import launch
from microblog.jobs.models import Task


def export_job(app, user_id: int) -> None:
    from microblog.exports.jobs import export_posts

    with app.app_context():
        task_id = launch(export_posts, user_id).id
        export_posts(task_id)  # the actor's function, run in this process
        assert db.session.get(Task, task_id).status == "succeeded"


def seed_style(app, user_id: int) -> None:
    from microblog.exports.jobs import export_posts
    from microblog.posts.models import Post

    with app.app_context():
        task = launch(export_posts, user_id)
        posts = db.session.scalars(
            select(Post).where(Post.user_id == user_id).order_by(Post.timestamp)
        ).all()
        data = []
        for i, post in enumerate(posts, start=1):
            data.append({"body": post.body, "timestamp": post.timestamp.isoformat() + "Z"})
            task.done, task.progress = i, 100 * i // len(posts)
            db.session.commit()
        gzip.compress(json.dumps({"posts": data}).encode())
        task.status = "succeeded"
        db.session.commit()


def child(kind: str, database: str, redis_url: str, user_id: int, trace: bool) -> None:
    """Time one run; or, with tracemalloc on, measure the job's own peak allocations."""
    app = make_app(database, redis_url)
    job = export_job if kind == "export" else seed_style
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    job(app, user_id)
    elapsed = time.perf_counter() - start
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    print(json.dumps({"seconds": elapsed, "job_peak_mb": traced_peak}))


def report(label: str, row: dict, extra: str = "") -> None:
    print(
        f"{label}: {row['posts_per_second']:>10,.0f} posts/s, peak RSS {row['peak_rss_mb']:.1f} MB,"
        f" job's peak allocations {row['job_peak_mb']:.1f} MB{extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--baseline-posts", type=int, default=2_000)
    parser.add_argument("--child", nargs=4, metavar=("KIND", "DB", "REDIS", "USER"))
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args()
    if args.child:
        kind, database, redis_url, user_id = args.child
        return child(kind, database, redis_url, int(user_id), args.trace)

    redis = RedisServer().start()
    mail = MailCatcher().start()
    os.environ.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=str(mail.port))  # children inherit it
    try:
        database = scratch_dir() / "bench.sqlite"
        users = {f"u{n}": n for n in args.sizes} | {"baseline": args.baseline_posts}
        ids = create_database(make_app(database, redis.url), users)

        def measure(kind: str, name: str) -> dict:
            where = ("--child", kind, str(database), redis.url, str(ids[name]))
            result = run_child("bench.export_bench", *where)
            traced = run_child("bench.export_bench", *where, "--trace")  # slower: not timed
            result["posts_per_second"] = users[name] / result["seconds"]
            return result | {"job_peak_mb": traced["job_peak_mb"]}

        base = measure("seed", "baseline")
        report(f"seed-style loop, {users['baseline']:>9,} posts", base)
        rows = {n: measure("export", f"u{n}") for n in args.sizes}
        for n, row in rows.items():
            ratio = row["posts_per_second"] / base["posts_per_second"]
            report(f"export job,      {n:>9,} posts", row, f", {ratio:,.0f}x the seed-style loop")
        if len(rows) > 1:
            small, large = rows[min(rows)], rows[max(rows)]
            print(
                f"peak memory growth from {min(rows):,} to {max(rows):,} posts: "
                f"process RSS {large['peak_rss_mb'] - small['peak_rss_mb']:+.1f} MB, "
                f"job allocations {large['job_peak_mb'] - small['job_peak_mb']:+.1f} MB"
            )
    finally:
        mail.stop()
        redis.stop()


if __name__ == "__main__":
    main()
