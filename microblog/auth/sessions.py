"""Sign-ins that can be revoked: one row per signed-in browser, named by a random token.

Flask-Login keeps ``User.get_id()`` in the session cookie and in the remember-me cookie; here
that id is the sign-in's token, not the user's id, so deleting the row (logout, a password
change, "sign out everywhere") turns every copy of those cookies into an anonymous visitor's.
The table keeps only a hash of each token: a leaked database cannot be replayed as cookies.

Whoever holds something a sign-in opened (the live channel's streams) listens to
:data:`sign_ins_closed` and :data:`admin_revoked`, which are sent once a revocation is
committed; :data:`password_changed` tells whoever lets the user know (an email).
"""

import hashlib
import secrets
from datetime import datetime

from blinker import Namespace
from flask import current_app, g, session
from flask_login import current_user, login_user, logout_user
from sqlalchemy import ForeignKey, String, bindparam, delete, func, select
from sqlalchemy.orm import Mapped, mapped_column

from microblog.auth.models import User
from microblog.extensions import db, login_manager
from microblog.i18n import _l
from microblog.models import utcnow
from microblog.types import UTCDateTime

_signals = Namespace()
# Sent after sign-ins are revoked and committed; ``sign_ins`` holds their token hashes, or is
# None for every sign-in of ``user_id``.
sign_ins_closed = _signals.signal("sign-ins-closed")
# Sent after ``user_id`` lost the admin role, committed.
admin_revoked = _signals.signal("admin-revoked")
# Sent after ``user_id``'s password changed, committed (whoever tells the user listens).
password_changed = _signals.signal("password-changed")


class SignIn(db.Model):
    __tablename__ = "sign_in"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def token_hash(token: str) -> str:
    """Return the name a sign-in's token is stored (and its streams are closed) by."""
    return hashlib.sha256(token.encode()).hexdigest()


def _oldest_valid() -> datetime:
    return utcnow() - current_app.config["REMEMBER_COOKIE_DURATION"]


def open_sign_in(user: User) -> None:
    """Give ``user`` a new sign-in for this browser, and forget its expired ones; no commit."""
    db.session.execute(
        delete(SignIn).where(SignIn.user_id == user.id, SignIn.created_at < _oldest_valid())
    )
    user.sign_in_token = secrets.token_urlsafe(32)
    db.session.add(SignIn(token_hash=token_hash(user.sign_in_token), user_id=user.id))


def close_sign_in(user: User) -> list[str]:
    """Revoke the sign-in this request came with; no commit. Return its token hash."""
    if not user.sign_in_token:
        return []
    closed = token_hash(user.sign_in_token)
    db.session.execute(delete(SignIn).where(SignIn.token_hash == closed))
    return [closed]


def close_all_sign_ins(user: User) -> None:
    """Revoke every sign-in of ``user``, on every device; no commit."""
    db.session.execute(delete(SignIn).where(SignIn.user_id == user.id))


def count_sign_ins(user: User) -> int:
    """Return how many sign-ins of ``user`` still stand (browsers signed in to it)."""
    query = select(func.count()).select_from(SignIn)
    return db.session.scalar(
        query.where(SignIn.user_id == user.id, SignIn.created_at >= _oldest_valid())
    )


# Every signed-in request runs this: built once, it costs a statement-cache lookup, not a build.
_USER_SIGNED_IN = (
    select(User)
    .join(SignIn, SignIn.user_id == User.id)
    .where(SignIn.token_hash == bindparam("token_hash"), SignIn.created_at >= bindparam("oldest"))
)


@login_manager.user_loader
def load_user(token: str) -> User | None:
    """Return the user a session or remember-me cookie names, if that sign-in still stands."""
    if len(token) > 64:
        return None
    user = db.session.scalar(
        _USER_SIGNED_IN, {"token_hash": token_hash(token), "oldest": _oldest_valid()}
    )
    if user is not None:
        user.sign_in_token = token
    return user


def sign_in(user: User, remember: bool) -> None:
    """Start a fresh session for ``user`` in this browser; commits.

    The old session is dropped whole, CSRF token included: nothing an anonymous visitor (or
    someone who planted the cookie) held carries over into the signed-in session.
    """
    session.clear()
    open_sign_in(user)
    db.session.commit()
    login_user(user, remember=remember)


def announce_revoked(user_id: int, sign_ins: list[str] | None = None) -> None:
    """Say that sign-ins of ``user_id`` (all by default) are revoked, now committed: what they
    opened, the live streams among them, ends."""
    sign_ins_closed.send(current_app._get_current_object(), user_id=user_id, sign_ins=sign_ins)


def announce_password_changed(user_id: int) -> None:
    """Say that ``user_id``'s password changed, with every sign-in made before it revoked, all
    now committed: their streams end, and the user is told."""
    announce_revoked(user_id)
    password_changed.send(current_app._get_current_object(), user_id=user_id)


SIGN_IN_ENDED = _l(
    "Your sign-in has ended: you signed out elsewhere, your password was changed, or it "
    "expired. Please sign in again."
)


def note_ended_sign_in() -> bool:
    """Say whether this request came with a sign-in that no longer stands (revoked elsewhere,
    or expired), and forget it, so that its browser is told once: the first page after says
    :data:`SIGN_IN_ENDED`, and a live stream says it to the open page."""
    if "_user_id" not in session or current_user.is_authenticated:
        return False
    session.pop("_user_id")
    g.sign_in_ended = True
    return True


def sign_out() -> None:
    logout_user()
    session.clear()
