"""Languages: each request in its reader's language, task texts translated when shown, and a
Spanish catalog that CI keeps complete."""

import json
import os
import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po
from flask_babel import force_locale
from flask_sse import Message
from sqlalchemy import select, update

from microblog.auth.models import User
from microblog.exports.email import export_email
from microblog.exports.jobs import archive_summary
from microblog.exports.models import Archive
from microblog.extensions import db
from microblog.i18n import LANGUAGES, MAPPING, TRANSLATIONS
from microblog.jobs import events
from microblog.jobs.models import Task
from microblog.jobs.worker.runner import user_safe_reason
from microblog.live.stream import for_reader
from microblog.models import utcnow
from microblog.stats.jobs import describe
from tests.support.data import make_task
from tests.support.web import ANONYMOUS_PAGES, SIGNED_IN_PAGES

SPANISH = {"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"}
ENGLISH = {"Accept-Language": "en-US,en;q=0.9"}


def lang_of(response) -> str:
    return re.search(r'<html lang="(\w+)"', response.get_data(as_text=True)).group(1)


def token(client, path: str = "/auth/login") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


@pytest.fixture
def app_config(app_config):
    return {**app_config, "THROTTLE_ENABLED": False}


def test_a_visitor_gets_the_browser_language_then_the_one_they_pick(client):
    # Given a browser that asks for Spanish first: the pages are Spanish
    page = client.get("/auth/login", headers=SPANISH)
    assert lang_of(page) == "es" and "Iniciar sesión" in page.get_data(as_text=True)
    # and a language the site does not speak falls back to English
    assert lang_of(client.get("/auth/login", headers={"Accept-Language": "fr, de"})) == "en"
    # When the visitor picks English with the switcher
    switched = client.post("/auth/language", data={"language": "en", "next": "/auth/register"},
                           headers=SPANISH)  # fmt: skip
    assert switched.status_code == 303 and switched.location == "/auth/register"
    # Then English it is, whatever the browser asks for, until they pick again
    page = client.get("/auth/register", headers=SPANISH)
    assert lang_of(page) == "en" and "The site now speaks English." in page.get_data(as_text=True)


def test_an_account_language_beats_the_browser_and_reaches_every_page(app, client, auth):
    # Given alice signed in with a browser that asks for English
    user_id = auth.signed_in("alice")
    assert lang_of(client.get("/", headers=ENGLISH)) == "en"
    # When she saves Spanish on her account page
    saved = client.post("/auth/language", data={"language": "es"}, headers=ENGLISH)
    assert saved.status_code == 303 and saved.location == "/auth/account"
    with app.app_context():
        assert db.session.get(User, user_id).language == "es"
    # Then every page is Spanish, on any browser she signs in on
    for path in ("/", "/explore", "/messages", "/auth/account", "/user/alice"):
        assert lang_of(client.get(path, headers=ENGLISH)) == "es", path
    # And "the browser's language" hands the choice back to the browser
    client.post("/auth/language", data={"language": ""}, headers=ENGLISH)
    assert lang_of(client.get("/", headers=ENGLISH)) == "en"
    assert lang_of(client.get("/", headers=SPANISH)) == "es"


@pytest.mark.parametrize("value", ["fr", "ES", "es ", "english", "\x00", "x" * 200])
def test_a_language_outside_the_list_is_refused_and_changes_nothing(app, client, auth, value):
    user_id = auth.signed_in("alice")
    response = client.post("/auth/language", data={"language": value}, headers=ENGLISH)
    assert response.status_code == 400
    assert "Choose a language from the list." in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, user_id).language is None
    anonymous = app.test_client()
    refused = anonymous.post("/auth/language", data={"language": value}, headers=SPANISH)
    assert refused.status_code == 400
    assert "Elige un idioma de la lista." in refused.get_data(as_text=True)
    assert anonymous.get_cookie("language") is None


def test_form_errors_and_flashes_are_in_the_reader_language(client, auth):
    auth.signed_in("alice")
    client.post("/auth/language", data={"language": "es"})
    empty = client.post("/", data={"post": ""})
    assert "Una publicación no puede estar vacía." in empty.get_data(as_text=True)
    posted = client.post("/", data={"post": "hola"}, follow_redirects=True)
    assert "¡Tu publicación ya está publicada!" in posted.get_data(as_text=True)
    # Werkzeug's own texts too: an error page is the site's, in Spanish
    missing = client.get("/user/nobody-at-all")
    assert missing.status_code == 404 and "No encontrado" in missing.get_data(as_text=True)
    as_json = client.get("/tasks/" + "0" * 32, headers={"Accept": "application/json"})
    assert as_json.json == {"error": "No encontrado", "message": missing_text(), "level": "danger"}


