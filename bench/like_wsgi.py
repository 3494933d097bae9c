"""The app with search as a database without a search index would do it, under /like: posts
whose body holds the text (``LIKE '%text%'``), newest first. The page renders the same
template, so the benchmark compares finding the posts and nothing else.
"""

from flask import Blueprint, current_app, render_template, request
from flask_login import login_required
from sqlalchemy import select

from microblog import create_app
from microblog.extensions import db
from microblog.posts.models import Page, Post, key_order

bp = Blueprint("like", __name__)


@bp.route("/search")
@login_required
def search():
    text = request.args.get("q", "").strip()
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    query = (
        select(Post)
        .where(Post.body.like(f"%{escaped}%", escape="\\"))
        .order_by(*key_order(Post))
        .limit(current_app.config["POSTS_PER_PAGE"])
    )
    page = Page(list(db.session.scalars(query)), newer=None, older=None)
    return render_template(
        "search/search.html",
        title=f"Search: {text}",
        q=text,
        people=[],
        page=page,
        bodies={},
        searched=True,
    )


app = create_app()
app.register_blueprint(bp, url_prefix="/like")
