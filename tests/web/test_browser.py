"""A real browser (Debian's chromium, driven by Playwright) watches an export move live."""

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from microblog.auth.models import User
from microblog.exports.jobs import export_posts
from microblog.extensions import db
from microblog.jobs.launch import launch
from microblog.jobs.models import Task
from microblog.jobs.recording import Recording
from tests.support import ROOT
from tests.support.browser import bar_value, screenshot, sign_in, watch_csp, watch_task_bar
from tests.support.data import insert_posts
from tests.support.servers import running_worker

# Minutes of wall time, mostly waiting: started first, beside the rest of the suite.
pytestmark = pytest.mark.long

POSTS = 150_000  # enough for the export to take a few seconds


def test_export_progress_moves_live_and_survives_a_reload(page, live_user, worker_process):
    # Given a signed-in user with many posts on their profile page
    _, username = live_user("browser", posts=POSTS)
    sign_in(page, username)
    page.goto(f"/user/{username}")
    watch_task_bar(page)

    # When they click "Export my posts", the bar appears and moves without a reload
    page.click("#export-button")
    page.wait_for_function("() => window.seenValues.some(v => v > 0 && v < 100)", timeout=30_000)
    assert page.locator("#export-button").is_disabled()
    midway = bar_value(page)
    screenshot(page, "export-in-progress.png")

    # And a reload mid-export shows the percentage from the database, then keeps moving
    page.reload()
    after_reload = bar_value(page)
    assert 0 < after_reload < 100 and after_reload >= midway, (midway, after_reload)
    # the bar's width is a class (the CSP refuses inline styles): pct-<progress>
    classes = page.locator("#tasks .progress-bar").first.get_attribute("class")
    assert int(re.search(r"\bpct-(\d+)\b", classes).group(1)) >= after_reload, classes
    page.wait_for_selector("#tasks .task-download", timeout=60_000)

    # Then it reaches 100 % with the download link, and the button is enabled again
    assert bar_value(page) == 100
    assert page.locator("#tasks .task-state").first.text_content() == "Done"
    assert page.locator("#tasks .progress").first.get_attribute("role") == "progressbar"
    assert not page.locator("#export-button").is_disabled()
    href = page.locator("#tasks .task-download").first.get_attribute("href")
    assert href.startswith("/exports/") and href.endswith("/download")
    screenshot(page, "export-finished.png")
    assert page.refused_by_csp == []


def test_page_works_with_javascript_off(browser, gunicorn_server, live_user):
    context = browser.new_context(base_url=gunicorn_server, java_script_enabled=False)
    page = context.new_page()
    try:
        _, username = live_user("nojs", posts=3)
        sign_in(page, username)
        page.goto(f"/user/{username}")
        page.click("#export-button")  # a plain form POST, then a redirect back
        page.wait_for_load_state()
        html = page.content()
        assert "Your export has started" in html, html[:2000]
        assert page.locator("#tasks .task").count() == 1
        # Nothing moves the bar without JavaScript, and the page never reloads itself (it
        # would wipe what is being typed): the card offers the reload
        assert 'http-equiv="refresh"' not in html
        page.click("#tasks .task-reload")
        page.wait_for_load_state()
        assert page.locator("#tasks .task").count() == 1
        screenshot(page, "nojs-card.png")
    finally:
        context.close()


def test_a_phone_without_javascript_reaches_every_menu_item(browser, gunicorn_server, live_user):
    # Given a phone-sized browser with scripts off, signed in
    context = browser.new_context(base_url=gunicorn_server, java_script_enabled=False,
                                  viewport={"width": 375, "height": 740})  # fmt: skip
    page = context.new_page()
    try:
        _, username = live_user("phone", posts=1)
        sign_in(page, username)
        page.goto("/explore")
        # Then the menu is open, its scripted button hidden, and each item can be used
        assert not page.locator(".navbar-toggler").is_visible()
        items = {
            "Profile": f"#nav a[href='/user/{username}']",
            "Messages": "#nav a[href='/messages']",
            "Account": "#nav a[href='/auth/account']",
            "Sign out": "#nav form[action='/auth/logout'] button",
        }
        for label, selector in items.items():
            assert page.locator(selector).is_visible(), label
        screenshot(page, "nojs-phone-menu.png")
        page.click(items["Account"])
        page.wait_for_url("**/auth/account")
    finally:
        context.close()


