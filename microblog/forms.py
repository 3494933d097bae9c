"""What every form shares: it reads form fields only, and its text is printable."""

import unicodedata
from typing import Any

from flask import abort, request
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from wtforms import Field
from wtforms.validators import ValidationError

# Letters that draw nothing: a post made of them alone would look empty.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def submitted_form_data() -> Any:
    """Return the request's form fields if it was submitted, else None.

    Flask-WTF would also fill a form from a JSON body or from file parts, handing views a list,
    a number or an upload where they expect a string; this app's forms take neither.
    """
    if request.method not in {"POST", "PUT", "PATCH", "DELETE"}:
        return None
    if request.is_json:
        abort(415, _("This form takes form fields (application/x-www-form-urlencoded), not JSON."))
    if request.files:
        abort(400, _("This form does not take file uploads."))
    return request.form


class Form(FlaskForm):
    """A Flask-WTF form whose fields can only ever hold strings from the request's form."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formdata", submitted_form_data())
        super().__init__(**kwargs)


class Printable:
    """Refuse control characters (NUL included); ``multiline`` lets line breaks and tabs in."""

    def __init__(self, multiline: bool = False) -> None:
        self.allowed = frozenset("\n\r\t") if multiline else frozenset()

    def __call__(self, _form: FlaskForm, field: Field) -> None:
        for character in field.data or "":
            if character not in self.allowed and unicodedata.category(character) in {"Cc", "Cs"}:
                raise ValidationError(
                    _("Remove the control characters (such as NUL) from this text.")
                )


def visible(text: str) -> bool:
    """Return whether ``text`` has at least one character that shows on screen."""
    return any(
        unicodedata.category(character)[0] in "LNPS" and character not in _BLANK_LETTERS
        for character in text
    )
