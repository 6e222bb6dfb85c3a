"""Forms of the voting blueprint; which cards are valid depends on the group's deck."""

from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import Field, IntegerField, StringField, SubmitField
from wtforms.validators import InputRequired, ValidationError

from ..estimates import RANGE_MAX, RANGE_MIN, Deck


class DeckForm(FlaskForm):
    """A form whose field is checked against a deck given when the form is made.

    The app's CSRFProtect has checked every POST before its view runs, and the pages put the token
    in with `csrf_token()`: the form makes no token of its own, which cost a vote a twentieth of
    its time (a signature it never sent).
    """

    class Meta:
        csrf = False

    def __init__(self, deck: Deck, *args: Any, **kwargs: Any) -> None:
        self.deck = deck
        super().__init__(*args, **kwargs)

    def card_error(self, unsure: bool) -> str:
        """What to tell someone who typed something that is not a card of this deck."""
        if self.deck.is_range and unsure:
            message = _("Choose a whole number from %(min)d to %(max)d, or ? if you are not sure.")
        elif self.deck.is_range:
            message = _("Choose a whole number from %(min)d to %(max)d.")
        elif unsure:
            message = _("Choose one of the cards %(cards)s, or ? if you are not sure.")
        else:
            message = _("Choose one of the cards %(cards)s.")
        return str(message % {"min": RANGE_MIN, "max": RANGE_MAX, "cards": " ".join(self.deck.cards)})

    def keep_card(self, field: Field, unsure: bool) -> None:
        """Replace the field's text by the canonical card, or refuse what is not one."""
        card = (self.deck.parse if unsure else self.deck.parse_estimate)(field.data)
        if card is None:
            raise ValidationError(self.card_error(unsure))
        field.data = card


class EstimateForm(DeckForm):
    """A secret estimate: one card of the deck, or `?`."""

    #: The deck's buttons submit it (see templates/voting/_ballot.html).
    value = StringField(_l("Your estimate"))

    def validate_value(self, field: Field) -> None:
        """A card of the deck, or `?`."""
        self.keep_card(field, unsure=True)


class AcceptForm(DeckForm):
    """The team's final estimate, pre-filled with the suggestion."""

    estimate = StringField(_l("Final estimate"))
    submit = SubmitField(_l("Record final estimate"))

    def validate_estimate(self, field: Field) -> None:
        """A card of the deck, never `?`."""
        self.keep_card(field, unsure=False)


TIMER_MIN, TIMER_MAX = 10, 3600


class TimerForm(FlaskForm):
    """The facilitator's countdown for the open round: 10 to 3600 seconds, or 0 to stop it."""

    seconds = IntegerField(
        _l("Seconds"),
        validators=[InputRequired(_l("Please give the timer's length in seconds."))],
    )

    def validate_seconds(self, field: Field) -> None:
        """0 stops the timer; otherwise 10 seconds to an hour."""
        if field.data != 0 and not TIMER_MIN <= (field.data or 0) <= TIMER_MAX:
            raise ValidationError(
                _("A timer runs %(min)d to %(max)d seconds (0 stops it).", min=TIMER_MIN, max=TIMER_MAX)
            )
