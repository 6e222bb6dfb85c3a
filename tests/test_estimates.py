"""The pure estimation rules: decks, parsing, rounding, nearest Fibonacci and card, aggregates."""

from fractions import Fraction

import pytest

from estimator.estimates import DECKS, aggregate, format_number, nearest_fibonacci, round_half_up

RANGE, FIB, MODIFIED, TSHIRT, POWERS = (
    DECKS[n] for n in ("range", "fibonacci", "modified", "tshirt", "powers")
)


@pytest.mark.parametrize(
    "raw, card",
    [
        ("1", "1"),
        ("100", "100"),
        ("42", "42"),
        (" 7 ", "7"),
        ("05", "5"),
        ("?", "?"),
        (" ? ", "?"),
    ],
)
def test_range_deck_accepts_whole_numbers_1_to_100(raw, card):
    assert RANGE.parse(raw) == card


@pytest.mark.parametrize("raw", ["0", "101", "-1", "abc", "5.5", "", None, "1e2", "+5", "٣", "1 0", "1000"])
def test_range_deck_refuses_everything_else(raw):
    assert RANGE.parse(raw) is None


@pytest.mark.parametrize(
    "deck, good, bad",
    [
        (FIB, ["1", "2", "3", "5", "8", "13", "21", "34", "55", "89"], ["4", "100", "0", "144"]),
        (MODIFIED, ["0", "½", "1", "2", "3", "5", "8", "13", "20", "40", "100"], ["21", "4", "0.25"]),
        (TSHIRT, ["XS", "S", "M", "L", "XL", "XXL"], ["XXXL", "1", "medium"]),
        (POWERS, ["1", "2", "4", "8", "16", "32", "64"], ["3", "128", "0"]),
    ],
)
def test_card_decks_take_their_cards_and_question_mark_only(deck, good, bad):
    for card in good + ["?"]:
        assert deck.parse(card) == card
    for card in bad:
        assert deck.parse(card) is None


def test_half_card_has_ascii_spellings_and_sizes_ignore_case():
    assert [MODIFIED.parse(x) for x in ("0.5", "1/2", ".5")] == ["½"] * 3
    assert TSHIRT.parse("xl") == "XL"


def test_final_estimate_is_never_a_question_mark():
    assert RANGE.parse_estimate("?") is None and FIB.parse_estimate("?") is None


@pytest.mark.parametrize(
    "number, expected",
    [
        (Fraction(5, 2), 3),
        (Fraction(7, 2), 4),
        (Fraction(1, 2), 1),
        (Fraction(249, 100), 2),
        (Fraction(4), 4),
    ],
)
def test_halves_round_up(number, expected):
    assert round_half_up(number) == expected


@pytest.mark.parametrize(
    "number, expected",
    [
        (Fraction(4), 5),  # 3 and 5 are equally near: the larger wins
        (Fraction(13, 2), 8),  # 5 and 8: 6.5 is the tie point
        (Fraction(6), 5),
        (Fraction(0), 1),
        (Fraction(95), 100),  # 89 and 100: 94.5 is the tie point
        (Fraction(189, 2), 100),
        (Fraction(94), 89),
        (Fraction(27, 2), 13),
        (Fraction(17), 21),  # 13 and 21 tie at 17
    ],
)
def test_nearest_fibonacci_ties_go_to_the_larger(number, expected):
    assert nearest_fibonacci(number) == expected


def test_range_round_aggregate():
    result = aggregate(RANGE, {"3": 1, "4": 1, "6": 1, "?": 1})
    assert result.votes == 4 and result.unsure == 1
    assert result.average == 4.33
    assert result.nearest_integer == 4
    assert result.nearest_fibonacci == 5
    assert result.suggestion == "5"  # range decks suggest the nearest Fibonacci number
    assert (result.low, result.high) == ("3", "6")
    assert result.consensus is False
    assert list(result.distribution.items()) == [("3", 1), ("4", 1), ("6", 1), ("?", 1)]


def test_average_keeps_two_decimals_rounding_half_up():
    assert aggregate(RANGE, {"1": 1, "2": 2}).average == 1.67
    assert aggregate(RANGE, {"1": 7, "2": 1}).average == 1.13  # 1.125 rounds up
    assert aggregate(RANGE, {"2": 1, "3": 1}).nearest_integer == 3


def test_consensus_when_every_numeric_vote_agrees():
    result = aggregate(FIB, {"8": 3, "?": 2})
    assert result.consensus and result.suggestion == "8" and result.average == 8


def test_only_question_marks_give_no_numbers():
    result = aggregate(FIB, {"?": 3})
    assert result.votes == 3 and result.unsure == 3
    assert result.average is None and result.suggestion is None and result.consensus is False
    assert result.distribution == {"?": 3}


def test_card_deck_suggests_the_nearest_card_with_ties_to_the_larger():
    # 2, 2, 8, 8 average 5 exactly: a card
    assert aggregate(FIB, {"2": 2, "8": 2}).suggestion == "5"
    # 3 and 5 average 4: equally near 3 and 5, the larger wins
    assert aggregate(FIB, {"3": 1, "5": 1}).suggestion == "5"
    # powers: 2 and 8 average 5, nearest card 4 (distance 1) not 8
    assert aggregate(POWERS, {"2": 1, "8": 1}).suggestion == "4"
    # powers: 4 and 8 average 6, equally near 4 and 8: 8
    assert aggregate(POWERS, {"4": 1, "8": 1}).suggestion == "8"


def test_modified_deck_counts_the_half_card():
    result = aggregate(MODIFIED, {"0": 1, "½": 1, "1": 1})
    assert result.average == 0.5
    assert result.nearest_integer == 1
    assert result.nearest_fibonacci == 1
    assert result.suggestion == "½"  # the average is exactly the ½ card
    assert (result.low, result.high) == ("0", "1")
    assert list(result.distribution) == ["0", "½", "1"]


def test_modified_deck_exact_half():
    assert aggregate(MODIFIED, {"½": 2}).suggestion == "½"
    assert aggregate(MODIFIED, {"20": 1, "40": 1}).suggestion == "40"  # 30 ties 20/40


def test_tshirt_average_of_positions_rounded_to_a_size():
    result = aggregate(TSHIRT, {"S": 1, "M": 1, "XL": 1})  # 2, 3, 5 → 3.33 → M
    assert result.suggestion == "M"
    assert result.average == 3.33
    assert result.nearest_integer is None and result.nearest_fibonacci is None
    assert (result.low, result.high) == ("S", "XL")
    assert aggregate(TSHIRT, {"M": 1, "L": 1}).suggestion == "L"  # 3.5 rounds up to L
    assert list(aggregate(TSHIRT, {"XXL": 1, "XS": 2, "?": 1}).distribution) == ["XS", "XXL", "?"]


def test_format_number_shows_up_to_two_decimals():
    assert [format_number(x) for x in (4.0, 4.5, 4.33, None)] == ["4", "4.5", "4.33", "–"]


def test_tshirt_average_is_shown_as_sizes():
    assert TSHIRT.sizes_around(4.5) == "L–XL"
    assert TSHIRT.sizes_around(3.0) == "M"
    assert TSHIRT.sizes_around(1.33) == "XS–S"
