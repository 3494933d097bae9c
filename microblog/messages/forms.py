"""The form to write a private message."""

from wtforms import SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from microblog.forms import Form, Printable, visible
from microblog.messages.models import MAX_MESSAGE_LENGTH


class MessageForm(Form):
    message = TextAreaField(
        "Message",
        validators=[
            DataRequired(message="A message cannot be empty."),
            Length(
                max=MAX_MESSAGE_LENGTH,
                message=f"Keep messages to {MAX_MESSAGE_LENGTH:,} characters.",
            ),
            Printable(multiline=True),
        ],
    )
    submit = SubmitField("Send")

    def validate_message(self, field: TextAreaField) -> None:
        if not field.errors and not visible(field.data):
            raise ValidationError("A message needs at least one visible character.")
