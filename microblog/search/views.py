"""The search page: people whose name matches, then the posts that hold the words."""

from flask import Blueprint, current_app, render_template, request
from flask_babel import gettext as _
from flask_login import login_required

from microblog.posts.models import Page
from microblog.posts.views import page_of_request
from microblog.search.models import Matches, SearchTooLong, people, time_budget
from microblog.search.query import MAX_QUERY_LENGTH, parse
from microblog.throttle import client_address, hit

bp = Blueprint("search", __name__)


@bp.route("/search")
@login_required
def search():
    text = request.args.get("q", "").strip()
    if len(text) > MAX_QUERY_LENGTH:
        error = _("Keep searches to %(max)d characters.", max=MAX_QUERY_LENGTH)
        return render_template("search/search.html", title=_("Search"), q=text, error=error), 400
    if text:  # each search may keep the database busy up to its budget
        hit("SEARCH_LIMIT_PER_CLIENT", client_address())
    query = parse(text)
    page = Page([], None, None)
    try:
        with time_budget(current_app.config["SEARCH_TIMEOUT_MS"]):
            matches = Matches(query)
            if matches.finds_anything:
                page = page_of_request(matches)
            found_people = people(text) if text else []
    except SearchTooLong:
        error = _("This search took too long: try rarer words, or fewer of them.")
        return render_template("search/search.html", title=_("Search"), q=text, error=error), 400
    return render_template(
        "search/search.html",
        title=_("Search: %(query)s", query=text) if text else _("Search"),
        q=text,
        people=found_people,
        page=page,
        bodies=matches.marked,
        searched=matches.finds_anything,
    )
