"""Finished export archives, stored in the database in chunks.

Web and worker share no disk, so the gzip archive lives where both reach it. Chunks keep
memory flat on both sides: the worker inserts one chunk at a time and the download streams
them back one at a time.
"""

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, select
from sqlalchemy.orm import Mapped, mapped_column

from microblog.extensions import db
from microblog.models import utcnow
from microblog.types import UTCDateTime

CHUNK_SIZE = 256 * 1024


class Archive(db.Model):
    task_id: Mapped[str] = mapped_column(
        ForeignKey("task.id", ondelete="CASCADE"), primary_key=True
    )
    filename: Mapped[str] = mapped_column(String(200))
    size: Mapped[int]  # bytes of gzip
    json_size: Mapped[int]  # bytes of JSON inside
    post_count: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def is_expired(self, now: datetime | None = None) -> bool:
        return (now or utcnow()) >= self.expires_at


class ArchiveChunk(db.Model):
    task_id: Mapped[str] = mapped_column(
        ForeignKey("archive.task_id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


def archive_chunks(task_id: str):
    """Yield the archive's bytes chunk by chunk, each read by its own query."""
    seq = 0
    while True:
        data = db.session.scalar(
            select(ArchiveChunk.data).where(
                ArchiveChunk.task_id == task_id, ArchiveChunk.seq == seq
            )
        )
        if data is None:
            return
        yield data
        seq += 1
