"""A reader whose browser asks for Spanish, in a real browser: every page, card and email is
Spanish; switching the account to English turns all of it, old task cards included, English."""

import os
import re
import time
from email.header import decode_header, make_header

from microblog.auth.models import User
from microblog.extensions import db
from microblog.jobs import events
from microblog.jobs.models import Task, TaskStatus
from microblog.jobs.worker.runner import user_safe_reason
from microblog.models import utcnow
from tests.i18n.test_languages import ENGLISH_WORDS
from tests.support.browser import screenshot
from tests.support.servers import running_worker
from tests.support.web import PASSWORD

SPANISH_CONTEXT = {"locale": "es-ES", "extra_http_headers": {"Accept-Language": "es-ES,es"}}
CARD = "#tasks .task"


def english_left(page) -> list[str]:
    """Return the words of the English interface the page shows (text, labels, titles)."""
    shown = page.evaluate("""() => [document.body.innerText,
        ...[...document.querySelectorAll('[aria-label],[title],[placeholder]')].flatMap(
            (e) => [e.getAttribute('aria-label'), e.title, e.getAttribute('placeholder')])
    ].filter(Boolean).join(' ')""")
    return sorted(set(ENGLISH_WORDS.findall(shown)))


def card_of(page, name: str):
    return page.locator(f'{CARD}[data-name="{name}"]').first


def wait_status(page, name: str, status: str, timeout: float = 60_000) -> None:
    page.wait_for_selector(f'{CARD}[data-name="{name}"][data-status="{status}"]',
                           timeout=timeout)  # fmt: skip


def subject(message) -> str:
    return str(make_header(decode_header(message["Subject"])))


def test_a_spanish_reader_sees_spanish_everywhere_then_switches_to_english(
    browser, gunicorn_server, live_app, live_env, smtp_server, tmp_path
):
    context = browser.new_context(base_url=gunicorn_server, **SPANISH_CONTEXT)
    page = context.new_page()
    name = f"ana{os.getpid()}{os.urandom(2).hex()}"
    # Given a newcomer whose browser asks for Spanish: she registers, and is signed in
    page.goto("/auth/register")
    assert page.locator("html").get_attribute("lang") == "es"
    page.fill("#username", name)
    page.fill("#email", f"{name}@example.com")
    page.fill("#password", PASSWORD)
    page.fill("#password2", PASSWORD)
    page.click("#submit")
    page.wait_for_url("**/")
    assert f"¡Te damos la bienvenida, {name}!" in page.inner_text("#flashes")
    assert "Haz tuya esta página" in page.inner_text("main")
    # She posts
    page.fill("#post", "Mi primera publicación, escrita en castellano.")
    page.click("#submit")
    assert "¡Tu publicación ya está publicada!" in page.inner_text("#flashes")
    assert english_left(page) == []

    # When she starts an export with no worker running: the card waits, in Spanish
    page.goto(f"/user/{name}")
    page.click("#export-button")
    wait_status(page, "export_posts", "queued")
    export = card_of(page, "export_posts")
    assert export.locator(".task-description").inner_text() == "Exportando tus publicaciones"
    assert export.locator(".task-state").inner_text() == "Esperando para empezar"
    # and she cancels it: the card says so live
    export.locator(".task-cancel button").click()
    wait_status(page, "export_posts", "cancelled")
    assert card_of(page, "export_posts").locator(".task-state").inner_text() == "Cancelado"
    assert english_left(page) == []

    # A failure reaches the open page live, as its reason's message id, and shows in Spanish
    with live_app.app_context():
        user_id = db.session.scalar(db.select(User.id).where(User.username == name))
        failed = Task(user_id=user_id, name="count_words", description="Counting your words",
                      status=TaskStatus.FAILED, finished_at=utcnow(), attempts=1,
                      error=user_safe_reason(OSError()))  # fmt: skip
        db.session.add(failed)
        # She has confirmed her address, so her export is emailed (tests/auth/test_addresses.py
        # follows the link itself)
        db.session.get(User, user_id).email_confirmed_at = utcnow()
        db.session.commit()
        events.announce(events.FINISHED, failed)
    wait_status(page, "count_words", "failed")
    failed_card = card_of(page, "count_words")
    assert failed_card.locator(".task-description").inner_text() == "Contando tus palabras"
    assert failed_card.locator(".task-error").inner_text().startswith("No se pudo enviar")

    # With a worker: "Try again" on the export, and a word count, run to the end live
    with running_worker(live_env, tmp_path / "worker.log"):
        card_of(page, "export_posts").locator(".task-retry button").click()
        wait_status(page, "export_posts", "succeeded")
        page.click("#count-words-button")
        wait_status(page, "count_words", "succeeded")
    export, words = card_of(page, "export_posts"), card_of(page, "count_words")
    assert export.locator(".task-state").inner_text() == "Listo"
    assert export.locator(".task-download").inner_text() == "Descarga tu archivo"
    assert re.fullmatch(r"1 publicación · [\d,]+ (bytes|KB)",
                        export.locator(".task-summary").inner_text())  # fmt: skip
    assert words.locator(".task-summary").inner_text().startswith("1 publicación · 6 palabras")
    assert english_left(page) == [], screenshot(page, "spanish-cards.png")

    # And the export's email is Spanish
    deadline = time.monotonic() + 30
    while not (mine := [m for m in smtp_server.messages if name in m["To"]]):
        assert time.monotonic() < deadline, "the export's email did not arrive"
        time.sleep(0.1)
    assert subject(mine[0]) == "Tu exportación de microblog está lista"
    text = next(p for p in mine[0].walk() if p.get_content_type() == "text/plain")
    assert "Tu exportación de 1 publicación está lista." in text.get_payload(decode=True).decode()

    # When she chooses English on her account page
    page.goto("/auth/account")
    page.select_option("#language", "en")
    page.click("#language-form [type=submit]")
    page.wait_for_url("**/auth/account")
    assert page.locator("html").get_attribute("lang") == "en"
    assert "The site now speaks English." in page.inner_text("#flashes")
    # Then the cards of tasks made while Spanish was on are English too, as is every page
    page.goto(f"/user/{name}")
    export, words = card_of(page, "export_posts"), card_of(page, "count_words")
    assert export.locator(".task-description").inner_text() == "Exporting your posts"
    assert export.locator(".task-download").inner_text() == "Download your archive"
    assert words.locator(".task-summary").inner_text().startswith("1 post · 6 words")
    assert "Exportando" not in page.inner_text("body")
    context.close()


def test_without_javascript_a_finished_card_shows_a_full_bar(
    browser, gunicorn_server, live_app, live_user
):
    # Given a user with a finished export
    user_id, username = live_user("nojs")
    with live_app.app_context():
        db.session.add(Task(user_id=user_id, name="export_posts", status=TaskStatus.SUCCEEDED,
                            description="Exporting your posts", progress=100, attempts=1,
                            finished_at=utcnow()))  # fmt: skip
        db.session.commit()
    context = browser.new_context(base_url=gunicorn_server, java_script_enabled=False)
    page = context.new_page()
    page.goto("/auth/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url("**/")
    # When the page is read with scripts off
    track = page.locator(f"{CARD} .progress").first
    fill = track.locator(".progress-bar")
    screenshot(page, "finished-card-without-javascript.png")
    # Then the bar is drawn full, by the page's own classes
    assert fill.bounding_box()["width"] == track.bounding_box()["width"] > 0
    context.close()
