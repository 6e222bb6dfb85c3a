"""Forms of the groups blueprint."""

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    Field,
    IntegerField,
    RadioField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # WTForms 3.3 is newer than its stubs
from wtforms.validators import AnyOf, InputRequired, NumberRange, StopValidation, ValidationError

from ..estimates import CUSTOM, DECKS, DEFAULT_DECK, DeckError, parse_cards
from ..models import MIN_VOTES_MAX, Role
from ..text import CleanText
from .rules import MOVES

DECK_CHOICES = [
    SelectChoice(deck.name, deck.title + (f" ({' '.join(deck.cards)})" if deck.cards else ""))
    for deck in DECKS.values()
] + [SelectChoice(CUSTOM, "Own cards (type them below)")]


class GroupForm(FlaskForm):
    """Create a group: a name and a deck."""

    name = StringField(
        "Group name",
        validators=[CleanText(1, 80, what="A group name")],
        render_kw={"maxlength": 80, "placeholder": "e.g. Team Rocket"},
    )
    deck = SelectField("Deck", choices=DECK_CHOICES, default=DEFAULT_DECK, validate_choice=True)
    cards = StringField(
        "Own cards (for “Own cards” only)",
        validators=[CleanText(0, 200, what="The cards")],
        render_kw={"maxlength": 200, "placeholder": "e.g. 1 2 3 5 8  or  tiny, small, big"},
        description="2 to 20 cards separated by commas or spaces, each up to 8 characters. "
        "All numbers: results are numbers; otherwise they go by position, in the order typed.",
    )
    submit = SubmitField("Create group")

    def validate_cards(self, field: Field) -> None:
        """The labels of a custom deck, required only for it."""
        if self.deck.data != CUSTOM:
            field.data = ""
            return
        try:
            self.parsed_cards = parse_cards(field.data)
        except DeckError as error:
            raise ValidationError(str(error)) from None


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

    #: The member list's button sends the role to switch to (see templates/groups/group.html).
    role = SelectField(
        "Role", choices=[SelectChoice(Role.MEMBER, "member"), SelectChoice(Role.OBSERVER, "observer")]
    )


def keep_if_absent(_form: FlaskForm, field: Field) -> None:
    """A setting the request does not mention stays as it is (build the form with obj=group)."""
    if not field.raw_data:
        raise StopValidation()


class SettingBox(BooleanField):
    """A checkbox setting. The page sends a hidden "0" before each box, so an unticked box is still
    sent; a request that does not mention the setting at all leaves it as it is."""

    false_values = (False, "false", "", "0", "off", "no")

    def process_formdata(self, valuelist: list[Any]) -> None:
        """Ticked when any value sent is not a false one; unchanged when nothing is sent."""
        if valuelist:
            self.data = any(value not in self.false_values for value in valuelist)


class SettingsForm(FlaskForm):
    """The facilitator's settings for how the group votes; a setting left out stays as it is."""

    auto_reveal = SettingBox(
        "Reveal automatically",
        description="The vote that completes a round reveals it, when enough votes have a number.",
    )
    facilitator_votes = SettingBox(
        "The facilitator votes too",
        default=True,
        description="Off: you lead the session without voting, and nobody waits for your card.",
    )
    min_votes = IntegerField(
        "Votes needed to reveal",
        validators=[
            keep_if_absent,
            InputRequired("Please give a number of votes."),
            NumberRange(1, MIN_VOTES_MAX, f"Choose a whole number from 1 to {MIN_VOTES_MAX}."),
        ],
        render_kw={"min": 1, "max": MIN_VOTES_MAX, "inputmode": "numeric"},
        description="A round is revealed only when it holds at least this many votes with a number. "
        "Below 3, a result can show who voted what, and every member is told so.",
    )
    submit = SubmitField("Save settings")


class MoveForm(FlaskForm):
    """Move an issue in the backlog."""

    to = StringField(
        "Move", validators=[AnyOf(MOVES, message="Move an issue up, down, to the top or to the bottom.")]
    )


class OwnerForm(FlaskForm):
    """Hand the facilitator role to a member."""

    user_id = IntegerField(
        "New facilitator",
        validators=[
            InputRequired("Choose the member to hand over to."),
            NumberRange(1, 2**31 - 1, "That person is not a member of this group."),
        ],
    )
