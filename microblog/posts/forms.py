"""Forms for writing posts, editing a profile and the follow buttons."""

from flask_wtf import FlaskForm
from wtforms import StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from microblog.auth.forms import USERNAME_RULE
from microblog.auth.models import find_user
from microblog.posts.models import MAX_POST_LENGTH


class PostForm(FlaskForm):
    post = TextAreaField(
        "Say something",
        validators=[
            DataRequired(message="A post cannot be empty."),
            Length(max=MAX_POST_LENGTH, message=f"Keep posts to {MAX_POST_LENGTH} characters."),
        ],
    )
    submit = SubmitField("Post")

    def validate_post(self, field: TextAreaField) -> None:
        if not field.data.strip():
            raise ValidationError("A post cannot be empty.")


class EditProfileForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(3, 64), USERNAME_RULE])
    about_me = TextAreaField("About me", validators=[Length(max=500)])
    submit = SubmitField("Save")

    def __init__(self, original_username: str, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.original_username = original_username

    def validate_username(self, field: StringField) -> None:
        if field.data != self.original_username and find_user(field.data) is not None:
            raise ValidationError("That username is taken; please choose another.")
