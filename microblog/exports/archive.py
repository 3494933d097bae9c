"""Write a user's posts as gzip-compressed JSON, streaming: memory does not grow with posts.

The document is ``{"user": {...}, "posts": [{"body", "timestamp"}, ...]}`` with ISO-8601 UTC
timestamps, posts oldest first. Posts are read in keyset-paginated chunks, each a short query,
so no cursor or transaction stays open while the archive is written.
"""

import gzip
import json
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from sqlalchemy import Row, and_, func, or_, select

from microblog.auth.models import User
from microblog.extensions import db
from microblog.jobs.progress import ProgressReporter
from microblog.posts.models import Post

READ_CHUNK = 1000


def count_posts(user_id: int) -> int:
    return db.session.scalar(select(func.count()).where(Post.user_id == user_id))


def post_rows(user_id: int, chunk: int = READ_CHUNK) -> Iterator[list[Row]]:
    """Yield the user's posts oldest first, ``chunk`` rows at a time."""
    query = (
        select(Post.id, Post.timestamp, Post.body)
        .where(Post.user_id == user_id)
        .order_by(Post.timestamp, Post.id)
        .limit(chunk)
    )
    rows = db.session.execute(query).all()
    while rows:
        yield rows
        last = rows[-1]
        after = or_(
            Post.timestamp > last.timestamp,
            and_(Post.timestamp == last.timestamp, Post.id > last.id),
        )
        rows = db.session.execute(query.where(after)).all() if len(rows) == chunk else []


def user_block(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "email": user.email,
        "about_me": user.about_me,
    }


def isoformat(row: Row) -> str:
    return row.timestamp.isoformat().replace("+00:00", "Z")


def write_archive(user: User, out: IO[bytes], progress: ProgressReporter) -> tuple[int, int]:
    """Write the user's archive, gzip-compressed, to ``out``; return (posts, JSON bytes)."""
    progress.start(count_posts(user.id))
    header = json.dumps({"user": user_block(user)}, ensure_ascii=False)[:-1]
    written = posts = 0
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as archive:
        pieces = [header, ', "posts": [']
        for rows in post_rows(user.id):
            separator = "\n  " if posts == 0 else ",\n  "
            pieces.append(
                separator
                + ",\n  ".join(
                    json.dumps({"body": row.body, "timestamp": isoformat(row)}, ensure_ascii=False)
                    for row in rows
                )
            )
            written += _flush(archive, pieces)
            posts += len(rows)
            progress.advance(len(rows))
        pieces.append("\n]}\n")
        written += _flush(archive, pieces)
    progress.finish()
    return posts, written


def _flush(archive: gzip.GzipFile, pieces: list[str]) -> int:
    data = "".join(pieces).encode()
    pieces.clear()
    archive.write(data)
    return len(data)


def spooled_file() -> IO[bytes]:
    """A temporary file that stays in memory only while small (1 MiB)."""
    return tempfile.SpooledTemporaryFile(max_size=1024 * 1024)
