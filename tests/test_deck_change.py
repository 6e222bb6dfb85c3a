"""The facilitator changes the group's deck in the settings; it applies from the next round.

A round that has votes keeps the deck they were cast with (a vote is never read with other cards
than it was given with), its result reads with that deck forever, and a round nobody has voted in
yet follows the group's new deck at once.
"""

import pytest

from tests.conftest import add_issue, create_group, join, vote
from tests.helpers import group_json, issue_json, text, visible


@pytest.fixture
def crew(app, owner, new_client):
    """Olivia's Fibonacci group with three members besides her and one issue in the room."""
    group = create_group(owner, "Crew", "fibonacci")
    members = [new_client(name) for name in ("Bob", "Carol", "Dave")]
    for member in members:
        assert join(app, member, group).status_code == 302
    issue = add_issue(app, owner, group)
    assert owner.post(f"/issues/{issue}/start").status_code == 302
    return {"group": group, "issue": issue, "owner": owner, "members": members}


def settings(client, group: int, **fields: str):
    return client.post(f"/groups/{group}/settings?back=room", data=fields, follow_redirects=True)


def test_the_room_and_the_group_page_offer_the_deck_in_the_settings(crew):
    owner, group = crew["owner"], crew["group"]
    for page in (owner.get(f"/groups/{group}/room"), owner.get(f"/groups/{group}")):
        html = text(page)
        assert 'name="deck"' in html and 'name="cards"' in html
        assert '<option selected value="fibonacci">' in html or 'value="fibonacci" selected' in html


def test_an_open_round_with_votes_keeps_its_deck_and_the_next_round_takes_the_new_one(crew):
    owner, group, issue = crew["owner"], crew["group"], crew["issue"]
    bob, carol, dave = crew["members"]
    assert vote(bob, issue, "5").status_code == 302

    page = settings(owner, group, deck="tshirt")
    assert "The new deck applies from the next round" in visible(page)
    assert group_json(owner, group)["deck"] == "tshirt"
    assert issue_json(owner, issue)["deck"] == "fibonacci", "the open round keeps the deck Bob voted with"

    assert vote(carol, issue, "M").status_code == 422, "not a card of the round's deck"
    assert vote(carol, issue, "8").status_code == 302
    assert vote(dave, issue, "13").status_code == 302
    assert owner.post(f"/issues/{issue}/reveal").status_code == 302
    result = issue_json(owner, issue)["result"]
    assert result["distribution"] == {"5": 1, "8": 1, "13": 1}
    assert result["suggestion"] == "8"
    assert owner.post(f"/issues/{issue}/accept", data={"estimate": "8"}).status_code == 302

    assert owner.post(f"/issues/{issue}/revote").status_code == 302
    state = issue_json(owner, issue)
    assert state["deck"] == "tshirt"
    assert state["history"][0]["result"]["distribution"] == {"5": 1, "8": 1, "13": 1}, (
        "an earlier round reads with the deck it was voted with"
    )
    assert vote(bob, issue, "5").status_code == 422
    assert vote(bob, issue, "M").status_code == 302
    room = visible(bob.get(f"/groups/{group}/room"))
    assert "XL" in room, "the voters see the new cards"


def test_a_round_nobody_voted_in_follows_the_new_deck_at_once(crew):
    owner, group, issue = crew["owner"], crew["group"], crew["issue"]
    bob = crew["members"][0]
    settings(owner, group, deck="custom", cards="tiny small big")
    assert issue_json(owner, issue)["deck"] == "custom"
    assert vote(bob, issue, "small").status_code == 302
    assert vote(bob, issue, "5").status_code == 422
    # A later change leaves this round, now voted in, with its cards.
    settings(owner, group, deck="custom", cards="1 2 3")
    assert vote(bob, issue, "big").status_code == 302


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"deck": "poker"}, "Not a valid choice"),
        ({"deck": "custom", "cards": ""}, "card"),
        ({"deck": "custom", "cards": "1 1 2"}, "only once"),
    ],
)
def test_a_bad_deck_is_refused_and_changes_nothing(crew, fields, message):
    owner, group = crew["owner"], crew["group"]
    response = owner.post(f"/groups/{group}/settings", data=fields)
    assert response.status_code == 422
    assert message in visible(response)
    assert group_json(owner, group)["deck"] == "fibonacci"


def test_settings_without_a_deck_keep_the_group_s_own_cards(crew):
    owner, group = crew["owner"], crew["group"]
    settings(owner, group, deck="custom", cards="tiny small big")
    settings(owner, group, min_votes="4")
    state = group_json(owner, group)
    assert state["deck"] == "custom" and state["settings"]["min_votes"] == 4
    assert vote(crew["members"][0], crew["issue"], "big").status_code == 302


def test_a_member_cannot_change_the_deck(crew):
    bob = crew["members"][0]
    assert bob.post(f"/groups/{crew['group']}/settings", data={"deck": "tshirt"}).status_code == 403
    assert group_json(bob, crew["group"])["deck"] == "fibonacci"
