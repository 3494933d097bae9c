"""The app with the list pages as they were before keyset paging, mounted under /offset.

Each list is one query ordered newest first, paged by ``OFFSET`` with a ``COUNT`` of the whole
list (Flask-SQLAlchemy's ``paginate``, as the tutorial this app descends from does), and the
profile counts followers by loading both lists. The pages render the same templates, so the
benchmark compares the data access and nothing else.
"""

from flask import Blueprint, abort, current_app, render_template, request
from flask_login import current_user, login_required
from sqlalchemy import Select

from microblog import create_app
from microblog.auth.models import User, find_user
from microblog.extensions import db
from microblog.posts.forms import PostForm
from microblog.posts.models import Page, Post, all_posts, key_order, posts_of, timeline_of

bp = Blueprint("offset", __name__)


def paginate(query: Select) -> Page:
    number = request.args.get("page", "1")
    pages = db.paginate(
        query.order_by(*key_order(Post)),
        page=int(number),
        per_page=current_app.config["POSTS_PER_PAGE"],
        error_out=False,
    )
    return Page(pages.items, newer=None, older=None)


@bp.route("/")
@login_required
def index():
    page = paginate(timeline_of(current_user).query)
    return render_template("posts/index.html", title="Home", form=PostForm(), page=page)


@bp.route("/explore")
@login_required
def explore():
    return render_template("posts/explore.html", title="Explore", page=paginate(all_posts().query))


@bp.route("/user/<username>")
@login_required
def user(username: str):
    profile: User = find_user(username) or abort(404)
    me = db.session.get(User, current_user.id)
    return render_template(
        "posts/user.html",
        title=profile.username,
        profile=profile,
        page=paginate(posts_of(profile).query),
        follower_count=len(profile.followers),
        following_count=len(profile.following),
        following=profile in me.following,
    )


app = create_app()
app.register_blueprint(bp, url_prefix="/offset")
