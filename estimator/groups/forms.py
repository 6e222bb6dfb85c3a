"""Forms of the groups blueprint."""

from typing import Any

from flask import request
from flask_babel import LazyString
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
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
from wtforms.validators import AnyOf, InputRequired, NumberRange, Optional, StopValidation, ValidationError

from ..backlog_files import DETAILS_MAX
from ..estimates import CUSTOM, DECKS, DEFAULT_DECK, PRESELECTED_DECK, Deck, DeckError, parse_cards
from ..models import MIN_VOTES_MAX, Role
from ..text import CleanText
from .rules import KEY_MAX, MAX_ISSUES, MOVES


def deck_choice(deck: Deck) -> str:
    """A deck as the deck field offers it: its title in the page's language, and its cards."""
    return str(_(deck.title)) + (f" ({' '.join(deck.cards)})" if deck.cards else "")


DECK_CHOICES = [SelectChoice(deck.name, LazyString(deck_choice, deck)) for deck in DECKS.values()] + [
    SelectChoice(CUSTOM, _l("Own cards (type them below)"))
]


def cards_field() -> StringField:
    """A custom deck's cards, as the facilitator types them."""
    return StringField(
        _l("Own cards (for “Own cards” only)"),
        validators=[CleanText(0, 200, what=_l("The cards"))],
        render_kw={"maxlength": 200, "placeholder": _l("e.g. 1 2 3 5 8  or  tiny, small, big")},
        description=_l(
            "2 to 20 cards separated by commas or spaces, each up to 8 characters. "
            "All numbers: results are numbers; otherwise they go by position, in the order typed."
        ),
    )


class DeckChoice:
    """The cards of a custom deck are checked only for it (a form with `deck` and `cards` fields)."""

    deck: SelectField
    parsed_cards: tuple[str, ...] = ()

    def validate_cards(self, field: Field) -> None:
        """The labels of a custom deck, required only for it."""
        if self.deck.data != CUSTOM:
            field.data = ""
            return
        try:
            self.parsed_cards = parse_cards(field.data)
        except DeckError as error:
            raise ValidationError(_(error.template, **error.params)) from None


class GroupForm(DeckChoice, FlaskForm):
    """Create a group: a name and a deck."""

    name = StringField(
        _l("Group name"),
        validators=[CleanText(1, 80, what=_l("A group name"))],
        render_kw={"maxlength": 80, "placeholder": _l("e.g. Team Rocket")},
    )
    deck = SelectField(_l("Deck"), choices=DECK_CHOICES, default=PRESELECTED_DECK, validate_choice=True)
    cards = cards_field()
    submit = SubmitField(_l("Create group"))

    def process(self, formdata: Any = None, obj: Any = None, data: Any = None, **kwargs: Any) -> None:
        """The form offers Fibonacci first; a submitted form that names no deck means `range`."""
        super().process(formdata, obj, data, **kwargs)
        if self.is_submitted() and "deck" not in request.form:
            self.deck.data = DEFAULT_DECK


class IssueForm(FlaskForm):
    """Add an issue to estimate."""

    key = StringField(
        _l("Key"),
        validators=[CleanText(1, KEY_MAX, what=_l("An issue key"))],
        render_kw={"maxlength": KEY_MAX, "placeholder": _l("e.g. PROJ-42")},
    )
    description = TextAreaField(
        _l("Description (optional)"),
        validators=[CleanText(0, 500, multiline=True, what=_l("A description"))],
        render_kw={"maxlength": 500, "rows": 2},
    )
    submit = SubmitField(_l("Add issue"))


def keep_if_absent(_form: FlaskForm, field: Field) -> None:
    """A setting the request does not mention stays as it is (build the form with obj=group)."""
    if not field.raw_data:
        raise StopValidation()


class EditIssueForm(IssueForm):
    """Change an issue: its key, title and the long description a tracker gave it. A request that
    does not send `details` (an older page, a script) leaves them as they are."""

    details = TextAreaField(
        _l("Description from the tracker (optional)"),
        validators=[keep_if_absent, CleanText(0, DETAILS_MAX, multiline=True, what=_l("A description"))],
        render_kw={"maxlength": DETAILS_MAX, "rows": 6},
    )


