"""Send a private message, read your inbox, and the unread badge on every page."""

from flask import Blueprint, abort, flash, has_request_context, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from microblog.auth.models import find_user
from microblog.extensions import db
from microblog.live.stream import page_stream_url
from microblog.messages.events import announce_unread
from microblog.messages.forms import MessageForm
from microblog.messages.models import Inbox, mark_read, store_message, unread_count
from microblog.posts.views import page_of_request
from microblog.throttle import limit

bp = Blueprint("messages", __name__)


def sender_key() -> str:
    return f"user:{current_user.id}"


@bp.route("/send_message/<recipient>", methods=["GET", "POST"])
@login_required
@limit("MESSAGE_LIMIT_PER_USER", key=sender_key)
def send_message(recipient: str):
    """Write to another user; only they and you can ever read it."""
    user = find_user(recipient) or abort(404, _("There is no such user."))
    if user.id == current_user.id:
        abort(400, _("You cannot send a message to yourself."))
    form = MessageForm()
    if form.validate_on_submit():
        count = store_message(current_user.id, user.id, form.message.data.strip())
        db.session.commit()
        announce_unread(user.id, count)
        flash(_("Your message to %(user)s has been sent.", user=user.username), "success")
        return redirect(url_for("posts.user", username=user.username))
    return render_template(
        "messages/send_message.html", title=_("Send a message"), form=form, recipient=user
    ), 400 if form.errors else 200


@bp.route("/messages")
@login_required
def messages():
    """Show the messages received, newest first; opening it marks them read everywhere."""
    # A write only when there is something to clear (the count came with the signed-in user):
    # reading the inbox must not take a write lock each time.
    if current_user.unread_messages and mark_read(current_user.id):
        db.session.commit()
        announce_unread(current_user.id, 0)  # every other tab's badge drops to zero
    page = page_of_request(Inbox(current_user.id))
    return render_template("messages/messages.html", title=_("Messages"), page=page)


@bp.app_context_processor
def inject_unread() -> dict:
    """Give every page the signed-in user's unread count, as committed now."""
    if not has_request_context() or not current_user.is_authenticated:
        return {"unread_messages": 0}
    page_stream_url()  # the resume point first: the count must include everything before it
    return {"unread_messages": unread_count(current_user.id)}