def test_cancel_and_try_again_from_the_card_show_in_every_tab(page, live_user):
    # Given a user's profile open in two tabs, and no worker: an export stays queued
    _, username = live_user("tabs", posts=3)
    sign_in(page, username)
    other = watch_csp(page.context.new_page())
    for tab in (page, other):
        tab.goto(f"/user/{username}")
    # When one tab starts an export, both show its card; the other tab cancels it
    page.click("#export-button")
    card = "#tasks .task[data-status='queued']"
    other.wait_for_selector(card, timeout=15_000)
    other.click(f"{card} .task-cancel button")
    # Then both tabs show it cancelled, with "Try again", and the export button enabled
    for tab in (page, other):
        tab.wait_for_selector("#tasks .task[data-status='cancelled']", timeout=15_000)
        assert tab.locator("#tasks .task-state").first.text_content() == "Cancelled"
        assert tab.locator("#tasks .task-retry").first.is_visible()
        assert not tab.locator("#tasks .task-cancel").first.is_visible()
        assert not tab.locator("#export-button").is_disabled()
    # And "Try again" starts a new export that both tabs show as queued
    page.click("#tasks .task[data-status='cancelled'] .task-retry button")
    for tab in (page, other):
        tab.wait_for_selector(card, timeout=15_000)
    # The retried card makes way in this tab once the answer comes (the new card's event may
    # come first)
    retried = "#tasks .task[data-status='cancelled']"
    page.wait_for_selector(retried, state="detached", timeout=15_000)
    assert page.locator("#tasks .task").count() == 1
    screenshot(other, "task-cancelled-and-retried.png")
    assert page.refused_by_csp == [] and other.refused_by_csp == []


def test_the_admin_page_follows_everyones_tasks_live(page, live_app, live_user, live_env, tmp_path):
    # Given an operator on the tasks page, and a user with many posts (no worker yet)
    _, admin = live_user("operator")
    user_id, username = live_user("exporter", posts=POSTS)
    with live_app.app_context():
        db.session.execute(db.update(User).where(User.username == admin).values(is_admin=True))
        db.session.commit()
    sign_in(page, admin)
    page.goto("/admin/tasks")
    # When the user starts an export, the page says so without a reload
    with live_app.app_context():
        first = launch(export_posts, user_id).id
    page.wait_for_selector("#new-tasks:not([hidden])", timeout=15_000)
    page.click("#new-tasks a")
    row = f'#admin-tasks tr[data-task-id="{first}"]'
    assert page.locator(f"{row} .task-status").text_content() == "queued"
    assert username in page.locator(row).text_content()
    # And the operator cancels it, then retries it
    page.click(f"{row} .admin-cancel button")
    page.wait_for_selector(f"{row}[data-status='cancelled']", timeout=15_000)
    page.click(f"{row} .admin-retry button")
    page.wait_for_selector("#flashes .alert", timeout=15_000)
    assert "started again" in page.locator("#flashes").text_content()
    second = page.locator("#admin-tasks tr[data-task-id]").first.get_attribute("data-task-id")
    assert second != first
    row = f'#admin-tasks tr[data-task-id="{second}"]'
    page.evaluate(
        """(row) => {
        window.seenValues = [];
        const bar = document.querySelector(row + ' .progress');
        const seen = () => window.seenValues.push(Number(bar.getAttribute('aria-valuenow')));
        new MutationObserver(seen).observe(bar, {attributes: true});
    }""",
        row,
    )
    # Then, once a worker runs it, the row moves live to "succeeded"
    with running_worker(live_env, tmp_path / "worker.log"):
        page.wait_for_selector(f"{row}[data-status='succeeded']", timeout=60_000)
    seen = page.evaluate("() => window.seenValues")
    assert any(0 < value < 100 for value in seen) and seen[-1] == 100, seen
    assert page.locator(f"{row} .task-status").text_content() == "succeeded"
    assert "pct-100" in page.locator(f"{row} .progress-bar").get_attribute("class").split()
    assert not page.locator(f"{row} .admin-cancel").is_visible()
    screenshot(page, "admin-tasks.png")
    assert page.refused_by_csp == []


