"""Decks: the facilitator's own cards (`deck=custom`, field `cards`), the median in every result,
and the running total of final estimates on the group page and in the group JSON."""

from __future__ import annotations

import html
import re
import statistics
from fractions import Fraction
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from estimator.estimates import (
    DECKS,
    UNSURE,
    Deck,
    DeckError,
    aggregate,
    custom_deck,
    parse_cards,
    two_decimals,
)
from estimator.extensions import db
from estimator.models import Group
from tests.conftest import add_issue, join, vote
from tests.helpers import group_json, issue_json, text, visible


def groups(app) -> int:
    with app.app_context():
        return int(db.session.scalar(sa.select(sa.func.count()).select_from(Group)) or 0)


def create(client, name: str = "Own cards team", deck: str = "custom", cards: str | None = None):
    data = {"name": name, "deck": deck}
    if cards is not None:
        data["cards"] = cards
    return client.post("/groups", data=data)


def deck_on_page(client, issue_id: int) -> list[str]:
    """The cards the vote page offers, in the order shown."""
    page = text(client.get(f"/issues/{issue_id}/estimate"))
    return [html.unescape(card) for card in re.findall(r'name="value" value="([^"]*)"', page)]


@pytest.fixture
def table(app, owner, new_client):
    """A factory: Olivia's group with the given deck (and cards), members Bob, Carol and Dave, and
    one issue. Returns the group id, the issue id and the four voters, Olivia first."""

    def make(deck: str, cards: str | None = None) -> tuple[int, int, list[Any]]:
        response = create(owner, f"{deck} team", deck, cards)
        assert response.status_code == 302, visible(response)
        group_id = int(response.headers["Location"].rsplit("/", 1)[1])
        voters = [owner]
        for name in ("Bob", "Carol", "Dave"):
            member = new_client(name)
            assert join(app, member, group_id).status_code == 302
            voters.append(member)
        return group_id, add_issue(app, owner, group_id), voters

    return make


def play(issue_id: int, voters: list[Any], cards: list[str]) -> None:
    """The members vote the cards in turn, and the facilitator (voters[0]) too when there is a card
    for everybody; then the facilitator reveals. Their own card never counts towards the threshold,
    so fewer cards than voters are the members'."""
    for voter, card in zip(voters if len(cards) >= len(voters) else voters[1:], cards, strict=False):
        response = vote(voter, issue_id, card)
        assert response.status_code == 302, visible(response)
    response = voters[0].post(f"/issues/{issue_id}/reveal")
    assert response.status_code == 302
    assert issue_json(voters[0], issue_id)["state"] == "revealed", "the round was not revealed"


# --- creating a group with its own cards ---------------------------------------------------------


@pytest.mark.parametrize(
    "cards, shown",
    [
        ("1 2 3 5 8", ["1", "2", "3", "5", "8"]),
        ("0.5,1,2", ["0.5", "1", "2"]),
        (" 13, 1 ,  5 ", ["1", "5", "13"]),  # numbers are shown by value
        ("tiny small big huge", ["tiny", "small", "big", "huge"]),
        ("huge, big, small", ["huge", "big", "small"]),  # words keep the order typed
        ("Ä Ö Ü", ["Ä", "Ö", "Ü"]),
        ("ab,abcdefgh", ["ab", "abcdefgh"]),  # two cards, eight characters: the limits
    ],
)
def test_a_custom_deck_shows_its_cards_in_order(app, table, cards, shown):
    group_id, issue, voters = table("custom", cards)
    assert deck_on_page(voters[1], issue) == [*shown, "?"]
    assert group_json(voters[1], group_id)["deck"] == "custom"
    assert issue_json(voters[1], issue)["deck"] == "custom"


def test_twenty_cards_are_allowed(app, owner):
    cards = " ".join(f"c{n}" for n in range(20))
    assert create(owner, cards=cards).status_code == 302
    assert groups(app) == 1


def test_the_dashboard_form_offers_own_cards(app, owner):
    page = text(owner.get("/"))
    assert '<option value="custom">' in page and 'name="cards"' in page


