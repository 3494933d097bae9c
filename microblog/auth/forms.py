"""Registration, login and account forms."""

import unicodedata

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute
from wtforms import BooleanField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Email, EqualTo, Length, Regexp, ValidationError

from microblog.auth.models import User, canonical
from microblog.extensions import db
from microblog.forms import Form, Printable

# Letters and digits at both ends, so "alice." or "alice_" cannot pass for "alice"; \Z, not $,
# which would let a trailing newline through.
USERNAME_RULE = Regexp(
    r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?\Z",
    message="Use letters, digits, dots, dashes and underscores, starting and ending with a "
    "letter or digit.",
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
        raise ValidationError("Use at least 8 characters.")
    if password.isalpha() or password.isdigit():
        raise ValidationError("Mix letters with digits or symbols.")


def password_field(label: str, *validators) -> PasswordField:
    too_long = f"Use at most {MAX_PASSWORD_LENGTH} characters."
    return PasswordField(
        label,
        validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH, message=too_long), Printable(),
                    *validators],
    )  # fmt: skip


def username_field() -> StringField:
    return StringField(
        "Username",
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
        "Username", filters=[strip], validators=[DataRequired(), Length(max=64), Printable()]
    )
    password = password_field("Password")
    remember_me = BooleanField("Remember me")
    submit = SubmitField("Sign in")


class RegistrationForm(Form):
    username = username_field()
    email = StringField(
        "Email", filters=[strip], validators=[DataRequired(), Printable(), Length(max=120), Email()]
    )
    password = password_field("Password", strong_password)
    password2 = password_field(
        "Repeat password", EqualTo("password", message="The passwords do not match.")
    )
    submit = SubmitField("Register")

    def validate_username(self, field: StringField) -> None:
        if not field.errors and taken(User.username_key, field.data):
            raise ValidationError("That username is taken; please choose another.")

    def validate_email(self, field: StringField) -> None:
        if not field.errors and taken(User.email_key, field.data):
            raise ValidationError("An account with that email already exists.")


class PasswordChangeForm(Form):
    current_password = password_field("Current password")
    password = password_field("New password", strong_password)
    password2 = password_field(
        "Repeat new password", EqualTo("password", message="The passwords do not match.")
    )
    submit = SubmitField("Change password")


class SignOutEverywhereForm(Form):
    submit = SubmitField("Sign out everywhere")
