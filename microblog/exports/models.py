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
    # Set just before the message data goes to the relay, then emailed_at once it accepted:
    # "sending" without "sent" means the relay may have it, so it is not sent again.
    email_sending_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
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
    """Yield the archive's bytes chunk by chunk, each read on a connection held only for it.

    A download may take minutes; a pooled connection held for all of it would let a few slow
    clients exhaust the pool and stall every page of the process.
    """
    seq = 0
    while True:
        with db.engine.connect() as connection:
            data = connection.scalar(
                select(ArchiveChunk.data).where(
                    ArchiveChunk.task_id == task_id, ArchiveChunk.seq == seq
                )
            )
        if data is None:
            return
        yield data
        seq += 1
