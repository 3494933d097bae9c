"""Forms for writing posts and editing a profile."""

from flask_babel import gettext as _
from wtforms import StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from microblog.auth.forms import taken, username_field
from microblog.auth.models import User
from microblog.forms import Form, Printable, visible
from microblog.i18n import _l
from microblog.posts.models import MAX_POST_LENGTH


class PostForm(Form):
    post = TextAreaField(
        _l("Say something"),
        validators=[
            DataRequired(message=_l("A post cannot be empty.")),
            Length(max=MAX_POST_LENGTH, message=_l("Keep posts to %(max)d characters.")),
            Printable(multiline=True),
        ],
    )
    submit = SubmitField(_l("Post"))

    def validate_post(self, field: TextAreaField) -> None:
        if not field.errors and not visible(field.data):
            raise ValidationError(_("A post needs at least one visible character."))


class EditProfileForm(Form):
    username = username_field()
    about_me = TextAreaField(
        _l("About me"), validators=[Length(max=500), Printable(multiline=True)]
    )
    submit = SubmitField(_l("Save"))

    def __init__(self, user_id: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.user_id = user_id

    def validate_username(self, field: StringField) -> None:
        if not field.errors and taken(User.username_key, field.data, other_than=self.user_id):
            raise ValidationError(_("That username is taken; please choose another."))
