"""Forms of the auth blueprint."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import Field, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, Optional, ValidationError

from .nicknames import NICKNAME_MAX, NicknameError, clean_nickname
from .users import PASSWORD_MAX, PASSWORD_MIN

PASSWORD_LENGTH = Length(
    min=PASSWORD_MIN,
    max=PASSWORD_MAX,
    message=_l("A password has %(min)d to %(max)d characters."),
)


def valid_nickname(_form: FlaskForm, field: Field) -> None:
    """WTForms validator applying the nickname rules."""
    try:
        field.data = clean_nickname(field.data)
    except NicknameError as error:
        raise ValidationError(str(error)) from None


class LoginForm(FlaskForm):
    """Log in with a nickname; a password only where the nickname is protected."""

    nickname = StringField(
        _l("Nickname"),
        validators=[valid_nickname],
        render_kw={"autocomplete": "username", "maxlength": NICKNAME_MAX, "autofocus": True},
    )
    password = PasswordField(
        _l("Password (optional)"),
        validators=[Optional(), PASSWORD_LENGTH],
        render_kw={"autocomplete": "current-password"},
    )
    submit = SubmitField(_l("Log in"))


class PasswordForm(FlaskForm):
    """Set or change the password protecting the nickname."""

    current_password = PasswordField(_l("Current password"), render_kw={"autocomplete": "current-password"})
    new_password = PasswordField(
        _l("New password"),
        validators=[DataRequired(_l("Please type a password.")), PASSWORD_LENGTH],
        render_kw={"autocomplete": "new-password"},
    )
    confirm = PasswordField(
        _l("Repeat the new password"),
        validators=[EqualTo("new_password", message=_l("The two passwords differ."))],
        render_kw={"autocomplete": "new-password"},
    )
    submit = SubmitField(_l("Save password"))
