"""Every page passes axe-core (the npm package, run in a real browser), in English and Spanish,
signed in and out, with task cards on the page: no violation of any rule axe checks."""

import json

import pytest
from sqlalchemy import update

from microblog.auth.models import User
from microblog.exports.jobs import export_posts
from microblog.extensions import db
from microblog.jobs.launch import launch
from microblog.jobs.models import Task, TaskStatus
from microblog.messages.models import store_message
from microblog.models import utcnow
from tests.support import ROOT
from tests.support.web import ANONYMOUS_PAGES, PASSWORD, SIGNED_IN_PAGES

# Minutes of wall time, mostly waiting: started first, beside the rest of the suite.
pytestmark = pytest.mark.long

AXE = ROOT / "tests" / "web" / "axe" / "node_modules" / "axe-core" / "axe.min.js"


def axe_source() -> str:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: `make test` installs it (npm ci --prefix tests/web/axe)")
    return AXE.read_text()


def violations(page, source: str) -> list[str]:
    """Run axe on the page as it stands; return each violation as "rule (impact): targets"."""
    page.evaluate(source)
    found = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})"
                          ".then((r) => r.violations)")  # fmt: skip
    return [f"{v['id']} ({v['impact']}): {json.dumps([n['target'] for n in v['nodes']])}"
            for v in found]  # fmt: skip


@pytest.fixture
def people(live_app, live_user):
    """An operator with posts, a follow, a message and task cards live (a queued export, a
    failed word count), and another user; their names."""
    me_id, me = live_user("axe", posts=3)
    other_id, other = live_user("axe-other", posts=2)
    with live_app.app_context():
        db.session.execute(update(User).where(User.id == me_id).values(is_admin=True))
        db.session.commit()
        me_user, other_user = db.session.get(User, me_id), db.session.get(User, other_id)
        me_user.following.append(other_user)
        other_user.following.append(me_user)
        store_message(other_id, me_id, "a message to read")
        db.session.add(
            Task(
                user_id=me_id,
                name="count_words",
                description="Counting your words",
                status=TaskStatus.FAILED,
                finished_at=utcnow(),
                attempts=1,
                error="The database was unavailable. Please try again later.",
            )
        )
        db.session.commit()
        launch(export_posts, me_id)  # no worker runs: its card stays live, queued
    return me, other


@pytest.mark.parametrize("language", ["en", "es"])
def test_every_page_has_no_accessibility_violation(browser, gunicorn_server, people, language):
    me, other = people
    source = axe_source()
    # axe is injected as a script, which the site's CSP would refuse: this context bypasses it
    context = browser.new_context(base_url=gunicorn_server, bypass_csp=True, locale=language,
                                  extra_http_headers={"Accept-Language": language})  # fmt: skip
    page = context.new_page()
    found = {}
    for path in ANONYMOUS_PAGES:
        page.goto(path)
        assert page.locator("html").get_attribute("lang") == language
        found[f"anonymous {path}"] = violations(page, source)
    page.goto("/auth/login")
    page.fill("#username", me)
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url("**/")
    for path in SIGNED_IN_PAGES:
        page.goto(path.format(me=me, other=other))
        page.wait_for_load_state("load")
        # the active card is on every page; the finished one where jobs start
        cards = 2 if path in ("/", "/user/{me}") else 1
        assert page.locator("#tasks .task").count() == cards, path
        found[path] = violations(page, source)
    # The user card, opened by keyboard focus
    page.goto(f"/user/{me}/following")
    page.focus(f'.user-link[href="/user/{other}"]')
    page.wait_for_selector(".user-popup")
    found["user card"] = violations(page, source)
    context.close()
    assert {path: v for path, v in found.items() if v} == {}