def missing_text() -> str:
    return "No existe esa página. Si escribiste la dirección, revísala."


def set_task(app, task_id: str, **values) -> None:
    with app.app_context():
        db.session.execute(update(Task).where(Task.id == task_id).values(**values))
        db.session.commit()


def test_task_texts_are_stored_as_message_ids_and_shown_in_the_reader_language(app, client, auth):
    # Given alice's failed export, started from a Spanish page
    user_id = auth.signed_in("alice")
    task_id = make_task(app, user_id)
    reason = user_safe_reason(OSError("relay down"))
    set_task(app, task_id, status="failed", finished_at=utcnow(), error=reason, locale="es")
    with app.app_context():
        stored = db.session.get(Task, task_id)
        # Then the row holds the English source texts, not a translation
        assert (stored.description, stored.error) == ("Exporting your posts", reason)
    # And each reader sees the card in their own language, on the page and as JSON
    spanish = client.get("/", headers=SPANISH).get_data(as_text=True)
    assert "Exportando tus publicaciones" in spanish
    assert "No se pudo enviar el correo: el servidor de correo no respondió." in spanish
    card = client.get(f"/tasks/{task_id}", headers={**SPANISH, "Accept": "application/json"})
    assert card.json["description"] == "Exportando tus publicaciones"
    english = client.get("/", headers=ENGLISH).get_data(as_text=True)
    assert "Exporting your posts" in english and "Exportando" not in english
    # A text from before translations (or of a job that does not translate) shows as it is
    set_task(app, task_id, error="Disk quota exceeded on the archive volume.")
    assert "Disk quota exceeded" in client.get("/", headers=SPANISH).get_data(as_text=True)


def data_of(wire: str) -> dict:
    """Return the data of one event in the stream's wire format."""
    return json.loads(re.search(r"^data:(.*)$", wire, re.MULTILINE).group(1))


def test_the_stream_localizes_each_task_event_for_its_reader(app):
    with app.app_context():
        data = dict(events.TaskEvent(
            task_id="a" * 32, name="count_words", description="Counting your words",
            status="succeeded", attempt=1, progress=100, done=3, total=3, error=None, url=None,
            result_label=None, result={"posts": 12345, "words": 1, "top": [["hola", 1]]},
            summary=None, finished_at=None, retry_at=None, max_attempts=13,
        ))  # fmt: skip
    message = Message(data, type=events.FINISHED, id="1-0")
    with app.test_request_context("/stream", headers=SPANISH):
        spanish = for_reader(message)
    with app.test_request_context("/stream", headers=ENGLISH):
        english = for_reader(message)
    spanish, english = data_of(spanish), data_of(english)
    assert spanish["description"] == "Contando tus palabras"
    assert spanish["summary"] == "12.345 publicaciones · 1 palabra · la más usada: hola"
    assert english["description"] == "Counting your words"
    assert english["summary"] == "12,345 posts · 1 word · most used: hola"
    assert message.data["description"] == "Counting your words"  # shared: never changed
    # An event type without texts goes out as it came
    plain = Message({"count": 2}, type="message.unread", id="2-0")
    with app.test_request_context("/stream", headers=SPANISH):
        assert for_reader(plain) == str(plain)


@pytest.mark.parametrize(
    ("locale", "result", "expected"),
    [
        ("en", {"posts": 1, "bytes": 980}, "1 post · 980 bytes"),
        ("en", {"posts": 12345, "bytes": 1_234_567}, "12,345 posts · 1.2 MB"),
        ("es", {"posts": 1, "bytes": 1}, "1 publicación · 1 byte"),
        ("es", {"posts": 12345, "bytes": 1_234_567}, "12.345 publicaciones · 1,2 MB"),
        ("es", {"posts": 2, "bytes": 45_000_000}, "2 publicaciones · 45 MB"),
    ],
)
def test_summaries_write_numbers_for_the_locale(app_context, locale, result, expected):
    with force_locale(locale):
        assert archive_summary(result) == expected


def test_word_count_summary_in_english(app_context):
    result = {"posts": 1234, "words": 56789, "top": [["hello", 3]]}
    assert describe(result) == "1,234 posts · 56,789 words · most used: hello"


def test_emails_are_in_the_recipient_language(app, make_user):
    user_id = make_user("alice")
    with app.app_context():
        user = db.session.get(User, user_id)
        archive = Archive(task_id="b" * 32, filename="x.json.gz", size=10, json_size=10**9,
                          post_count=2, expires_at=utcnow() + timedelta(days=7))  # fmt: skip
        # No choice saved: the language of the page that started the export
        spanish = export_email(user, archive, locale="es")
        assert spanish.subject == "Tu exportación de microblog está lista"
        assert "Tu exportación de 2 publicaciones está lista." in spanish.body
        assert "Descarga tu archivo" in spanish.html
        assert export_email(user, archive).subject == "Your microblog export is ready"
        # A language chosen on the account wins over the page's
        user.language = "en"
        assert export_email(user, archive, locale="es").subject == "Your microblog export is ready"


