"""Email addresses: confirming the account's own, and changing it by confirming the new one.

A new account's address is unconfirmed until a link sent to it is opened; meanwhile the site
writes to it nothing but such links and password reset links (the rule is enforced where mail
is sent, :mod:`microblog.mailer`). A change of address waits in ``pending_email`` until the new
address is confirmed, and the old one is told. The links are mailed by workers, which
:data:`confirmation_wanted` and :data:`address_change_wanted` ask for, once committed.
"""

from blinker import Namespace
from flask import current_app

from microblog.auth.models import User
from microblog.models import utcnow

_signals = Namespace()
# A confirmation link for ``user_id``'s address (or the one it is changing to) is wanted.
confirmation_wanted = _signals.signal("confirmation-wanted")
# ``user_id`` asked to change address: the new one gets a link, the old one a notice.
address_change_wanted = _signals.signal("address-change-wanted")


def address_to_confirm(user: User) -> str | None:
    """Return the address a confirmation link is for: the one the user is changing to, else
    their own while unconfirmed; None when there is nothing to confirm."""
    if user.pending_email:
        return user.pending_email
    return None if user.email_confirmed else user.email


def confirm(user: User, address: str) -> None:
    """Confirm ``address`` for ``user`` (a change of address takes effect). Does not commit:
    the commit fails if another account took the address meanwhile."""
    if address == user.pending_email:
        user.email = address
        user.pending_email = None
    user.email_confirmed_at = utcnow()


def announce_confirmation_wanted(user_id: int) -> None:
    """Have a confirmation link sent to ``user_id``'s address to confirm, now committed."""
    confirmation_wanted.send(current_app._get_current_object(), user_id=user_id)


def announce_address_change(user_id: int) -> None:
    """Have the new address (now committed as pending) confirmed, and the old one told."""
    address_change_wanted.send(current_app._get_current_object(), user_id=user_id)
