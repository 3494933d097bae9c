"""The form to write a private message."""

from flask_babel import gettext as _
from wtforms import SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from microblog.forms import Form, Printable, visible
from microblog.i18n import _l
from microblog.messages.models import MAX_MESSAGE_LENGTH


class MessageForm(Form):
    message = TextAreaField(
        _l("Message"),
        validators=[
            DataRequired(message=_l("A message cannot be empty.")),
            Length(max=MAX_MESSAGE_LENGTH, message=_l("Keep messages to %(max)d characters.")),
            Printable(multiline=True),
        ],
    )
    submit = SubmitField(_l("Send"))

    def validate_message(self, field: TextAreaField) -> None:
        if not field.errors and not visible(field.data):
            raise ValidationError(_("A message needs at least one visible character."))