def test_cards_are_ignored_for_the_other_decks(app, owner):
    response = create(owner, deck="fibonacci", cards="a a a")
    assert response.status_code == 302
    group_id = int(response.headers["Location"].rsplit("/", 1)[1])
    assert group_json(owner, group_id)["deck"] == "fibonacci"


@pytest.mark.parametrize(
    "cards, message",
    [
        ("5", "A deck has 2 to 20 cards, separated by commas or spaces."),
        (" ".join(str(n) for n in range(1, 22)), "A deck has 2 to 20 cards, separated by commas or spaces."),
        ("", "A deck has 2 to 20 cards, separated by commas or spaces."),
        (" ,, , ", "A deck has 2 to 20 cards, separated by commas or spaces."),
        (None, "A deck has 2 to 20 cards, separated by commas or spaces."),
        ("tiny enormous1", "A card has at most 8 characters: “enormous1” is longer."),
        ("S M s", "Each card may appear only once."),
        ("Big, big", "Each card may appear only once."),
        ("1 2 2", "Each card may appear only once."),
        ("1 2 1.0", "Each number may appear only once."),
        ("0.5 0.50 1", "Each number may appear only once."),
        ("1 ? 3", "Every deck has “?” already: leave it out."),
        ("a\u200bb c", "The cards cannot contain control characters or invisible characters."),
        ("a\x07 b", "The cards cannot contain control characters or invisible characters."),
        ("a \u202eb", "The cards cannot contain control characters or invisible characters."),
        ("a \u0301b", "The cards cannot contain an accent or other mark on its own."),
    ],
)
def test_bad_cards_are_refused_and_create_nothing(app, owner, cards, message):
    response = create(owner, cards=cards)
    assert response.status_code == 422
    assert message in visible(response)
    assert groups(app) == 0


def test_a_card_cannot_start_with_a_mark_on_its_own(app, owner):
    """After a comma as after a space, an accent has nothing to sit on: on its card button it
    would land on the button's edge."""
    response = create(owner, cards="a,\u0301b")
    assert response.status_code == 422, "a card starting with a lone combining mark was accepted"
    assert "mark on its own" in visible(response)
    assert groups(app) == 0


@pytest.mark.parametrize(
    "text, error",
    [
        ("1", "2 to 20"),
        ("a " * 21, "2 to 20"),
        ("123456789 1", "at most 8"),
        ("x X", "only once"),
        ("1 01", "only once"),
        ("? 1", "“?”"),
    ],
)
def test_parse_cards_says_why_it_refuses(text, error):
    with pytest.raises(DeckError, match=error):
        parse_cards(text)


def test_parse_cards_splits_on_commas_and_spaces():
    assert parse_cards("1, 2,3  5\u00a08") == ("1", "2", "3", "5", "8")


# --- voting on a custom deck ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "cards, good, bad",
    [
        ("1 2 3 5 8", {"5": "5", " 8 ": "8", "?": "?"}, ["4", "13", "0.5", "five", ""]),
        ("0.5,1,2", {"0.5": "0.5", "2": "2"}, ["½", "1.5", "3"]),
        ("tiny small big huge", {"big": "big", "TINY": "tiny", "?": "?"}, ["medium", "1", "tin"]),
    ],
)
def test_votes_outside_the_deck_are_refused(app, table, cards, good, bad):
    _, issue, voters = table("custom", cards)
    bob = voters[1]
    for value in bad:
        response = vote(bob, issue, value)
        assert response.status_code == 422, value
        assert "Choose one of the cards" in visible(response)
    assert issue_json(bob, issue)["votes_cast"] == 0
    for value, card in good.items():
        assert vote(bob, issue, value).status_code == 302, value
        assert f"Your card: {card}" in visible(bob.get(f"/issues/{issue}"))


def test_numeric_custom_deck_results(app, table):
    _, issue, voters = table("custom", "1 2 3 5 8")
    play(issue, voters, ["2", "3", "8", "?"])
    result = issue_json(voters[2], issue)["result"]
    assert result == {
        "votes": 4,
        "unsure": 1,
        "average": 4.33,
        "nearest_integer": 4,
        "nearest_fibonacci": 5,
        "suggestion": "5",  # the card nearest to 4.33
        "low": "2",
        "high": "8",
        "consensus": False,
        "median": 3,
        "distribution": {"2": 1, "3": 1, "8": 1, "?": 1},
    }
    page = visible(voters[2].get(f"/issues/{issue}"))
    assert "Suggestion 5" in page and "Average 4.33" in page
    assert "<option selected>5</option>" in text(voters[0].get(f"/issues/{issue}"))  # pre-filled


