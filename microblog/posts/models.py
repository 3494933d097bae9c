"""The Post model and the queries that list posts."""

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Select, String, or_, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from microblog.auth.models import User, followers
from microblog.extensions import db
from microblog.models import utcnow
from microblog.types import UTCDateTime

MAX_POST_LENGTH = 280


class Post(db.Model):
    __table_args__ = (Index("ix_post_user_id_timestamp", "user_id", "timestamp", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(MAX_POST_LENGTH))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))

    author: Mapped[User] = relationship(lazy="joined", innerjoin=True)

    def __repr__(self) -> str:
        return f"<Post {self.id} by {self.user_id}>"


def newest_first(query: Select) -> Select:
    return query.order_by(Post.timestamp.desc(), Post.id.desc())


def timeline_of(user: User) -> Select:
    """Return the user's own posts and those of everyone they follow, newest first."""
    followed = select(followers.c.followed_id).where(followers.c.follower_id == user.id)
    return newest_first(
        select(Post).where(or_(Post.user_id == user.id, Post.user_id.in_(followed)))
    )


def posts_of(user: User) -> Select:
    """Return the user's posts, newest first."""
    return newest_first(select(Post).where(Post.user_id == user.id))


def all_posts() -> Select:
    """Return every post, newest first."""
    return newest_first(select(Post))
