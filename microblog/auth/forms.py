"""Registration and login forms."""

from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import BooleanField, PasswordField, StringField, SubmitField
from wtforms.validators import (
    DataRequired,
    Email,
    EqualTo,
    Length,
    Regexp,
    ValidationError,
)

from microblog.auth.models import User
from microblog.extensions import db

USERNAME_RULE = Regexp(
    r"^[A-Za-z0-9_.-]+$", message="Use only letters, digits, dots, dashes and underscores."
)


def strong_password(_form: FlaskForm, field: PasswordField) -> None:
    """Refuse short passwords and ones made of a single kind of character."""
    password = field.data or ""
    if len(password) < 8:
        raise ValidationError("Use at least 8 characters.")
    if password.isalpha() or password.isdigit():
        raise ValidationError("Mix letters with digits or symbols.")


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])
    remember_me = BooleanField("Remember me")
    submit = SubmitField("Sign in")


class RegistrationForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(3, 64), USERNAME_RULE])
    email = StringField("Email", validators=[DataRequired(), Email(), Length(max=120)])
    password = PasswordField("Password", validators=[DataRequired(), strong_password])
    password2 = PasswordField(
        "Repeat password",
        validators=[DataRequired(), EqualTo("password", message="The passwords do not match.")],
    )
    submit = SubmitField("Register")

    def validate_username(self, field: StringField) -> None:
        if db.session.scalar(select(User.id).where(User.username == field.data)):
            raise ValidationError("That username is taken; please choose another.")

    def validate_email(self, field: StringField) -> None:
        email = field.data.lower()
        if db.session.scalar(select(User.id).where(func.lower(User.email) == email)):
            raise ValidationError("An account with that email already exists.")
