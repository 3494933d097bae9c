"""The search page: people whose name matches, then the posts that hold the words."""

from flask import Blueprint, render_template, request
from flask_login import login_required

from microblog.posts.models import Page
from microblog.posts.views import page_of_request
from microblog.search.models import Matches, marked_bodies, people
from microblog.search.query import MAX_QUERY_LENGTH, parse

bp = Blueprint("search", __name__)


@bp.route("/search")
@login_required
def search():
    text = request.args.get("q", "").strip()
    if len(text) > MAX_QUERY_LENGTH:
        error = f"Keep searches to {MAX_QUERY_LENGTH} characters."
        return render_template("search/search.html", title="Search", q=text, error=error), 400
    query = parse(text)
    page, bodies = Page([], None, None), {}
    if query.finds_anything:
        page = page_of_request(Matches(query))
        bodies = marked_bodies(query, page.items)
    return render_template(
        "search/search.html",
        title=f"Search: {text}" if text else "Search",
        q=text,
        people=people(text) if text else [],
        page=page,
        bodies=bodies,
        searched=query.finds_anything,
    )
