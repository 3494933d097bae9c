"""The two forms of a password reset: the address to send the link to, the new password."""

from wtforms import StringField, SubmitField
from wtforms.validators import DataRequired, Email, EqualTo, Length

from microblog.auth.forms import password_field, strip, strong_password
from microblog.forms import Form, Printable


class ResetRequestForm(Form):
    email = StringField(
        "Email", filters=[strip], validators=[DataRequired(), Printable(), Length(max=120), Email()]
    )
    submit = SubmitField("Send me a link")


class ResetPasswordForm(Form):
    password = password_field("New password", strong_password)
    password2 = password_field(
        "Repeat new password", EqualTo("password", message="The passwords do not match.")
    )
    submit = SubmitField("Set my new password")
