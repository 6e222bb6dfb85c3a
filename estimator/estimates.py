"""The estimation rules: decks, parsing a card, and the anonymous aggregate of a round.

Pure Python: no Flask, no database. Numbers are exact fractions so that halves and ties are
decided the same way on every machine.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any

from .changes import N_

UNSURE = "?"
FIBONACCI = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 100)
RANGE_MIN, RANGE_MAX = 1, 100
HALF = "½"

_WHOLE_NUMBER = re.compile(r"[0-9]{1,3}")
_ALIASES = {"0.5": HALF, ".5": HALF, "1/2": HALF}


@dataclass(frozen=True)
class Deck:
    """A set of cards a group estimates with; `range` has no fixed cards."""

    name: str
    title: str
    cards: tuple[str, ...] = ()
    values: Mapping[str, Fraction] = field(default_factory=dict)
    #: Cards are sizes: results are given as a size, not as a number of points.
    sized: bool = False

    @property
    def is_range(self) -> bool:
        """True for the deck that takes any whole number 1–100."""
        return not self.cards

    def parse(self, raw: str | None) -> str | None:
        """Return the canonical card for user input, `?` included, or None when it is not a card."""
        text = (raw or "").strip()
        if text == UNSURE:
            return UNSURE
        return self.parse_estimate(text)

    def parse_estimate(self, raw: str | None) -> str | None:
        """Return the canonical numeric card (never `?`) for user input, or None."""
        text = (raw or "").strip()
        if self.is_range:
            if _WHOLE_NUMBER.fullmatch(text) and RANGE_MIN <= int(text) <= RANGE_MAX:
                return str(int(text))
            return None
        if HALF in self.cards:
            text = _ALIASES.get(text, text)
        for card in self.cards:
            if text.casefold() == card.casefold():
                return card
        return None

    def fitting(self, raw: str | None) -> str | None:
        """The card an estimate written elsewhere stands for (a tracker's "5.0" is the card "5",
        "0.5" is ½), or None when this deck has no such card. Sizes match by label only."""
        card = self.parse_estimate(raw)
        if card is not None or self.sized:
            return card
        try:
            number = Fraction((raw or "").strip())
        except (ValueError, ZeroDivisionError):
            return None
        if self.is_range:
            whole = number.numerator if number.denominator == 1 else None
            return str(whole) if whole is not None and RANGE_MIN <= whole <= RANGE_MAX else None
        return next((card for card in self.cards if self.values[card] == number), None)

    def value(self, card: str) -> Fraction:
        """The number a card stands for (a size's position for the t-shirt deck)."""
        if self.is_range:
            return Fraction(int(card))
        return self.values[card]

    def sort_key(self, card: str) -> tuple[int, Fraction]:
        """Order cards as the deck shows them, `?` last."""
        if card == UNSURE:
            return (1, Fraction(0))
        return (0, self.value(card))

    def sizes_around(self, average: float) -> str:
        """For a sized deck: the size an average position stands for, or the two it lies between."""
        low, high = math.floor(average), math.ceil(average)
        return self.cards[low - 1] if low == high else f"{self.cards[low - 1]}–{self.cards[high - 1]}"

    def card_near(self, target: Fraction) -> str:
        """The deck's card nearest to a number, ties going to the larger card."""
        return max(self.cards, key=lambda card: (-abs(self.values[card] - target), self.values[card]))


def _numeric_deck(name: str, title: str, cards: tuple[str, ...]) -> Deck:
    values = {card: (Fraction(1, 2) if card == HALF else Fraction(int(card))) for card in cards}
    return Deck(name, title, cards, values)


TSHIRT_SIZES = ("XS", "S", "M", "L", "XL", "XXL")

DECKS: dict[str, Deck] = {
    deck.name: deck
    for deck in (
        Deck("range", N_("Any number 1–100")),
        _numeric_deck("fibonacci", N_("Fibonacci"), ("1", "2", "3", "5", "8", "13", "21", "34", "55", "89")),
        _numeric_deck(
            "modified",
            N_("Modified Fibonacci"),
            ("0", HALF, "1", "2", "3", "5", "8", "13", "20", "40", "100"),
        ),
        Deck(
            "tshirt",
            N_("T-shirt sizes"),
            TSHIRT_SIZES,
            {size: Fraction(position) for position, size in enumerate(TSHIRT_SIZES, start=1)},
            sized=True,
        ),
        _numeric_deck("powers", N_("Powers of two"), ("1", "2", "4", "8", "16", "32", "64")),
    )
}
#: The deck of a group created without one (an API client that names none), and the deck the
#: create form offers first: most teams estimate in Fibonacci numbers.
DEFAULT_DECK = "range"
PRESELECTED_DECK = "fibonacci"
CUSTOM = "custom"
DECK_NAMES = (*DECKS, CUSTOM)
CUSTOM_MIN, CUSTOM_MAX, CARD_MAX = 2, 20, 8
_NUMBER = re.compile(r"[0-9]{1,5}(\.[0-9]{1,2})?")


class DeckError(ValueError):
    """A facilitator's own cards that break a rule; the message says which.

    The message is kept as its English `template` with its `params` too, so that a page can
    show it in its own language.
    """

    def __init__(self, template: str, **params: object) -> None:
        super().__init__(template % params)
        self.template, self.params = template, params


def parse_cards(text: str | None) -> tuple[str, ...]:
    """The labels of a custom deck, typed separated by commas or spaces, or DeckError saying why not."""
    labels = tuple(label for label in re.split(r"[\s,]+", text or "") if label)
    if not CUSTOM_MIN <= len(labels) <= CUSTOM_MAX:
        raise DeckError(
            N_("A deck has %(min)d to %(max)d cards, separated by commas or spaces."),
            min=CUSTOM_MIN,
            max=CUSTOM_MAX,
        )
    for label in labels:
        if len(label) > CARD_MAX:
            raise DeckError(
                N_("A card has at most %(max)d characters: “%(card)s” is longer."), max=CARD_MAX, card=label
            )
        if label == UNSURE:
            raise DeckError(N_("Every deck has “?” already: leave it out."))
        if unicodedata.category(label[0]).startswith("M"):
            raise DeckError(
                N_("A card cannot start with an accent or other mark on its own: “%(card)s”."), card=label
            )
    folded = [label.casefold() for label in labels]
    if len(set(folded)) != len(folded):
        raise DeckError(N_("Each card may appear only once."))
    numeric = all(_NUMBER.fullmatch(label) for label in labels)
    if numeric and len({Fraction(label) for label in labels}) != len(labels):
        raise DeckError(N_("Each number may appear only once."))
    return labels


@lru_cache(maxsize=256)
def custom_deck(cards: tuple[str, ...]) -> Deck:
    """The facilitator's own deck: numeric when every card is a number (in the order of their
    values), else ordinal in the order typed, its results given by position as for t-shirt sizes."""
    if all(_NUMBER.fullmatch(card) for card in cards):
        values = {card: Fraction(card) for card in cards}
        return Deck(CUSTOM, N_("Own cards"), tuple(sorted(cards, key=values.__getitem__)), values)
    positions = {card: Fraction(position) for position, card in enumerate(cards, start=1)}
    return Deck(CUSTOM, N_("Own cards"), cards, positions, sized=True)


def deck_named(name: str, cards: str | None = None) -> Deck:
    """A group's deck: one of DECKS, or the custom one made of its cards (stored space-separated)."""
    if name == CUSTOM:
        return custom_deck(tuple((cards or "").split()))
    return DECKS[name]


def round_half_up(number: Fraction) -> int:
    """Nearest whole number, halves rounding up."""
    return math.floor(number + Fraction(1, 2))


def nearest_fibonacci(number: Fraction) -> int:
    """Nearest of 1 2 3 5 8 13 21 34 55 89 100, ties going to the larger."""
    return max(FIBONACCI, key=lambda fib: (-abs(fib - number), fib))


def two_decimals(number: Fraction) -> float:
    """A number rounded half up to at most two decimals."""
    return round_half_up(number * 100) / 100


@dataclass(frozen=True)
class Result:
    """The anonymous aggregate of one round: counts only, never a voter."""

    votes: int
    unsure: int
    average: float | None
    nearest_integer: int | None
    nearest_fibonacci: int | None
    suggestion: str | None
    low: str | None
    high: str | None
    consensus: bool
    distribution: dict[str, int]
    #: The middle vote: a number for numeric decks (between the two middle ones for an even
    #: count), the middle card for ordinal ones (the larger of the two middle ones).
    median: float | str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of SPEC.md."""
        return {
            "votes": self.votes,
            "unsure": self.unsure,
            "average": self.average,
            "nearest_integer": self.nearest_integer,
            "nearest_fibonacci": self.nearest_fibonacci,
            "suggestion": self.suggestion,
            "low": self.low,
            "high": self.high,
            "consensus": self.consensus,
            "distribution": dict(self.distribution),
            "median": self.median,
        }


def middle_cards(distribution: Mapping[str, int]) -> tuple[str, str]:
    """The two middle cards of a distribution in deck order, "?" left out: the same card twice
    for an odd count or when they agree. Pages show the median so, as a card or "between 8 and
    13", never as a number no card has."""
    ordered = [card for card, count in distribution.items() if card != UNSURE for _ in range(count)]
    return ordered[(len(ordered) - 1) // 2], ordered[len(ordered) // 2]


def aggregate(deck: Deck, tally: Mapping[str, int]) -> Result:
    """Aggregate a round from its tally (card → how many), which is all that is kept of it."""
    distribution = {card: tally[card] for card in sorted(tally, key=deck.sort_key) if tally[card] > 0}
    unsure = distribution.get(UNSURE, 0)
    numeric = {card: count for card, count in distribution.items() if card != UNSURE}
    votes = sum(distribution.values())
    if not numeric:
        return Result(votes, unsure, None, None, None, None, None, None, False, distribution)

    total = sum((deck.value(card) * count for card, count in numeric.items()), Fraction(0))
    mean = total / sum(numeric.values())
    cards = list(numeric)  # already in deck order
    if deck.sized:
        nearest_integer = fibonacci = None
        suggestion = deck.cards[round_half_up(mean) - 1]
    else:
        nearest_integer = round_half_up(mean)
        fibonacci = nearest_fibonacci(mean)
        suggestion = str(fibonacci) if deck.is_range else deck.card_near(mean)
    lower, middle = middle_cards(numeric)
    if deck.sized:
        median: float | str = middle
    else:
        median = two_decimals((deck.value(lower) + deck.value(middle)) / 2)
    return Result(
        median=median,
        votes=votes,
        unsure=unsure,
        average=two_decimals(mean),
        nearest_integer=nearest_integer,
        nearest_fibonacci=fibonacci,
        suggestion=suggestion,
        low=cards[0],
        high=cards[-1],
        consensus=len(cards) == 1,
        distribution=distribution,
    )


def total(deck: Deck, estimates: Sequence[str | tuple[str, Deck]]) -> float | dict[str, int]:
    """The running total of final estimates: a number for numeric decks, how many of each card
    (in deck order, then cards of earlier decks as they come) for ordinal ones.

    Each estimate is read with the deck it was recorded with (a pair), or the group's (a plain
    card): a deck changed since must not drop an estimate from the total, nor read it as another
    number. A size cannot be added to points, so a numeric deck's total leaves sizes out.
    """
    pairs = [(estimate, deck) if isinstance(estimate, str) else estimate for estimate in estimates]
    cards = [(card, own) for card, own in pairs if own.parse_estimate(card) == card]
    if deck.sized:
        order = {card: position for position, card in enumerate(deck.cards)}
        counts = Counter(card for card, _own in cards)
        ordered = sorted(counts, key=lambda card: (card not in order, order.get(card, 0)))
        return {card: counts[card] for card in ordered}
    whole = sum((own.value(card) for card, own in cards if not own.sized), Fraction(0))
    return int(whole) if whole.denominator == 1 else two_decimals(whole)


def format_number(number: float | None) -> str:
    """Show a number with up to two decimals and no trailing zeros."""
    if number is None:
        return "–"
    return f"{number:.2f}".rstrip("0").rstrip(".")
