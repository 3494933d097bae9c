"""Timelines, profiles, writing posts and following."""

from collections.abc import Callable
from datetime import timedelta

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required

from microblog.auth import models as users
from microblog.auth.models import User, find_user
from microblog.extensions import db, login_manager
from microblog.i18n import _l, for_scripts
from microblog.models import utcnow
from microblog.posts.forms import EditProfileForm, PostForm
from microblog.posts.language import detect_language
from microblog.posts.models import (
    Cursor,
    HomeTimeline,
    Listing,
    Page,
    People,
    Post,
    all_posts,
    followed_by,
    followers_of,
    follows_anyone,
    key_order,
    page_of,
    people_to_follow,
    posts_of,
    timeline_of,
)
from microblog.urls import safe_next

bp = Blueprint("posts", __name__)

for_scripts({"popup.about": _l("About %(name)s")})  # popup.js: the card's name
NO_SUCH_PAGE = _l("There is no such page.")


LAST_SEEN_RESOLUTION = timedelta(minutes=1)
POPUP_MAX_AGE = 15  # seconds a browser may show a user's card without asking again


@bp.before_app_request
def record_last_seen() -> None:
    # One write a minute at most: a busy user should not turn every request into a commit.
    if current_user.is_authenticated and request.endpoint not in (None, "static"):
        now = utcnow()
        if now - current_user.last_seen >= LAST_SEEN_RESOLUTION:
            current_user.last_seen = now
            db.session.commit()


# Old ?page=N links are answered by one OFFSET query: a bound keeps that cheap.
MAX_PAGE = 1_000


def page_of_posts(listing: Listing) -> Page:
    """Return the page of ``listing`` the request asks for (``before``/``after`` a cursor).

    An old ``?page=N`` link is answered once by OFFSET and redirected to the cursor it means;
    a cursor or page number that cannot exist is a 404.
    """
    if "page" in request.args:
        per_page = current_app.config["POSTS_PER_PAGE"]
        abort(redirect_old_page_link(listing, request.args["page"], per_page))
    return page_of_request(listing)


def page_of_request(listing: Listing) -> Page:
    """Return the page of ``listing`` the request's cursor names; a bad cursor is a 404."""
    cursors = {}
    for name in ("before", "after"):
        if name in request.args:
            cursors[name] = Cursor.parse(request.args[name]) or abort(404, NO_SUCH_PAGE)
    if len(cursors) > 1:
        abort(404, NO_SUCH_PAGE)
    return page_of(listing, current_app.config["POSTS_PER_PAGE"], **cursors)


def redirect_old_page_link(listing: Listing, number: str, per_page: int) -> Response:
    digits = number.isascii() and number.isdigit() and len(number) <= len(str(MAX_PAGE))
    if not (digits and 1 <= int(number) <= MAX_PAGE):
        abort(404, NO_SUCH_PAGE)
    args = dict(request.view_args)
    # OFFSET walks an index for explore and profiles (cheap even a thousand pages deep), but
    # must sort the whole followed set for the home timeline (seconds: docs/performance.md):
    # there, whose pages shift with every post anyway, an old page number opens the newest page.
    if int(number) > 1 and not isinstance(listing, HomeTimeline):
        newest_first = listing.query.order_by(*key_order(Post))
        edge = db.session.scalar(newest_first.offset((int(number) - 1) * per_page - 1).limit(1))
        if edge is None:
            abort(404, NO_SUCH_PAGE)
        args["before"] = str(Cursor.of(edge))
    return redirect(url_for(request.endpoint, **args), 301)


# What a signed-out visitor to the home page sees of the site.
WELCOME_POSTS = 3


@bp.route("/", methods=["GET", "POST"])
def index():
    if not current_user.is_authenticated:
        if request.method == "POST":
            return login_manager.unauthorized()
        glimpse = Page(page_of(all_posts(), WELCOME_POSTS).items, newer=None, older=None)
        return render_template("posts/welcome.html", title=_("Welcome"), page=glimpse)
    form = PostForm()
    if form.validate_on_submit():
        body = form.post.data.strip()
        db.session.add(Post(body=body, author=current_user, language=detect_language(body)))
        db.session.commit()
        flash(_("Your post is now live!"), "success")
        return redirect(url_for("posts.index"))
    page = page_of_posts(timeline_of(current_user))
    # Someone who follows nobody yet gets a start: people posting lately, and Explore.
    suggestions = None if follows_anyone(current_user.id) else people_to_follow(current_user.id)
    status = 400 if form.errors else 200
    return render_template("posts/index.html", title=_("Home"), form=form, page=page,
                           suggestions=suggestions), status  # fmt: skip


@bp.route("/explore")
@login_required
def explore():
    page = page_of_posts(all_posts())
    return render_template("posts/explore.html", title=_("Explore"), page=page)


@bp.route("/user/<username>")
@login_required
def user(username: str):
    profile = find_user(username) or abort(404)
    page = page_of_posts(posts_of(profile))
    follower_count, following_count = users.follow_counts(profile.id)
    return render_template(
        "posts/user.html",
        title=profile.username,
        profile=profile,
        page=page,
        follower_count=follower_count,
        following_count=following_count,
        following=users.is_following(current_user.id, profile.id),
    )


@bp.route("/user/<username>/popup")
@login_required
def user_popup(username: str):
    """A small card about a user (shown when a name is hovered or focused): an HTML fragment,
    cached briefly by the browser alone, since its follow button is the reader's."""
    profile = find_user(username) or abort(404)
    follower_count, following_count = users.follow_counts(profile.id)
    response = current_app.make_response(render_template(
        "posts/user_popup.html",
        profile=profile,
        follower_count=follower_count,
        following_count=following_count,
        following=users.is_following(current_user.id, profile.id),
    ))  # fmt: skip
    response.headers["Cache-Control"] = f"private, max-age={POPUP_MAX_AGE}"
    return response


@bp.route("/user/<username>/followers")
@login_required
def followers(username: str):
    return _people(username, "followers", followers_of)


@bp.route("/user/<username>/following")
@login_required
def following(username: str):
    return _people(username, "following", followed_by)


def _people(username: str, which: str, listing: Callable[[User], People]):
    profile = find_user(username) or abort(404)
    page = page_of_request(listing(profile))
    return render_template(
        "posts/people.html",
        title=_("%(user)s: followers", user=profile.username)
        if which == "followers"
        else _("%(user)s: following", user=profile.username),
        profile=profile,
        which=which,
        page=page,
    )


@bp.route("/edit_profile", methods=["GET", "POST"])
@login_required
def edit_profile():
    form = EditProfileForm(current_user.id)
    if form.validate_on_submit():
        current_user.username = form.username.data
        current_user.about_me = form.about_me.data
        db.session.commit()
        flash(_("Your changes have been saved."), "success")
        return redirect(url_for("posts.user", username=current_user.username))
    if request.method == "GET":
        form.username.data = current_user.username
        form.about_me.data = current_user.about_me
    status = 400 if form.errors else 200
    return render_template("posts/edit_profile.html", title=_("Edit profile"), form=form), status


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
        flash(_("You cannot follow yourself."), "warning")
    elif follow:
        users.follow(current_user.id, other.id)
        flash(_("You are following %(user)s.", user=other.username), "success")
    else:
        users.unfollow(current_user.id, other.id)
        flash(_("You are not following %(user)s.", user=other.username), "info")
    db.session.commit()
    return redirect(
        safe_next(request.form.get("next")) or url_for("posts.user", username=other.username)
    )