def extracted_messages(tmp_path) -> set[str]:
    template = tmp_path / "messages.pot"
    package = os.path.dirname(TRANSLATIONS)
    CommandLineInterface().run(["pybabel", "-q", "extract", "-F", MAPPING, "-k", "_l",
                                "-k", "N_", "-o", str(template), package])  # fmt: skip
    with open(template, "rb") as file:
        return {message.id if isinstance(message.id, str) else message.id[0]
                for message in read_po(file) if message.id}  # fmt: skip


@pytest.mark.parametrize("language", [code for code in LANGUAGES if code != "en"])
def test_every_catalog_translates_every_message(tmp_path, language):
    # Given every message the code and templates ask to translate
    wanted = extracted_messages(tmp_path)
    path = os.path.join(TRANSLATIONS, language, "LC_MESSAGES", "messages.po")
    with open(path, "rb") as file:
        catalog = read_po(file)
    have = {m.id if isinstance(m.id, str) else m.id[0]: m for m in catalog if m.id}
    # Then the catalog has each, translated in every plural form, none fuzzy, each keeping the
    # source's placeholders (Babel's checks), and holds no message the code no longer asks for
    missing = sorted(wanted - have.keys())
    untranslated = sorted(key for key, m in have.items()
                          if not m.string or not all(m.string if isinstance(m.string, tuple)
                                                     else [m.string]))  # fmt: skip
    fuzzy = sorted(key for key, m in have.items() if m.fuzzy)
    broken = [(m.id, [str(e) for e in errors]) for m, errors in catalog.check()]
    stale = sorted(have.keys() - wanted)
    assert missing == [], f"not in the {language} catalog (run `flask translate update`)"
    assert untranslated == [], f"untranslated in the {language} catalog"
    assert fuzzy == [], f"fuzzy in the {language} catalog"
    assert broken == []
    assert stale == [], f"no longer used, in the {language} catalog (`flask translate update`)"


def test_the_site_says_sign_in_and_sign_out_everywhere(tmp_path):
    # Every text the code and templates show, emails included: one verb for each
    other_verb = re.compile(r"\blog(ged)? ?(in|out)\b|\blogin\b", re.IGNORECASE)
    mixed = sorted(m for m in extracted_messages(tmp_path) if other_verb.search(m))
    assert mixed == []


class VisibleText(HTMLParser):
    """What a reader meets on a page: its text, and the labels, titles and placeholders."""

    SHOWN_ATTRIBUTES = ("aria-label", "title", "placeholder", "alt", "value")

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        attributes = dict(attrs)
        for name in self.SHOWN_ATTRIBUTES:
            if attributes.get(name) and (name != "value" or self._is_button(tag, attributes)):
                self.parts.append(attributes[name])

    @staticmethod
    def _is_button(tag: str, attributes: dict) -> bool:
        """A value is shown only as a button's text (others are what a field holds)."""
        return tag == "input" and attributes.get("type") in ("submit", "button", "reset")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = VisibleText()
    parser.feed(html)
    return " ".join(parser.parts)


# Words of the English interface that no Spanish page should show.
ENGLISH_WORDS = re.compile(
    r"\b(the|and|your|you|with|Sign|Search|Home|Explore|Messages|Profile|Account|Register|"
    r"Follow|Following|Followers|Export|Count|Cancel|Close|Older|Newer|Waiting|Done|Failed|"
    r"Send|Save|Password|Language|People|Posts|Tasks|ago|posts|words|Finished|Try|Nobody|"
    r"Last|seen|Queue|Ready|Status|Filter|Created|Progress|Attempts|Detail|Retry|any|of|to|"
    r"is|are|this|that|for|from|by|more|new|all|every|there|here)\b",
    re.IGNORECASE,
)


