"""Forms for writing posts and editing a profile."""

from wtforms import StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from microblog.auth.forms import taken, username_field
from microblog.auth.models import User
from microblog.forms import Form, Printable, visible
from microblog.posts.models import MAX_POST_LENGTH


class PostForm(Form):
    post = TextAreaField(
        "Say something",
        validators=[
            DataRequired(message="A post cannot be empty."),
            Length(max=MAX_POST_LENGTH, message=f"Keep posts to {MAX_POST_LENGTH} characters."),
            Printable(multiline=True),
        ],
    )
    submit = SubmitField("Post")

    def validate_post(self, field: TextAreaField) -> None:
        if not field.errors and not visible(field.data):
            raise ValidationError("A post needs at least one visible character.")


class EditProfileForm(Form):
    username = username_field()
    about_me = TextAreaField("About me", validators=[Length(max=500), Printable(multiline=True)])
    submit = SubmitField("Save")

    def __init__(self, user_id: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.user_id = user_id

    def validate_username(self, field: StringField) -> None:
        if not field.errors and taken(User.username_key, field.data, other_than=self.user_id):
            raise ValidationError("That username is taken; please choose another.")