def test_decimal_custom_deck_results(app, table):
    _, issue, voters = table("custom", "0.5,1,2")
    play(issue, voters, ["0.5", "0.5", "2", "1"])
    result = issue_json(voters[1], issue)["result"]
    assert (result["average"], result["median"], result["suggestion"]) == (1, 0.75, "1")
    assert (result["low"], result["high"]) == ("0.5", "2")
    assert result["distribution"] == {"0.5": 2, "1": 1, "2": 1}


def test_ordinal_custom_deck_results_go_by_position(app, table):
    _, issue, voters = table("custom", "tiny small big huge")
    play(issue, voters, ["tiny", "big", "big", "huge"])
    result = issue_json(voters[1], issue)["result"]
    assert result == {
        "votes": 4,
        "unsure": 0,
        "average": 2.75,  # positions 1, 3, 3, 4
        "nearest_integer": None,
        "nearest_fibonacci": None,
        "suggestion": "big",  # position 2.75 rounds to 3
        "low": "tiny",
        "high": "huge",
        "consensus": False,
        "median": "big",
        "distribution": {"tiny": 1, "big": 2, "huge": 1},
    }
    page = visible(voters[1].get(f"/issues/{issue}"))
    assert "Suggestion big" in page and "small–big" in page  # the average lies between them
    assert "Nearest Fibonacci" not in page
    # the facilitator records a card of the deck, and nothing else
    owner = voters[0]
    assert owner.post(f"/issues/{issue}/accept", data={"estimate": "medium"}).status_code == 422
    assert owner.post(f"/issues/{issue}/accept", data={"estimate": "Huge"}).status_code == 302
    assert issue_json(owner, issue)["final_estimate"] == "huge"


def test_unsure_votes_count_on_custom_decks(app, table):
    _, issue, voters = table("custom", "tiny small big huge")
    play(issue, voters, ["small", "small", "small", "?"])
    result = issue_json(voters[1], issue)["result"]
    assert (result["votes"], result["unsure"], result["consensus"]) == (4, 1, True)
    assert result["median"] == "small" and result["distribution"] == {"small": 3, "?": 1}


# --- the median ----------------------------------------------------------------------------------

NUMERIC_CUSTOM = custom_deck(("0.5", "1", "2", "3", "5"))
ORDINAL_CUSTOM = custom_deck(("tiny", "small", "big", "huge"))


@pytest.mark.parametrize(
    "deck, tally, median",
    [
        (DECKS["range"], {"3": 1, "7": 1, "8": 2, "?": 1}, 7.5),
        (DECKS["range"], {"5": 1}, 5),
        (DECKS["range"], {"1": 2, "100": 1}, 1),
        (DECKS["range"], {"1": 1, "2": 1}, 1.5),
        (DECKS["range"], {"1": 1, "4": 1, "100": 1, "?": 3}, 4),
        (DECKS["fibonacci"], {"1": 1, "2": 1, "13": 1}, 2),
        (DECKS["fibonacci"], {"89": 3, "1": 1}, 89),
        (DECKS["modified"], {"0": 1, "½": 2, "1": 1}, 0.5),
        (DECKS["modified"], {"0": 1, "½": 1}, 0.25),
        (DECKS["powers"], {"1": 1, "64": 1}, 32.5),
        (DECKS["powers"], {"2": 1, "4": 1, "8": 1, "16": 1, "32": 1}, 8),
        (DECKS["tshirt"], {"XS": 1, "M": 2, "XXL": 1}, "M"),
        (DECKS["tshirt"], {"XS": 1, "M": 1, "XL": 1}, "M"),
        (DECKS["tshirt"], {"S": 1, "L": 1}, "L"),  # the larger of the two middle sizes
        (NUMERIC_CUSTOM, {"0.5": 1, "2": 1}, 1.25),
        (NUMERIC_CUSTOM, {"0.5": 2, "5": 1, "?": 1}, 0.5),
        (ORDINAL_CUSTOM, {"tiny": 1, "big": 2, "huge": 1}, "big"),
        (ORDINAL_CUSTOM, {"tiny": 2, "huge": 1}, "tiny"),
    ],
)
def test_the_median_of_every_deck(deck, tally, median):
    result = aggregate(deck, tally)
    assert result.median == median
    assert result.as_dict()["median"] == median


