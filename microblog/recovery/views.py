"""Password reset at the seed's URLs: ask for a link by email, then choose a new password."""

import logging

import redis
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from microblog.auth.addresses import confirm as confirm_address
from microblog.auth.models import User, canonical, hash_password
from microblog.auth.sessions import (
    announce_password_changed,
    announce_revoked,
    close_all_sign_ins,
    close_sign_in,
    sign_in,
)
from microblog.extensions import db
from microblog.i18n import _l, current_language
from microblog.models import utcnow
from microblog.recovery.forms import ConfirmForm, ResetPasswordForm, ResetRequestForm
from microblog.recovery.mail import send_password_reset
from microblog.recovery.tokens import InvalidLink, read_confirmation_token, read_token
from microblog.throttle import limit

log = logging.getLogger(__name__)

bp = Blueprint("recovery", __name__, url_prefix="/auth")

LINK_SENT = _l(
    "If an account has that address, an email with a link to choose a new password is on its "
    "way. The link works for %(minutes)d minutes."
)
QUEUE_AWAY = _l("Sending emails is not possible right now. Please try again in a few minutes.")


def address_key() -> str:
    """Name the account a reset is asked for by the address typed, without looking it up: a
    lookup would take longer for registered addresses than for others."""
    return "reset:" + canonical(request.form.get("email", "").strip())[:120]


def minutes() -> int:
    return current_app.config["PASSWORD_RESET_MAX_AGE"] // 60


@bp.route("/reset_password_request", methods=["GET", "POST"])
@limit("RESET_LIMIT_PER_ADDRESS")
@limit("RESET_LIMIT_PER_ACCOUNT", key=address_key)
def reset_password_request():
    """Send a reset link to the address, if an account has it; answer the same either way."""
    form = ResetRequestForm()
    if form.validate_on_submit():
        try:
            send_password_reset.send(form.email.data, current_language())
        except redis.RedisError as error:
            log.warning("password reset not queued, Redis is unreachable: %s", error)
            flash(str(QUEUE_AWAY), "danger")
            return request_page(form, 503)
        flash(LINK_SENT % {"minutes": minutes()}, "info")
        return redirect(url_for("auth.login"))
    return request_page(form, 400 if form.errors else 200)


def request_page(form: ResetRequestForm, status: int):
    return render_template(
        "recovery/request.html", title=_("Reset your password"), form=form, minutes=minutes()
    ), status


@bp.route("/reset_password/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    """Set a new password with a link's token; close every sign-in and sign this browser in."""
    try:
        user, old_hash = read_token(token)
    except InvalidLink as error:
        return invalid_link(str(error))
    form = ResetPasswordForm()
    if form.validate_on_submit():
        # Conditional on the hash the link was made for: two uses at once change it once.
        changed = db.session.execute(
            update(User)
            .where(User.id == user.id, User.password_hash == old_hash)
            .values(password_hash=hash_password(form.password.data))
            .execution_options(synchronize_session=False)
        ).rowcount
        if not changed:
            db.session.rollback()
            return invalid_link(
                _("This link has been used already, or the password changed since.")
            )
        close_all_sign_ins(user)
        # Another account signed in in this browser is signed out for good, not left open.
        other = current_user.id if current_user.is_authenticated else None
        others_closed = close_sign_in(current_user) if other not in (None, user.id) else []
        if user.email_confirmed_at is None:
            user.email_confirmed_at = utcnow()  # the link reached the address: it is theirs
        sign_in(user, remember=False)  # commits the password with the closed sign-ins
        if others_closed:
            announce_revoked(other, others_closed)
        announce_password_changed(user.id)
        flash(_("Your password is changed, and every other device is signed out."), "success")
        return redirect(url_for("posts.index"))
    return render_template(
        "recovery/reset.html", title=_("Choose a new password"), form=form, username=user.username
    ), 400 if form.errors else 200


@bp.route("/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str):
    """Confirm the address a link was sent to (the account's own, or the one it changes to):
    the link shows a button, and the button's POST confirms, so no link checker does."""
    try:
        user, address = read_confirmation_token(token)
    except InvalidLink as error:
        return invalid_confirmation(str(error))
    if current_user.is_authenticated and current_user.id != user.id:
        return invalid_confirmation(_("This link is for another account than yours."))
    form = ConfirmForm()
    if not form.validate_on_submit():
        page = render_template("recovery/confirm.html", title=_("Confirm your address"),
                               form=form, address=address)  # fmt: skip
        return page, 400 if form.errors else 200
    confirm_address(user, address)
    try:
        db.session.commit()
    except IntegrityError:  # another account confirmed this address first
        db.session.rollback()
        return invalid_confirmation(_("Another account has this address now."))
    flash(_("Your email address %(address)s is confirmed.", address=address), "success")
    return redirect(url_for("auth.account" if current_user.is_authenticated else "auth.login"))


def invalid_confirmation(reason: str):
    hours = current_app.config["CONFIRM_MAX_AGE"] // 3600
    return render_template(
        "recovery/confirm_invalid.html", title=_("Invalid link"), reason=reason, hours=hours
    ), 400


@bp.after_request
def never_cached(response):
    """A reset page names an account and holds a live link: no cache or proxy keeps it."""
    response.headers["Cache-Control"] = "no-store"
    return response


def invalid_link(reason: str):
    return render_template(
        "recovery/invalid.html", title=_("Invalid link"), reason=reason, minutes=minutes()
    ), 400