class JoinForm(FlaskForm):
    """Confirm joining a group, as a voting member or as an observer."""

    role = RadioField(
        _l("Join as"),
        choices=[
            SelectChoice(Role.MEMBER, _l("Member — I estimate")),
            SelectChoice(Role.OBSERVER, _l("Observer — I only watch")),
        ],
        default=Role.MEMBER,
    )
    submit = SubmitField(_l("Join group"))


class RoleForm(FlaskForm):
    """The owner changes whether a member votes."""

    #: The member list's button sends the role to switch to (see templates/groups/group.html).
    role = SelectField(
        _l("Role"),
        choices=[SelectChoice(Role.MEMBER, _l("member")), SelectChoice(Role.OBSERVER, _l("observer"))],
    )


class SettingBox(BooleanField):
    """A checkbox setting. The page sends a hidden "0" before each box, so an unticked box is still
    sent; a request that does not mention the setting at all leaves it as it is."""

    false_values = (False, "false", "", "0", "off", "no")

    def process_formdata(self, valuelist: list[Any]) -> None:
        """Ticked when any value sent is not a false one; unchanged when nothing is sent."""
        if valuelist:
            self.data = any(value not in self.false_values for value in valuelist)


class SettingsForm(DeckChoice, FlaskForm):
    """The facilitator's settings for how the group votes; a setting left out stays as it is."""

    auto_reveal = SettingBox(
        _l("Reveal automatically"),
        description=_l("The vote that completes a round reveals it, when enough people have voted."),
    )
    facilitator_votes = SettingBox(
        _l("The facilitator votes too"),
        default=True,
        description=_l("Off: you lead the session without voting, and nobody waits for your card."),
    )
    present_only = SettingBox(
        _l("Wait only for the voters present"),
        description=_l(
            "The cue that all have voted, and automatic reveals, wait only for the voters who "
            "have the group open now, not for someone who is away."
        ),
    )
    min_votes = IntegerField(
        _l("Votes needed to reveal"),
        validators=[
            keep_if_absent,
            InputRequired(_l("Please give a number of votes.")),
            NumberRange(1, MIN_VOTES_MAX, _l("Choose a whole number from %(min)s to %(max)s.")),
        ],
        render_kw={"min": 1, "max": MIN_VOTES_MAX, "inputmode": "numeric"},
        description=_l(
            "A round is revealed only when at least this many people other than the facilitator "
            "have voted (“?” counts). Below 3, a result can show who voted what, and every member "
            "is told so."
        ),
    )
    deck = SelectField(
        _l("Deck"),
        choices=DECK_CHOICES,
        validators=[keep_if_absent],
        validate_choice=True,
        description=_l("A new deck applies from the next round: votes already cast keep theirs."),
    )
    cards = cards_field()
    submit = SubmitField(_l("Save settings"))


class MoveForm(FlaskForm):
    """Move an issue in the backlog."""

    to = StringField(
        _l("Move"),
        validators=[AnyOf(MOVES, message=_l("Move an issue up, down, to the top or to the bottom."))],
    )
    #: Where `to=place` puts the issue: 1 is the top.
    place = IntegerField(
        _l("Place"),
        validators=[Optional(), NumberRange(1, MAX_ISSUES, _l("Choose a place from %(min)s to %(max)s."))],
    )

    def validate_to(self, field: Field) -> None:
        """A move to a place names the place."""
        if field.data == "place" and self.place.data is None:
            raise ValidationError(_("Say which place the issue goes to: 1 is the top."))


class OwnerForm(FlaskForm):
    """Hand the facilitator role to a member."""

    user_id = IntegerField(
        _l("New facilitator"),
        validators=[
            InputRequired(_l("Choose the member to hand over to.")),
            NumberRange(1, 2**31 - 1, _l("That person is not a member of this group.")),
        ],
    )
