"""Downloads hold no database connection while the client reads, however slowly."""

import os
from datetime import timedelta

import requests
from sqlalchemy import insert

from microblog.exports.models import CHUNK_SIZE, Archive, ArchiveChunk
from microblog.extensions import db
from microblog.jobs.models import Task, TaskStatus
from microblog.models import utcnow
from tests.support.web import live_session

CHUNKS = 64  # 16 MB: more than loopback's socket buffers take, so a client that stops reading
# leaves the server waiting in the middle of the transfer
SLOW_CLIENTS = 20  # more than the connection pool holds (5, and 10 more on demand)


def stored_archive(live_app, user_id: int) -> str:
    """Store a finished export of CHUNKS random chunks for the user; return its task id."""
    with live_app.app_context():
        task = Task(user_id=user_id, name="export_posts", description="Exporting your posts",
                    status=TaskStatus.SUCCEEDED, progress=100)  # fmt: skip
        db.session.add(task)
        db.session.flush()
        db.session.add(
            Archive(
                task_id=task.id,
                filename="microblog-slow.json.gz",
                size=CHUNKS * CHUNK_SIZE,
                json_size=CHUNKS * CHUNK_SIZE,
                post_count=0,
                expires_at=utcnow() + timedelta(days=1),
            )  # fmt: skip
        )
        db.session.flush()
        for seq in range(CHUNKS):
            db.session.execute(
                insert(ArchiveChunk).values(task_id=task.id, seq=seq, data=os.urandom(CHUNK_SIZE))
            )
        db.session.commit()
        return task.id


def test_slow_downloads_leave_the_pages_answering(gunicorn_server, live_app, live_user):
    # Given a large archive, and twenty clients that start downloading it and stop reading
    user_id, name = live_user("slow")
    task_id = stored_archive(live_app, user_id)
    signed_in = live_session(gunicorn_server, name)
    downloads = []
    try:
        for _ in range(SLOW_CLIENTS):
            client = requests.Session()
            client.cookies.update(signed_in.cookies)
            response = client.get(
                f"{gunicorn_server}/exports/{task_id}/download", stream=True, timeout=10
            )
            assert response.status_code == 200
            assert len(response.raw.read(CHUNK_SIZE)) == CHUNK_SIZE
            downloads.append(response)

        # When pages are asked for meanwhile, they answer at once (no pool left would mean
        # a 30 s wait for a connection, then an error)
        for path in ("/", "/explore", f"/tasks/{task_id}"):
            assert signed_in.get(gunicorn_server + path, timeout=5).status_code == 200

        # And a slow download, read on, is complete
        rest = downloads[0].raw.read()
        assert len(rest) == (CHUNKS - 1) * CHUNK_SIZE
    finally:
        for response in downloads:
            response.close()
