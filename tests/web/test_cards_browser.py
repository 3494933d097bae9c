"""The task cards and what surrounds them, as a user meets them in chromium: a short job's card
instead of a flash, counts and a bar that agree, one rule for which cards stay (live, after a
reload, without JavaScript), an operator's cancel and a sign-in ended elsewhere said plainly.
Each test keeps a screenshot in test-artifacts/."""

import re

import pytest

from microblog.exports.jobs import export_posts
from microblog.extensions import db
from microblog.jobs import control
from microblog.jobs.launch import launch
from microblog.jobs.models import Task
from microblog.models import utcnow
from tests.support.browser import screenshot, sign_in, watch_csp
from tests.support.web import PASSWORD

pytestmark = pytest.mark.long

PHONE = {"viewport": {"width": 375, "height": 740}, "is_mobile": True, "has_touch": True}
SPANISH = {"locale": "es-ES", "extra_http_headers": {"Accept-Language": "es-ES,es"}}
CARD = "#tasks .task"
# The card's state shows at least this long before a later progress replaces it (tasks.js's
# MIN_STATE_MS, less what a busy machine's timers may cut short).
MIN_STATE_SECONDS = 0.5


def watch_card_labels(page) -> None:
    """Keep in ``window.labels`` each state the first card's label shows from now: its text,
    when (seconds), and how full its bar was drawn at that moment (percent of the track)."""
    page.evaluate("""() => {
        window.labels = [];
        const look = () => {
            const card = document.querySelector('#tasks .task');
            if (!card) return;
            const text = card.querySelector('.task-state').textContent;
            const last = window.labels[window.labels.length - 1];
            if (last && last.text === text) return;
            const track = card.querySelector('.progress').getBoundingClientRect().width;
            const fill = card.querySelector('.progress-bar').getBoundingClientRect().width;
            window.labels.push({text, at: performance.now() / 1000, bar: 100 * fill / track});
        };
        new MutationObserver(look).observe(document.getElementById('tasks'),
            {subtree: true, childList: true, attributes: true, characterData: true});
    }""")


def label_percent(text: str) -> float | None:
    """Return what a label says of the progress in percent: "40%", "120 of 300 posts"."""
    if match := re.fullmatch(r"(\d+)%", text):
        return float(match.group(1))
    if match := re.fullmatch(r"([\d,.]+) (?:of|de) ([\d,.]+) \w+", text):
        done, total = (int(re.sub(r"[,.]", "", group)) for group in match.groups())
        return 100 * done / total
    return None


def card_ids(page) -> list[str]:
    return page.eval_on_selector_all(CARD, "cards => cards.map(c => c.dataset.taskId)")


def test_a_short_export_answers_with_its_card_whose_label_never_leads_its_bar(
    page, live_user, worker_process
):
    # Given a user with a few hundred posts on their profile
    _, username = live_user("short", posts=600)
    sign_in(page, username)
    page.goto(f"/user/{username}")
    watch_card_labels(page)
    # When they start an export
    page.click("#export-button")
    page.wait_for_selector(f"{CARD}[data-status='succeeded']", timeout=60_000)
    # Then the card is the answer: no flash says it started (it would be stale by now)
    assert page.locator("#flashes .alert").count() == 0
    labels = page.evaluate("() => window.labels")
    assert labels[0]["text"] == "Waiting to start" and labels[-1]["text"] == "Done", labels
    # And every state but the end stayed long enough to read
    for shown, replaced in zip(labels, labels[1:-1], strict=False):
        assert replaced["at"] - shown["at"] >= MIN_STATE_SECONDS, labels
    # And no label was ever ahead of (or behind) the bar drawn with it
    for label in labels:
        said = label_percent(label["text"])
        if said is not None:
            assert abs(said - label["bar"]) <= 1, labels
    screenshot(page, "cards-short-export-done.png")
    # And a reload shows the same card, as it is
    shown = card_ids(page)
    page.reload()
    assert card_ids(page) == shown
    assert page.locator(f"{CARD} .task-state").first.text_content() == "Done"
    assert page.refused_by_csp == []


def test_the_cards_are_the_same_live_after_a_reload_and_without_javascript_on_a_phone(
    browser, gunicorn_server, live_app, live_user
):
    # Given, on a phone, a user with an archive not yet downloaded and a cancelled export
    user_id, username = live_user("rule")
    with live_app.app_context():
        result = launch(export_posts, user_id).id
        db.session.execute(db.update(Task).where(Task.id == result).values(
            status="succeeded", finished_at=utcnow(), progress=100,
            result={"posts": 3, "bytes": 900},
        ))  # fmt: skip
        db.session.commit()
        cancelled = launch(export_posts, user_id)
        control.cancel(cancelled)
        cancelled = cancelled.id
    context = browser.new_context(base_url=gunicorn_server, **PHONE)
    page = watch_csp(context.new_page())
    try:
        sign_in(page, username)
        page.goto(f"/user/{username}")
        assert card_ids(page) == [cancelled, result]
        # When another export is cancelled, live
        with live_app.app_context():
            newest = launch(export_posts, user_id).id
        page.wait_for_selector(f"{CARD}[data-task-id='{newest}']", timeout=15_000)
        with live_app.app_context():
            control.cancel(db.session.get(Task, newest))
        page.wait_for_selector(f"{CARD}[data-task-id='{newest}'][data-status='cancelled']",
                               timeout=15_000)  # fmt: skip
        # Then the older cancel makes way, and the archive not yet downloaded stays
        page.wait_for_selector(f"{CARD}[data-task-id='{cancelled}']", state="detached",
                               timeout=15_000)  # fmt: skip
        live = card_ids(page)
        assert live == [newest, result]
        screenshot(page, "cards-phone-live.png")
        # And a reload shows exactly the same cards
        page.reload()
        assert card_ids(page) == live
        # And other pages keep to what is under way: none of these finished cards
        page.goto("/explore")
        assert card_ids(page) == []
    finally:
        context.close()
    # And without JavaScript the profile shows the same cards again
    context = browser.new_context(base_url=gunicorn_server, java_script_enabled=False, **PHONE)
    try:
        page = context.new_page()
        sign_in(page, username)
        page.goto(f"/user/{username}")
        assert card_ids(page) == live
        screenshot(page, "cards-phone-no-javascript.png")
    finally:
        context.close()


