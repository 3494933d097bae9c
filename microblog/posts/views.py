"""Timelines, profiles, writing posts and following."""

from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import Select

from microblog.auth import models as users
from microblog.auth.models import find_user
from microblog.extensions import db
from microblog.models import utcnow
from microblog.posts.forms import EditProfileForm, PostForm
from microblog.posts.models import Post, all_posts, posts_of, timeline_of

bp = Blueprint("posts", __name__)


LAST_SEEN_RESOLUTION = timedelta(minutes=1)


@bp.before_app_request
def record_last_seen() -> None:
    # One write a minute at most: a busy user should not turn every request into a commit.
    if current_user.is_authenticated and request.endpoint not in (None, "static"):
        now = utcnow()
        if now - current_user.last_seen >= LAST_SEEN_RESOLUTION:
            current_user.last_seen = now
            db.session.commit()


# Far past any real list, far below the database's integer range that OFFSET is computed in.
MAX_PAGE = 1_000_000


def paginate(query: Select):
    """Return the requested page of ``query``; a page number that cannot exist is a 404."""
    number = request.args.get("page", "1")
    digits = number.isascii() and number.isdigit() and len(number) <= len(str(MAX_PAGE))
    if not (digits and 1 <= int(number) <= MAX_PAGE):
        abort(404, "There is no such page.")
    page = int(number)
    per_page = current_app.config["POSTS_PER_PAGE"]
    return db.paginate(query, page=page, per_page=per_page, error_out=False)


@bp.route("/", methods=["GET", "POST"])
@login_required
def index():
    form = PostForm()
    if form.validate_on_submit():
        db.session.add(Post(body=form.post.data.strip(), author=current_user))
        db.session.commit()
        flash("Your post is now live!", "success")
        return redirect(url_for("posts.index"))
    page = paginate(timeline_of(current_user))
    status = 400 if form.errors else 200
    return render_template("posts/index.html", title="Home", form=form, page=page), status


@bp.route("/explore")
@login_required
def explore():
    return render_template("posts/explore.html", title="Explore", page=paginate(all_posts()))


@bp.route("/user/<username>")
@login_required
def user(username: str):
    profile = find_user(username) or abort(404)
    return render_template(
        "posts/user.html",
        title=profile.username,
        profile=profile,
        page=paginate(posts_of(profile)),
    )


@bp.route("/edit_profile", methods=["GET", "POST"])
@login_required
def edit_profile():
    form = EditProfileForm(current_user.id)
    if form.validate_on_submit():
        current_user.username = form.username.data
        current_user.about_me = form.about_me.data
        db.session.commit()
        flash("Your changes have been saved.", "success")
        return redirect(url_for("posts.user", username=current_user.username))
    if request.method == "GET":
        form.username.data = current_user.username
        form.about_me.data = current_user.about_me
    status = 400 if form.errors else 200
    return render_template("posts/edit_profile.html", title="Edit profile", form=form), status


@bp.route("/follow/<username>", methods=["POST"])
@login_required
def follow(username: str):
    return _change_following(username, follow=True)


@bp.route("/unfollow/<username>", methods=["POST"])
@login_required
def unfollow(username: str):
    return _change_following(username, follow=False)


def _change_following(username: str, follow: bool):
    # CSRFProtect has already refused a POST without a valid token.
    other = find_user(username) or abort(404)
    if other.id == current_user.id:
        flash("You cannot follow yourself.", "warning")
    elif follow:
        users.follow(current_user.id, other.id)
        flash(f"You are following {other.username}.", "success")
    else:
        users.unfollow(current_user.id, other.id)
        flash(f"You are not following {other.username}.", "info")
    db.session.commit()
    return redirect(url_for("posts.user", username=other.username))
