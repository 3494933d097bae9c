"""The User model and the follower relation."""

import unicodedata
from collections.abc import Iterable
from datetime import datetime
from hashlib import md5

from flask_login import UserMixin
from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    delete,
    false,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
from werkzeug.security import check_password_hash, generate_password_hash

from microblog.extensions import db
from microblog.models import utcnow
from microblog.types import UTCDateTime

followers = Table(
    "followers",
    db.metadata,
    Column("follower_id", ForeignKey("user.id", ondelete="CASCADE"), primary_key=True),
    Column("followed_id", ForeignKey("user.id", ondelete="CASCADE"), primary_key=True),
    # When the follow began: lists of people show the newest follows first.
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    # Each list in order, newest follow first, as one range: whom X follows, and who follows
    # X (which also serves follower counts and the cascade when an account is deleted).
    Index("ix_followers_follower_id_created_at", "follower_id", "created_at", "followed_id"),
    Index("ix_followers_followed_id_created_at", "followed_id", "created_at", "follower_id"),
)


class User(UserMixin, db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(120), unique=True)
    # canonical() of each: two accounts may not differ only in case or Unicode form. None only
    # for accounts made before the rule that clash with an older one (reachable by exact name).
    username_key: Mapped[str | None] = mapped_column(String(64), index=True, unique=True)
    email_key: Mapped[str | None] = mapped_column(String(120), index=True, unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    about_me: Mapped[str | None] = mapped_column(Text)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # None for accounts made before it was recorded.
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow)
    # Private messages received since the inbox was last opened (see microblog.messages).
    unread_messages: Mapped[int] = mapped_column(default=0, server_default="0")
    # The language chosen on the account page (a code of microblog.i18n.LANGUAGES); None: the
    # browser's. Emails to the user follow it too.
    language: Mapped[str | None] = mapped_column(String(8))
    # When the address in ``email`` was confirmed by a link sent to it; None: not yet, and the
    # site writes to it only confirmation and password reset links (see microblog.mailer).
    email_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An address the user asked to change to, waiting for its confirmation; ``email`` holds
    # until then. Not unique: whoever confirms first gets it.
    pending_email: Mapped[str | None] = mapped_column(String(120))
    # Operators: may see and control everyone's tasks at /admin (``flask users grant-admin``).
    is_admin: Mapped[bool] = mapped_column(default=False, server_default=false())

    following: Mapped[list["User"]] = relationship(
        secondary=followers,
        primaryjoin=lambda: followers.c.follower_id == User.id,
        secondaryjoin=lambda: followers.c.followed_id == User.id,
        back_populates="followers",
    )
    followers: Mapped[list["User"]] = relationship(
        secondary=followers,
        primaryjoin=lambda: followers.c.followed_id == User.id,
        secondaryjoin=lambda: followers.c.follower_id == User.id,
        back_populates="following",
    )

    # The token of the sign-in this request came with (see microblog.auth.sessions).
    sign_in_token = None

    def __repr__(self) -> str:
        return f"<User {self.username}>"

    @validates("username")
    def _key_username(self, _key: str, username: str) -> str:
        self.username_key = canonical(username)
        return username

    @validates("email")
    def _key_email(self, _key: str, email: str) -> str:
        self.email_key = canonical(email)
        return email

    def get_id(self) -> str | None:
        """Name the sign-in, not the user: revoking it signs that browser out."""
        return self.sign_in_token

    def set_password(self, password: str) -> None:
        self.password_hash = hash_password(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def email_confirmed(self) -> bool:
        return self.email_confirmed_at is not None

    def avatar_hue(self) -> int:
        """Return a stable avatar colour, 0–11; no third-party image service sees users."""
        digest = md5(self.email.lower().encode(), usedforsecurity=False).digest()
        return digest[0] % 12


def hash_password(password: str) -> str:
    """Return the salted hash a password is kept as: a new salt, so a new hash, every time."""
    return generate_password_hash(password)


def follow(follower_id: int, followed_id: int) -> None:
    """Make one user follow another; again or concurrently, it is a no-op. Does not commit.

    A check-then-insert would let two simultaneous clicks both insert, and the second fail on
    the primary key; the database's own "insert unless present" cannot race.
    """
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(followers).values(follower_id=follower_id, followed_id=followed_id)
    db.session.execute(statement.on_conflict_do_nothing())


def is_following(follower_id: int, followed_id: int) -> bool:
    """Return whether one user follows another: one index lookup, no list loaded."""
    query = select(followers.c.follower_id).where(
        followers.c.follower_id == follower_id, followers.c.followed_id == followed_id
    )
    return db.session.scalar(select(query.exists()))


def follow_counts(user_id: int) -> tuple[int, int]:
    """Return how many follow the user, and how many the user follows, counted in SQL."""
    count = select(func.count()).select_from(followers)
    return (
        db.session.scalar(count.where(followers.c.followed_id == user_id)),
        db.session.scalar(count.where(followers.c.follower_id == user_id)),
    )


def unfollow(follower_id: int, followed_id: int) -> None:
    """Stop one user following another, whether or not they did. Does not commit."""
    db.session.execute(
        delete(followers).where(
            followers.c.follower_id == follower_id, followers.c.followed_id == followed_id
        )
    )


def unconfirmed_addresses(addresses: Iterable[str]) -> set[str]:
    """Return those of ``addresses`` that an account holds and has not confirmed."""
    by_key = {canonical(address): address for address in addresses}
    if not by_key:
        return set()
    query = select(User.email_key).where(
        User.email_key.in_(list(by_key)), User.email_confirmed_at.is_(None)
    )
    return {by_key[key] for key in db.session.scalars(query)}


def canonical(text: str) -> str:
    """Return the form look-alike names share: ``ＡＬＩＣＥ`` and ``Alice`` → ``alice``."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def find_user(username: str) -> User | None:
    """Return the user with that username, exactly or in its canonical form, or None."""
    if not 0 < len(username) <= 64 or "\x00" in username:
        return None  # cannot be anyone's; and PostgreSQL refuses NUL in a query
    exact = db.session.scalar(select(User).where(User.username == username))
    if exact is not None:
        return exact
    return db.session.scalar(select(User).where(User.username_key == canonical(username)))