@pytest.mark.parametrize(
    "deck", [*DECKS.values(), NUMERIC_CUSTOM, ORDINAL_CUSTOM], ids=lambda deck: deck.title
)
def test_only_unsure_votes_have_no_median(deck):
    result = aggregate(deck, {UNSURE: 3}).as_dict()
    assert "median" in result and result["median"] is None and result["votes"] == 3


def numeric_decks() -> list[Deck]:
    return [deck for deck in (*DECKS.values(), NUMERIC_CUSTOM) if not deck.sized and not deck.is_range]


@given(
    deck=st.sampled_from(numeric_decks()),
    picks=st.lists(st.integers(min_value=0, max_value=10), min_size=1, max_size=30),
)
def test_the_numeric_median_is_the_middle_of_the_votes(deck, picks):
    cards = [deck.cards[pick % len(deck.cards)] for pick in picks]
    tally = {card: cards.count(card) for card in set(cards)}
    result = aggregate(deck, tally)
    assert result.median == two_decimals(statistics.median(deck.value(card) for card in cards))
    assert result.low is not None and result.high is not None and result.median is not None
    assert deck.value(result.low) <= Fraction(str(result.median)) <= deck.value(result.high)


@given(
    deck=st.sampled_from([DECKS["tshirt"], ORDINAL_CUSTOM]),
    picks=st.lists(st.integers(min_value=0, max_value=10), min_size=1, max_size=30),
)
def test_the_ordinal_median_is_a_middle_card(deck, picks):
    cards = sorted((deck.cards[pick % len(deck.cards)] for pick in picks), key=deck.value)
    tally = {card: cards.count(card) for card in set(cards)}
    median = aggregate(deck, tally).median
    assert median in deck.cards
    assert median in (cards[(len(cards) - 1) // 2], cards[len(cards) // 2])


@pytest.mark.parametrize(
    "deck, cards, votes, median",
    [
        ("range", None, ["3", "7", "8", "8"], 7.5),
        ("fibonacci", None, ["1", "2", "13", "?"], 2),
        ("modified", None, ["½", "0.5", "1", "0"], 0.5),
        ("tshirt", None, ["XS", "M", "M", "XXL"], "M"),
        ("powers", None, ["1", "64", "2"], 2),
        ("custom", "1 2 3 5 8", ["2", "3", "8", "?"], 3),
        ("custom", "tiny small big huge", ["tiny", "big", "big", "huge"], "big"),
    ],
)
def test_every_result_in_the_api_has_its_median(app, table, deck, cards, votes, median):
    group_id, issue, voters = table(deck, cards)
    play(issue, voters, votes)
    assert issue_json(voters[1], issue)["result"]["median"] == median
    # a re-vote keeps it in the history
    assert voters[0].post(f"/issues/{issue}/revote").status_code == 302
    history = issue_json(voters[1], issue)["history"]
    assert [entry["result"]["median"] for entry in history] == [median]


@pytest.mark.parametrize(
    "deck, cards, votes, suggestion, shown",
    [
        ("range", None, ["3", "7", "8", "8"], "8", "between 7 and 8"),  # 7.5 is no card
        ("fibonacci", None, ["1", "13", "13", "13"], "8", "13"),  # average 10: the nearest card is 8
        ("custom", "tiny small big huge", ["tiny", "tiny", "big", "huge"], "small", "between tiny and big"),
        ("tshirt", None, ["XS", "M", "M", "XXL"], "M", None),  # the suggestion already says M
        ("fibonacci", None, ["5", "8", "8"], "8", None),
    ],
)
def test_the_status_page_shows_the_median_as_cards_unless_the_suggestion_says_it(
    app, table, deck, cards, votes, suggestion, shown
):
    _, issue, voters = table(deck, cards)
    play(issue, voters, votes)
    page = visible(voters[1].get(f"/issues/{issue}"))
    assert f"Suggestion {suggestion} " in page
    if shown is None:
        assert "Median" not in page
    else:
        assert re.search(rf"Median {re.escape(shown)}\b", page), "the result on the page has no median"


# --- the total of the final estimates ------------------------------------------------------------


def record(issue_id: int, voters: list[Any], card: str) -> None:
    """Three members' votes for the card, the reveal, and the card recorded as the final estimate."""
    play(issue_id, voters, [card] * 3)
    response = voters[0].post(f"/issues/{issue_id}/accept", data={"estimate": card})
    assert response.status_code == 302
    assert issue_json(voters[0], issue_id)["final_estimate"] == card


def total_line(client, group_id: int) -> str:
    page = visible(client.get(f"/groups/{group_id}"))
    match = re.search(r"Total of the final estimates: (.*)", page)
    assert match is not None, "the group page shows no total"
    return match.group(1)


@pytest.mark.parametrize(
    "deck, cards, finals, total, shown",
    [
        ("range", None, ["8", "13", "1"], 22, "22"),
        ("fibonacci", None, ["3", "5", "8"], 16, "16"),
        ("modified", None, ["½", "3", "0"], 3.5, "3.5"),
        ("powers", None, ["64", "64"], 128, "128"),
        ("custom", "0.5,1,2", ["0.5", "2", "0.5"], 3, "3"),
        ("custom", "0.5 1.25 2", ["0.5", "1.25"], 1.75, "1.75"),
        ("tshirt", None, ["S", "M", "S"], {"S": 2, "M": 1}, "2 × S, 1 × M"),
        ("custom", "tiny small big huge", ["big", "tiny", "big"], {"tiny": 1, "big": 2}, "1 × tiny, 2 × big"),
    ],
)
def test_the_total_of_the_final_estimates(app, table, owner, deck, cards, finals, total, shown):
    group_id, first, voters = table(deck, cards)
    issues = [first, *(add_issue(app, owner, group_id, f"T-{n}") for n in range(len(finals)))]
    for issue, card in zip(issues, finals, strict=False):  # the last issue is not estimated
        record(issue, voters, card)
    state = group_json(voters[1], group_id)
    assert state["total"] == total
    assert total_line(voters[1], group_id).startswith(shown)


@pytest.mark.parametrize(
    "deck, cards, total, shown",
    [
        ("fibonacci", None, 0, "0"),
        ("tshirt", None, {}, "none yet"),
        ("custom", "tiny small big", {}, "none yet"),
    ],
)
def test_the_total_before_any_estimate(app, table, deck, cards, total, shown):
    group_id, _, voters = table(deck, cards)
    assert group_json(voters[0], group_id)["total"] == total
    assert total_line(voters[0], group_id).startswith(shown)


def test_a_revote_takes_an_estimate_out_of_the_total(app, table, owner):
    group_id, issue, voters = table("fibonacci")
    other = add_issue(app, owner, group_id, "T-2")
    record(issue, voters, "8")
    record(other, voters, "5")
    assert group_json(owner, group_id)["total"] == 13
    assert owner.post(f"/issues/{issue}/revote").status_code == 302
    assert group_json(owner, group_id)["total"] == 5
    assert total_line(owner, group_id).startswith("5")


def test_the_create_form_offers_fibonacci_first_while_a_post_naming_no_deck_means_range(app, owner):
    form = owner.get("/").get_data(as_text=True)
    assert re.search(r'<option selected value="fibonacci">|<option value="fibonacci" selected>', form)
    assert owner.post("/groups", data={"name": "No deck named"}).status_code == 302
    assert owner.post("/groups", data={"name": "Fibonacci", "deck": "fibonacci"}).status_code == 302
    with app.app_context():
        decks = dict(db.session.execute(sa.select(Group.name, Group.deck)).all())
    assert decks == {"No deck named": "range", "Fibonacci": "fibonacci"}
