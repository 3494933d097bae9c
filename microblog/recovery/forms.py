"""The two forms of a password reset: the address to send the link to, the new password."""

from wtforms import StringField, SubmitField
from wtforms.validators import DataRequired, Email, EqualTo, Length

from microblog.auth.forms import password_field, strip, strong_password
from microblog.forms import Form, Printable
from microblog.i18n import _l


class ResetRequestForm(Form):
    email = StringField(
        _l("Email"),
        filters=[strip],
        validators=[DataRequired(), Printable(), Length(max=120), Email()],
    )
    submit = SubmitField(_l("Send me a link"))


class ResetPasswordForm(Form):
    password = password_field(_l("New password"), strong_password)
    password2 = password_field(
        _l("Repeat new password"), EqualTo("password", message=_l("The passwords do not match."))
    )
    submit = SubmitField(_l("Set my new password"))


class ConfirmForm(Form):
    submit = SubmitField(_l("Confirm my address"))
