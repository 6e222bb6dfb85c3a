"""Forms of the groups blueprint."""

from flask_wtf import FlaskForm
from wtforms import RadioField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice

from ..estimates import DECKS, DEFAULT_DECK
from ..models import Role
from ..text import CleanText

DECK_CHOICES = [
    SelectChoice(deck.name, deck.title + (f" ({' '.join(deck.cards)})" if deck.cards else ""))
    for deck in DECKS.values()
]


class GroupForm(FlaskForm):
    """Create a group: a name and a deck."""

    name = StringField(
        "Group name",
        validators=[CleanText(1, 80, what="A group name")],
        render_kw={"maxlength": 80, "placeholder": "e.g. Team Rocket"},
    )
    deck = SelectField("Deck", choices=DECK_CHOICES, default=DEFAULT_DECK, validate_choice=True)
    submit = SubmitField("Create group")


class IssueForm(FlaskForm):
    """Add an issue to estimate."""

    key = StringField(
        "Key",
        validators=[CleanText(1, 32, what="An issue key")],
        render_kw={"maxlength": 32, "placeholder": "e.g. PROJ-42"},
    )
    description = TextAreaField(
        "Description (optional)",
        validators=[CleanText(0, 500, multiline=True, what="A description")],
        render_kw={"maxlength": 500, "rows": 2},
    )
    submit = SubmitField("Add issue")


class JoinForm(FlaskForm):
    """Confirm joining a group, as a voting member or as an observer."""

    role = RadioField(
        "Join as",
        choices=[
            SelectChoice(Role.MEMBER, "Member — I estimate"),
            SelectChoice(Role.OBSERVER, "Observer — I only watch"),
        ],
        default=Role.MEMBER,
    )
    submit = SubmitField("Join group")


class RoleForm(FlaskForm):
    """The owner changes whether a member votes."""

    role = SelectField(
        "Role", choices=[SelectChoice(Role.MEMBER, "member"), SelectChoice(Role.OBSERVER, "observer")]
    )
    submit = SubmitField("Change")