def test_spanish_pages_have_no_english_left(app, client, auth, make_user, runner):
    # Given alice, an operator reading Spanish, with a card of every kind, and bob to visit
    make_user("bob")
    user_id = auth.signed_in("alice")
    assert runner.invoke(args=["users", "grant-admin", "alice"]).exit_code == 0
    client.post("/auth/language", data={"language": "es"})
    client.post("/", data={"post": "hola a todos"})
    client.post("/follow/bob")
    reason = user_safe_reason(RuntimeError())
    words = make_task(app, user_id)
    with app.app_context():
        db.session.execute(
            update(Task)
            .where(Task.id == words)
            .values(
                name="count_words",
                description="Counting your words",
                status="succeeded",
                finished_at=utcnow(),
                result={"posts": 3, "words": 9, "top": [["hola", 2]]},
            )
        )
        db.session.commit()
    failed = make_task(app, user_id)
    set_task(app, failed, status="failed", finished_at=utcnow(), error=reason,
             created_at=utcnow() - timedelta(hours=2))  # fmt: skip
    export = make_task(app, user_id)
    set_task(
        app,
        export,
        status="running",
        progress=40,
        done=4,
        total=10,
        attempts=2,
        error="The mail server is unreachable.",
        retry_at=utcnow() + timedelta(minutes=3),
    )
    # When every page she can open is rendered
    pages = [path.format(me="alice", other="bob") for path in SIGNED_IN_PAGES]
    pages.append("/user/bob/popup")
    shown = {path: client.get(path) for path in pages}
    visitor = app.test_client()
    shown |= {f"anonymous {p}": visitor.get(p, headers=SPANISH, follow_redirects=True)
              for p in ANONYMOUS_PAGES}  # fmt: skip
    # Then none shows a word of the English interface
    english = {}
    for path, response in shown.items():
        assert response.status_code < 500, path
        found = ENGLISH_WORDS.findall(visible_text(response.get_data(as_text=True)))
        if found:
            english[path] = sorted(set(found))
    assert english == {}
    with app.app_context():
        assert db.session.scalar(select(User.language).where(User.id == user_id)) == "es"


def test_an_event_missing_fields_is_localized_as_far_as_it_goes(app):
    # An old recording, replayed, may lack fields the contract has since gained
    with app.test_request_context("/stream", headers=SPANISH):
        old = events.localized({"task_id": "t", "name": "export_posts", "status": "running",
                                "description": "Exporting your posts", "progress": 5})  # fmt: skip
    assert old == {"task_id": "t", "name": "export_posts", "status": "running",
                   "description": "Exportando tus publicaciones", "progress": 5}  # fmt: skip


def test_spanish_counts_agree_and_the_language_is_named_as_in_a_sentence(client, auth, make_user):
    # Given alice reading in Spanish, following one person
    auth.signed_in()
    make_user("bob")
    client.post("/follow/bob")
    switched = client.post("/auth/language", data={"language": "es"}, follow_redirects=True)
    # Then the switch names the language as Spanish writes it in a sentence
    assert "El sitio ahora está en español." in switched.get_data(as_text=True)
    # And one followed is singular, on the profile and in the user's card
    for path in ("/user/alice", "/user/alice/popup"):
        page = client.get(path).get_data(as_text=True)
        assert re.search(r"1(</span>)? seguido\b", page) and "seguidos" not in page, path


# A placeholder that holds a count, followed by a word that would need its plural.
COUNTED = re.compile(r"%\((num|count|total|done|posts|words|n)\)s (?!of\b|de\b)[^\W\d_]{2,}")


@pytest.mark.parametrize("language", [code for code in LANGUAGES if code != "en"])
def test_counts_are_plural_messages_and_translations_keep_the_sources_case(language):
    path = os.path.join(TRANSLATIONS, language, "LC_MESSAGES", "messages.po")
    with open(path, "rb") as file:
        catalog = [m for m in read_po(file) if m.id]
    # A count followed by a noun ("%(num)s posts") is an ngettext message, in every form
    singular_counts = sorted(m.id for m in catalog
                             if isinstance(m.id, str) and COUNTED.search(m.id))  # fmt: skip
    assert singular_counts == [], "use ngettext for these"
    plural = [m for m in catalog if not isinstance(m.id, str)]
    assert all(len(m.string) == len(catalog_plural_forms(path)) for m in plural)

    # And each translation starts as its source does: a capital where the source has one
    # (a sentence, a button), lower case where the text goes inside a sentence ("español")
    def first_letter(text: str) -> str:
        text = re.sub(r"%\(\w+\)s|<[^>]+>", "", text)
        return next((c for c in text if c.isalpha()), "")

    wrong_case = sorted(
        (source, translation)
        for m in catalog
        for source, translation in zip(
            m.id if isinstance(m.id, tuple) else (m.id,),
            m.string if isinstance(m.string, tuple) else (m.string,),
            strict=False,
        )
        if first_letter(source)
        and first_letter(translation)
        and first_letter(source).isupper() != first_letter(translation).isupper()
    )
    assert wrong_case == []


def catalog_plural_forms(path: str) -> range:
    """Return the plural forms the catalog's header declares (``nplurals``)."""
    with open(path, encoding="utf-8") as file:
        nplurals = re.search(r"nplurals=(\d+)", file.read()).group(1)
    return range(int(nplurals))
