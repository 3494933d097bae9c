"""Registration, login and account forms."""

import unicodedata

from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute
from wtforms import BooleanField, PasswordField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    AnyOf,
    DataRequired,
    Email,
    EqualTo,
    Length,
    Regexp,
    ValidationError,
)

from microblog.auth.models import User, canonical
from microblog.extensions import db
from microblog.forms import Form, Printable
from microblog.i18n import LANGUAGES, LazyMessage, _l

# Letters and digits at both ends, so "alice." or "alice_" cannot pass for "alice"; \Z, not $,
# which would let a trailing newline through.
USERNAME_RULE = Regexp(
    r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?\Z",
    message=_l(
        "Use letters, digits, dots, dashes and underscores, starting and ending with a "
        "letter or digit."
    ),
)
# Long enough for any passphrase; short enough that hashing one costs nothing to worry about.
MAX_PASSWORD_LENGTH = 128


def nfkc(text: str | None) -> str | None:
    """Fold compatibility forms, so that full-width "ＡＬＩＣＥ" is read as "ALICE"."""
    return unicodedata.normalize("NFKC", text) if text else text


def strip(text: str | None) -> str | None:
    return text.strip() if text else text


def strong_password(_form: Form, field: PasswordField) -> None:
    """Refuse short passwords and ones made of a single kind of character."""
    password = field.data or ""
    if len(password) < 8:
        raise ValidationError(_("Use at least 8 characters."))
    if password.isalpha() or password.isdigit():
        raise ValidationError(_("Mix letters with digits or symbols."))


def password_field(label: str | LazyMessage, *validators) -> PasswordField:
    too_long = _l("Use at most %(max)d characters.")
    return PasswordField(
        label,
        validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH, message=too_long), Printable(),
                    *validators],
    )  # fmt: skip


def username_field() -> StringField:
    return StringField(
        _l("Username"),
        filters=[nfkc],
        validators=[DataRequired(), Length(3, 64), Printable(), USERNAME_RULE],
    )


def taken(key_column: InstrumentedAttribute, text: str, other_than: int | None = None) -> bool:
    """Return whether an account (other than ``other_than``) uses this username or email, in
    any case or Unicode form; ``key_column`` is ``User.username_key`` or ``User.email_key``."""
    query = select(User.id).where(key_column == canonical(text), User.id != other_than)
    return db.session.scalar(query) is not None


class LoginForm(Form):
    username = StringField(
        _l("Username"), filters=[strip], validators=[DataRequired(), Length(max=64), Printable()]
    )
    password = password_field(_l("Password"))
    remember_me = BooleanField(_l("Remember me"))
    submit = SubmitField(_l("Sign in"))


class RegistrationForm(Form):
    username = username_field()
    email = StringField(
        _l("Email"),
        filters=[strip],
        validators=[DataRequired(), Printable(), Length(max=120), Email()],
    )
    password = password_field(_l("Password"), strong_password)
    password2 = password_field(
        _l("Repeat password"), EqualTo("password", message=_l("The passwords do not match."))
    )
    submit = SubmitField(_l("Register"))

    def validate_username(self, field: StringField) -> None:
        if not field.errors and taken(User.username_key, field.data):
            raise ValidationError(_("That username is taken; please choose another."))

    def validate_email(self, field: StringField) -> None:
        if not field.errors and taken(User.email_key, field.data):
            raise ValidationError(_("An account with that email already exists."))


class PasswordChangeForm(Form):
    current_password = password_field(_l("Current password"))
    password = password_field(_l("New password"), strong_password)
    password2 = password_field(
        _l("Repeat new password"), EqualTo("password", message=_l("The passwords do not match."))
    )
    submit = SubmitField(_l("Change password"))


class EmailChangeForm(Form):
    email = StringField(
        _l("New email"),
        filters=[strip],
        validators=[DataRequired(), Printable(), Length(max=120), Email()],
    )
    current_password = password_field(_l("Current password"))
    submit = SubmitField(_l("Change email"))

    def validate_email(self, field: StringField) -> None:
        if not field.errors and taken(User.email_key, field.data, other_than=current_user.id):
            raise ValidationError(_("An account with that email already exists."))


class ResendConfirmationForm(Form):
    submit = SubmitField(_l("Send the link again"))


class SignOutEverywhereForm(Form):
    submit = SubmitField(_l("Sign out everywhere"))


class LanguageForm(Form):
    language = SelectField(
        _l("Language"),
        choices=[SelectChoice("", _l("The browser's language"))]
        + [SelectChoice(code, name, render_kw={"lang": code}) for code, name in LANGUAGES.items()],
        validators=[AnyOf(["", *LANGUAGES], message=_l("Choose a language from the list."))],
        validate_choice=False,  # AnyOf says it in the site's words
    )
    submit = SubmitField(_l("Save language"))