def test_a_replayed_recording_moves_the_bar_through_its_values(page, live_user, live_env,
                                                               tmp_path):  # fmt: skip
    # Given a recording with a bar that moves in steps, made from a real run's golden file
    golden = Recording.load(ROOT / "tests" / "jobs" / "golden" / "count_words.json")
    queued, running, finished = golden.events[0], golden.events[2], golden.events[-1]
    steps = [0, 15, 40, 65, 90]
    # (steps further apart than a card holds each state: see MIN_STATE_MS in tasks.js)
    events = [queued] + [
        {"type": running["type"], "after_ms": 700 * (i + 1),
         "data": running["data"] | {"progress": p, "done": p, "total": 100}}
        for i, p in enumerate(steps)
    ] + [finished | {"after_ms": 700 * (len(steps) + 1)}]  # fmt: skip
    path = tmp_path / "steps.json"
    Recording("count_words", events).save(path)
    # And its user's page open
    _, username = live_user("replay")
    sign_in(page, username)
    page.goto(f"/user/{username}")
    watch_task_bar(page)
    page.evaluate("""() => {
        window.seenLabels = [];
        new MutationObserver(() => {
            const label = document.querySelector('#tasks .task-state');
            if (label && window.seenLabels.at(-1) !== label.textContent) {
                window.seenLabels.push(label.textContent);
            }
        }).observe(document.getElementById('tasks'),
                   {subtree: true, childList: true, characterData: true});
    }""")
    # When a developer replays it onto that user's channel
    command = ["flask", "--app", "wsgi", "jobs", "replay", str(path), "--user", username]
    subprocess.run([sys.executable, "-m", *command], cwd=ROOT, env=live_env, check=True,
                   timeout=60)  # fmt: skip
    # Then the card's bar went through every recorded value, its label counting the posts in
    # the reader's words, and ends done with the summary
    page.wait_for_selector("#tasks .task[data-status='succeeded']", timeout=15_000)
    labels = page.evaluate("() => window.seenLabels")
    assert [f"{n} of 100 posts" for n in steps[1:]] == [
        label for label in labels if label.endswith(" of 100 posts") and label != "0 of 100 posts"
    ], labels
    seen = page.evaluate("() => window.seenValues")
    distinct = [v for i, v in enumerate(seen) if i == 0 or v != seen[i - 1]]
    assert distinct == [*steps, 100], seen
    assert page.locator("#tasks .task-summary").first.text_content() == finished["data"]["summary"]
    assert page.refused_by_csp == []


def test_times_show_in_the_reader_s_timezone_and_language(browser, gunicorn_server, live_app,
                                                          live_user):  # fmt: skip
    # Given a post written at 2024-01-01 00:00 UTC and an export that finished 20 minutes ago
    user_id, username = live_user("times", posts=1)
    finished = datetime.now(UTC) - timedelta(minutes=20)
    with live_app.app_context():
        task_id = launch(export_posts, user_id).id
        db.session.execute(update(Task).where(Task.id == task_id).values(
            status="succeeded", finished_at=finished, progress=100))  # fmt: skip
        db.session.commit()
    in_new_york = finished.astimezone(ZoneInfo("America/New_York"))
    # When a reader in New York whose browser speaks Spanish opens the profile
    context = browser.new_context(
        base_url=gunicorn_server, timezone_id="America/New_York", locale="es-ES"
    )
    page = watch_csp(context.new_page())
    try:
        sign_in(page, username)
        page.goto(f"/user/{username}")
        post_time = page.locator(".post time").first
        finished_time = page.locator("#tasks .task-finished time").first
        page.wait_for_function("() => !document.querySelector('.post time').textContent"
                               ".includes('UTC')", timeout=10_000)  # fmt: skip
        # Then each time is local and in Spanish, with the full local time on hover
        assert post_time.text_content() == "31 dic 2023, 19:00"
        assert finished_time.text_content() == "hace 20 minutos"
        title = finished_time.get_attribute("title")
        assert f"{in_new_york.hour}:{in_new_york.minute:02d}" in title and "UTC" not in title
        # And a time that arrives live (the export cancelled from this page) reads as recent
        with live_app.app_context():
            launch(export_posts, user_id)
        page.reload()
        page.click("#tasks .task[data-status='queued'] .task-cancel button")
        page.wait_for_selector("#tasks .task[data-status='cancelled'] .task-finished time")
        live_time = page.locator("#tasks .task[data-status='cancelled'] .task-finished time")
        page.wait_for_function(
            "() => !document.querySelector('#tasks .task-finished time').textContent"
            ".includes('UTC')", timeout=10_000)  # fmt: skip
        assert live_time.text_content() in {"ahora", "hace 1 segundo"} or "hace" in (
            live_time.text_content()
        )
        assert page.refused_by_csp == []
    finally:
        context.close()


def send_from_profile(page, recipient: str, text: str) -> None:
    page.goto(f"/user/{recipient}")
    page.click("#send-message")
    page.fill("#message", text)
    page.click("#submit")
    page.wait_for_url(f"**/user/{recipient}")


