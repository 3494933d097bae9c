"""The reader's language: which one a request gets, and texts stored untranslated.

A request is answered in the signed-in user's chosen language (the account page), else the
one a visitor picked with the switcher (a cookie), else the best of the browser's
``Accept-Language`` that the site speaks, else English. Emails (:func:`email_in`) and other
work done away from the reader's request take a language explicitly (:func:`language`).

Scripts take their texts from the page (:func:`for_scripts`), never built in.

A text that is stored and shown later, possibly to a reader of another language (a task's
description, the reason it failed, the label of its result), is kept as its message id, the
English source text, and translated when shown (:func:`translated`). Declare one with
:func:`_l` (or :func:`N_` where the text is stored at once) so that ``flask translate update``
finds it; :func:`msgid` gives what to store.

Catalogs live in ``microblog/translations/<lang>/LC_MESSAGES/messages.po``; ``flask translate``
extracts, updates and compiles them (pybabel underneath). Compiled ``.mo`` files are build
output: ``make run``, ``make test`` and the image make them.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import click
from babel.messages.frontend import CommandLineInterface
from flask import Flask, Response, current_app, render_template, request
from flask_babel import (
    Babel,
    LazyString,
    force_locale,
    format_datetime,
    format_decimal,
    format_number,
    get_locale,
    gettext,
    ngettext,
)
from flask_login import current_user
from flask_mail import Message

# The languages the site speaks, each in its own words (what the switcher shows).
LANGUAGES = {"en": "English", "es": "Español"}
# Each language's name inside a sentence of its own (Spanish writes it in lower case).
NAMES_IN_A_SENTENCE = {"en": "English", "es": "español"}
DEFAULT = "en"
COOKIE = "language"  # a visitor's choice made with the switcher
COOKIE_MAX_AGE = 365 * 24 * 3600
MAX_ACCEPT_LANGUAGE = 1000  # longer headers are read as asking for nothing in particular
TRANSLATIONS = os.path.join(os.path.dirname(__file__), "translations")

babel = Babel()


class LazyMessage(LazyString):
    """A message id that translates to the reader's language whenever it is shown, and
    remembers its source text (:attr:`msgid`) for storing."""

    def __init__(self, msgid: str) -> None:
        super().__init__(gettext, msgid)
        self.msgid = msgid


def _l(text: str) -> LazyMessage:
    """Mark ``text`` for translation, translated when shown (form labels, job descriptions)."""
    return LazyMessage(text)


def N_(text: str) -> str:
    """Mark ``text`` for translation where it is stored as it is and translated when shown
    (a task's failure reason): the catalogs get it, the caller keeps the source text."""
    return text


def msgid(text: str | LazyMessage) -> str:
    """Return what to store for ``text``: a :class:`LazyMessage`'s source text, else ``text``."""
    return text.msgid if isinstance(text, LazyMessage) else text


def translated(stored: str | None) -> str | None:
    """Return a stored message id in the current language; a text that is no message id
    (written by an older version, or by a job type that does not translate) as it is."""
    return gettext(stored) if stored else stored


_script_texts: dict[str, LazyMessage] = {}  # what the pages' scripts show, by key


def for_scripts(texts: dict[str, LazyMessage]) -> None:
    """Give the pages' scripts these texts, translated for each page (base.html writes them in
    a JSON block, ``#page-texts``); a text's ``%(name)s`` is filled by the script."""
    _script_texts.update(texts)


def page_texts() -> dict[str, str]:
    """Return every script's texts in the current language."""
    return {key: str(text) for key, text in _script_texts.items()}


def supported(language: str | None) -> str | None:
    """Return ``language`` if the site speaks it, else None."""
    return language if language in LANGUAGES else None


def select_locale() -> str:
    """Choose the current request's language (see the module's docstring)."""
    chosen = getattr(current_user, "language", None) if current_user else None
    if supported(chosen):
        return chosen
    return supported(request.cookies.get(COOKIE)) or browser_language()


def browser_language() -> str:
    """Return the best of the languages the request's ``Accept-Language`` asks for that the
    site speaks, else English (also for a header too long to be a browser's)."""
    if len(request.headers.get("Accept-Language", "")) > MAX_ACCEPT_LANGUAGE:
        return DEFAULT
    return request.accept_languages.best_match(LANGUAGES, default=DEFAULT)


def current_language() -> str:
    """Return the language code of the current request (or of :func:`language`)."""
    locale = get_locale()
    return locale.language if locale is not None else DEFAULT


@contextmanager
def language(code: str | None) -> Iterator[None]:
    """Speak ``code`` inside the block (English when it is None or not spoken here)."""
    with force_locale(supported(code) or DEFAULT):
        yield


def email_in(code: str | None, to: str, subject: LazyMessage, template: str, **context) -> Message:
    """Return an email to ``to`` written in ``code``: ``template`` names the pair
    ``<template>.txt`` and ``<template>.html``, rendered with ``context``."""
    with language(code):
        return Message(
            subject=str(subject),
            recipients=[to],
            body=render_template(f"{template}.txt", **context),
            html=render_template(f"{template}.html", **context),
        )


def when(moment: datetime) -> str:
    """Write a date and time for the current language, in UTC (times.js shows it in the
    reader's own timezone)."""
    return f"{format_datetime(moment, 'medium')} UTC"


def format_size(count: int) -> str:
    """Say a number of bytes the way people read them: 980 bytes, 12 KB, 1.2 MB."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if count >= scale:
            value = count / scale
            shown = format_decimal(value, "0.0" if value < 10 else "#,##0")
            return f"{shown} {unit}"
    return ngettext("%(count)s byte", "%(count)s bytes", count, count=format_number(count))


def init_app(app: Flask) -> None:
    babel.init_app(
        app,
        locale_selector=select_locale_safely,
        default_translation_directories=TRANSLATIONS,
    )
    app.context_processor(lambda: {"languages": LANGUAGES, "lang": current_language()})
    app.add_template_global(page_texts)
    app.add_template_filter(translated)
    app.add_template_filter(format_number, "number")
    app.add_template_filter(when, "datetime")
    app.add_template_filter(format_size, "filesize")
    app.cli.add_command(translate_cli)


def select_locale_safely() -> str:
    """:func:`select_locale` in a request; English for work outside one (a worker)."""
    return select_locale() if request else DEFAULT


# ``flask translate``: the seed's commands, pybabel underneath.
MAPPING = os.path.join(TRANSLATIONS, "babel.cfg")
TEMPLATE = os.path.join(TRANSLATIONS, "messages.pot")


def pybabel(*args: str) -> None:
    """Run one pybabel command in this process; raise ClickException when it fails."""
    try:
        CommandLineInterface().run(["pybabel", "-q", *args])
    except SystemExit as exit:
        if exit.code:
            raise click.ClickException(f"pybabel {args[0]} failed") from None


def extract() -> None:
    """Write ``messages.pot`` from every ``_()``, ``_l()`` and template string of the package."""
    package = os.path.dirname(TRANSLATIONS)
    pybabel("extract", "-F", MAPPING, "-k", "_l", "-k", "N_", "--no-location", "--sort-output",
            "--project", "microblog", "-o", TEMPLATE, package)  # fmt: skip


@click.group("translate", help="Manage the translation catalogs.")
def translate_cli() -> None:
    pass


@translate_cli.command("init")
@click.argument("lang")
def init_command(lang: str) -> None:
    """Start a catalog for a new language, e.g. "fr"."""
    extract()
    pybabel("init", "-i", TEMPLATE, "-d", TRANSLATIONS, "-l", lang)
    os.remove(TEMPLATE)
    click.echo(f"Add {lang!r} to LANGUAGES in microblog/i18n.py once it is translated.")


@translate_cli.command("update")
def update_command() -> None:
    """Bring every catalog up to date with the code's messages."""
    extract()
    pybabel("update", "-i", TEMPLATE, "-d", TRANSLATIONS, "--no-wrap", "--ignore-obsolete")
    os.remove(TEMPLATE)


@translate_cli.command("compile")
def compile_command() -> None:
    """Compile every catalog (.po) to what the app reads (.mo)."""
    pybabel("compile", "-d", TRANSLATIONS)


def remember_language(response: Response, code: str | None) -> Response:
    """Keep a visitor's choice of ``code`` in a cookie on ``response``; None forgets it."""
    if code is None:
        response.delete_cookie(COOKIE)
        return response
    secure = current_app.config.get("SESSION_COOKIE_SECURE", False)
    response.set_cookie(COOKIE, code, max_age=COOKIE_MAX_AGE, secure=secure, httponly=True,
                        samesite="Lax")  # fmt: skip
    return response
