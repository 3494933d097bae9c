"""The password reset link's token: signed, expiring, and dead once the password changes.

The token carries the user's id and a fingerprint of the password hash as it was when the
link was made. Any change of password (this link used, another link, the account page, an
operator) makes a new hash with a new salt, so every link made before it stops working.
"""

import hashlib

from flask import current_app
from flask_babel import gettext as _
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select

from microblog.auth.models import User
from microblog.extensions import db

SALT = "password-reset"
MAX_TOKEN_LENGTH = 512  # far longer than any token made here


class InvalidLink(Exception):
    """The link cannot reset a password; its message says why, for the user."""


def is_user_id(value: object) -> bool:
    """Tell whether a signed value can be a user's id: an int (not a bool) in the column's range."""
    return type(value) is int and 0 < value < 2**31


def fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def make_token(user: User) -> str:
    """Return a token that resets ``user``'s password until it expires or the password changes."""
    return _serializer().dumps([user.id, fingerprint(user.password_hash)])


def read_token(token: str) -> tuple[User, str]:
    """Return the user a token resets, and the password hash it was made for.

    :raise InvalidLink: forged, damaged, expired, used, or its account is gone.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidLink(_("This link is not a password reset link of this site."))
    try:
        user_id, print_ = _serializer().loads(
            token, max_age=current_app.config["PASSWORD_RESET_MAX_AGE"]
        )
    except SignatureExpired:
        raise InvalidLink(_("This link has expired.")) from None
    except (BadSignature, TypeError, ValueError):
        raise InvalidLink(_("This link is not a password reset link of this site.")) from None
    if not is_user_id(user_id) or not isinstance(print_, str):
        raise InvalidLink(_("This link is not a password reset link of this site."))
    user = db.session.scalar(select(User).where(User.id == user_id))
    if user is None or fingerprint(user.password_hash) != print_:
        raise InvalidLink(_("This link has been used already, or the password changed since."))
    return user, user.password_hash


CONFIRM_SALT = "confirm-address"


def make_confirmation_token(user: User, address: str) -> str:
    """Return a token that confirms ``address`` for ``user``: the address the account has and
    has not confirmed, or the one it asked to change to."""
    serializer = URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=CONFIRM_SALT)
    return serializer.dumps([user.id, address])


def read_confirmation_token(token: str) -> tuple[User, str]:
    """Return the user and the address a confirmation token is for, if it can still confirm it.

    One use by construction: once the address is confirmed (or another asked for instead),
    no token for it matches the account any more.

    :raise InvalidLink: forged, damaged, expired, used, or for an address since changed.
    """
    foreign = _("This link is not a confirmation link of this site.")
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidLink(foreign)
    serializer = URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=CONFIRM_SALT)
    try:
        user_id, address = serializer.loads(token, max_age=current_app.config["CONFIRM_MAX_AGE"])
    except SignatureExpired:
        raise InvalidLink(_("This link has expired.")) from None
    except (BadSignature, TypeError, ValueError):
        raise InvalidLink(foreign) from None
    if not is_user_id(user_id) or not isinstance(address, str) or len(address) > 120:
        raise InvalidLink(foreign)
    user = db.session.get(User, user_id)
    if user is None:
        raise InvalidLink(foreign)
    if address == user.pending_email or (address == user.email and not user.email_confirmed):
        return user, address
    if address == user.email:
        raise InvalidLink(_("This address is confirmed already: the link has done its work."))
    raise InvalidLink(_("This link is for an address the account no longer asks for."))
