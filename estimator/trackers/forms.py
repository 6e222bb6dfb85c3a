"""Forms of the tracker pages: the connection, and an import by query."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, Field, PasswordField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # WTForms 3.3 is newer than its stubs
from wtforms.validators import ValidationError

from ..text import CleanText
from . import available

URL_MAX, QUERY_MAX, SECRET_MAX = 500, 2000, 2000


class ConnectionForm(FlaskForm):
    """Connect the group to a tracker, or change its connection.

    The credentials are never shown again: the token field is always empty on the page, and left
    empty it keeps the saved token, unless the kind or the address changes (a token is never sent
    to an address it was not typed for).
    """

    kind = SelectField(_l("Tracker"), validate_choice=True)
    base_url = StringField(
        _l("Address"),
        validators=[CleanText(1, URL_MAX, what=_l("The address"))],
        # No example in the field: one tracker's address would mislead whoever connects another,
        # and each tracker's hint below the form gives its own.
        render_kw={"maxlength": URL_MAX, "inputmode": "url"},
        description=_l("The tracker's address as its own pages show it, with https://."),
    )
    email = StringField(
        _l("E-mail address (Jira Cloud only)"),
        validators=[CleanText(0, 254, what=_l("The e-mail address"))],
        render_kw={"maxlength": 254, "autocomplete": "off"},
    )
    token = PasswordField(
        _l("API key or token"),
        validators=[CleanText(0, SECRET_MAX, what=_l("The key"))],
        render_kw={"maxlength": SECRET_MAX, "autocomplete": "off"},
    )
    estimate_field = SelectField(
        _l("Field that receives the final estimate"), validate_choice=False, choices=[SelectChoice("", "—")]
    )
    send_automatically = BooleanField(_l("Send the final estimate to the tracker as soon as it is recorded"))
    test = SubmitField(_l("Test the connection"))
    submit = SubmitField(_l("Save the connection"))

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.kind.choices = [SelectChoice(kind.name, kind.title) for kind in available()]

    def validate_base_url(self, field: Field) -> None:
        """An http(s) address with a host, no user name or password in it, no query or fragment."""
        try:
            parts = urlsplit(field.data or "")
            parts.port  # noqa: B018  (reading it checks it)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError(_("Give the tracker's address starting with https:// or http://."))
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValidationError(
                _("Give the tracker's address alone: no user name, password, ? or # in it.")
            )
        field.data = f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


class ImportForm(FlaskForm):
    """Import the issues a query selects."""

    query = StringField(
        _l("Query"),
        validators=[CleanText(1, QUERY_MAX, what=_l("The query"))],
        render_kw={"maxlength": QUERY_MAX},
    )
    submit = SubmitField(_l("Import the issues"))