def test_the_unread_badge_follows_every_tab_live(browser, gunicorn_server, live_user):
    # Given grace signed in with two tabs open, and ada in another browser
    _, grace = live_user("grace")
    _, ada = live_user("ada")
    graces = browser.new_context(base_url=gunicorn_server)
    adas = browser.new_context(base_url=gunicorn_server)
    try:
        first = watch_csp(graces.new_page())
        sign_in(first, grace)
        second = watch_csp(graces.new_page())
        second.goto("/explore")
        for tab in (first, second):
            assert tab.locator("#unread-badge").is_hidden()
        sender = watch_csp(adas.new_page())
        sign_in(sender, ada)
        # When ada sends grace a message
        send_from_profile(sender, grace, "Hello from ada")
        # Then both of grace's tabs show 1, live
        for tab in (first, second):
            tab.wait_for_selector("#unread-badge:not([hidden])", timeout=5_000)
            assert tab.locator("#unread-badge .unread-count").text_content() == "1"
        # When grace opens her messages in one tab
        first.goto("/messages")
        assert "Hello from ada" in first.locator(".message-body").first.text_content()
        # Then the other tab's badge drops to zero live, and a reload agrees
        second.wait_for_selector("#unread-badge[hidden]", state="attached", timeout=5_000)
        second.reload()
        assert second.locator("#unread-badge").is_hidden()
        assert first.refused_by_csp == [] and second.refused_by_csp == []
    finally:
        graces.close()
        adas.close()


def test_a_user_card_opens_on_hover_and_focus_and_its_follow_button_works(page, live_user):
    # Given linus has written a post, and ada reads Explore
    _, linus = live_user("linus", posts=1)
    _, ada = live_user("ada")
    sign_in(page, ada)
    page.goto(f"/user/{linus}")
    # When she hovers over his name
    page.hover(f".post a.user-link:text('{linus}')")
    card = page.locator(".user-popup")
    card.wait_for(timeout=5_000)
    # Then his card shows his counts and a Follow button
    assert card.locator(".popup-followers").text_content() == "0"
    page.keyboard.press("Escape")
    card.wait_for(state="detached", timeout=5_000)
    # And keyboard focus opens it too
    page.focus(f".post a.user-link:text('{linus}')")
    card.wait_for(timeout=5_000)
    # And Tab goes from the name into the card, to its Follow button
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.classList.contains('popup-follow')")
    # When she presses it
    with page.expect_navigation():
        page.keyboard.press("Enter")
    # Then she follows him (the page says so, and his card counts her)
    assert "You are following" in page.locator("#flashes").text_content()
    page.hover(f".post a.user-link:text('{linus}')")
    page.locator(".user-popup .popup-followers").wait_for(timeout=5_000)
    assert page.locator(".user-popup .popup-follow").text_content().strip() == "Unfollow"
    assert page.refused_by_csp == []


def test_search_from_the_navigation_bar_pages_back_and_forth_and_opens_a_person(
    page, live_app, live_user
):
    # Given a birder who wrote 30 posts holding a word nobody else wrote
    word = "heron" + os.urandom(4).hex()
    birder_id, birder = live_user("birder")
    with live_app.app_context():
        insert_posts(birder_id, [f"sighting {i}: a {word} by the lake" for i in range(30)])
    _, ada = live_user("ada")
    sign_in(page, ada)
    # When ada searches for it from the navigation bar
    page.fill("#nav-search", word.upper())
    with page.expect_navigation():
        page.press("#nav-search", "Enter")
    # Then the newest 25 show, the word marked in each
    bodies = page.locator(".post-body")
    assert bodies.count() == 25
    assert bodies.first.text_content() == f"sighting 29: a {word} by the lake"
    assert page.locator(".post-body mark").first.text_content() == word
    # And Older shows the last 5, and Newer brings the first page back
    with page.expect_navigation():
        page.click("a[rel=next]")
    assert [b.text_content() for b in bodies.all()][-1] == f"sighting 0: a {word} by the lake"
    assert bodies.count() == 5
    with page.expect_navigation():
        page.click("a[rel=prev]")
    assert bodies.first.text_content() == f"sighting 29: a {word} by the lake"
    # When she searches for the birder's name and opens them from the People section
    page.fill("#nav-search", birder)
    with page.expect_navigation():
        page.press("#nav-search", "Enter")
    with page.expect_navigation():
        page.click(f"section[aria-labelledby=people-heading] a:text('{birder}')")
    assert page.url.endswith(f"/user/{birder}")
    assert page.refused_by_csp == []