def test_an_operators_cancel_says_so_on_the_users_card(
    browser, gunicorn_server, live_app, live_user
):
    # Given a Spanish reader watching their export wait in the queue
    user_id, username = live_user("cancelled")
    context = browser.new_context(base_url=gunicorn_server, **SPANISH)
    page = watch_csp(context.new_page())
    try:
        sign_in(page, username)
        page.goto(f"/user/{username}")
        with live_app.app_context():
            task_id = launch(export_posts, user_id).id
        page.wait_for_selector(f"{CARD}[data-task-id='{task_id}']", timeout=15_000)
        # When an operator cancels it
        with live_app.app_context():
            control.cancel(db.session.get(Task, task_id), control.CANCELLED_BY_OPERATOR)
        # Then the card says who did, live and after a reload, in the reader's language
        card = f"{CARD}[data-task-id='{task_id}'][data-status='cancelled']"
        page.wait_for_selector(card, timeout=15_000)
        for _ in ("live", "reloaded"):
            assert page.locator(f"{card} .task-state").text_content() == "Cancelado"
            assert page.locator(f"{card} .task-error").text_content() == (
                "Un operador canceló este trabajo."
            )
            screenshot(page, "cards-cancelled-by-an-operator-es.png")
            page.reload()
        assert page.refused_by_csp == []
    finally:
        context.close()


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_a_sign_in_ended_elsewhere_is_told_live_and_after_a_reload(
    browser, gunicorn_server, live_user, device
):
    # Given a user's profile open on one device, in Spanish, and the account page on another
    _, username = live_user("ended")
    watching = browser.new_context(base_url=gunicorn_server, **SPANISH,
                                   **(PHONE if device == "phone" else {}))  # fmt: skip
    other = browser.new_context(base_url=gunicorn_server)
    try:
        page, laptop = watch_csp(watching.new_page()), other.new_page()
        for tab in (page, laptop):
            sign_in(tab, username)
        page.goto(f"/user/{username}")
        page.wait_for_function("() => document.body.dataset.streamUrl", timeout=5_000)
        # When the other device signs out everywhere
        laptop.goto("/auth/account")
        laptop.click("form[action='/auth/sign_out_everywhere'] button")
        laptop.wait_for_url("**/auth/login")
        # Then the open page says so at once, with the way back in to this very page
        banner = page.wait_for_selector("#signed-out", timeout=15_000)
        assert banner.text_content().startswith("Tu sesión ha terminado")
        link = page.locator("#signed-out a")
        assert link.text_content() == "Iniciar sesión"
        assert link.get_attribute("href") == f"/auth/login?next=%2Fuser%2F{username}"
        screenshot(page, f"signed-out-live-{device}-es.png")
        # And after a reload the page says it again, once, as a warning
        page.reload()
        flashes = page.locator("#flashes .alert-warning")
        assert flashes.count() == 1
        assert flashes.first.text_content().strip().startswith("Tu sesión ha terminado")
        screenshot(page, f"signed-out-reloaded-{device}-es.png")
        # And the way back in works
        page.goto(f"/auth/login?next=/user/{username}")
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        page.click("#submit")
        page.wait_for_url(f"**/user/{username}")
        assert page.refused_by_csp == []
    finally:
        watching.close()
        other.close()


def answer_to(page, selector: str) -> tuple[list[str], str]:
    """Click ``selector`` with the flashes cleared; return the classes and text of the one the
    answer shows."""
    page.evaluate("() => document.getElementById('flashes').replaceChildren()")
    page.click(selector)
    alert = page.wait_for_selector("#flashes .alert", timeout=15_000)
    return alert.get_attribute("class").split(), alert.text_content()


def test_every_error_a_pages_script_receives_is_styled_by_its_level(page, live_user):
    # (a message without its level would be "alert-undefined": grey text, no colour)
    # Given a user's profile with an export waiting in the queue (no worker runs here)
    _, username = live_user("styled")
    sign_in(page, username)
    page.goto(f"/user/{username}")
    page.click("#export-button")
    page.wait_for_selector(f"{CARD}[data-status='queued']", timeout=15_000)
    # When the button is pressed again anyway (a second tab's, say): a warning, 409
    page.evaluate("() => { document.getElementById('export-button').disabled = false; }")
    classes, text = answer_to(page, "#export-button")
    assert "alert-warning" in classes and "already in progress" in text
    # When a form's security token is forged: an error
    page.evaluate("""() => document.querySelectorAll('#tasks input[name=csrf_token]')
                          .forEach((input) => { input.value = 'forged'; })""")
    classes, text = answer_to(page, f"{CARD} .task-cancel button")
    assert "alert-danger" in classes, (classes, text)
    screenshot(page, "cards-errors-styled.png")
    # When the browser lost its cookies meanwhile (signed out): an error too
    page.context.clear_cookies()
    classes, text = answer_to(page, f"{CARD} .task-cancel button")
    assert "alert-danger" in classes, (classes, text)
