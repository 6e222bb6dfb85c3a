"""The backlog and the group's life: issue order, editing and deleting issues, leaving a group,
handing it over, deleting it, removing a member after a confirmation, the invite QR code, and the
limits of a group and of a person."""

from __future__ import annotations

import html
import io
import re

import cairosvg  # type: ignore[import-untyped]  # CairoSVG ships no type information
import pytest
import sqlalchemy as sa
import zxingcpp
from PIL import Image

from estimator.extensions import db
from estimator.groups import rules
from estimator.models import Ballot, Group, Issue, Membership, Role, Round, Tally, User
from estimator.sealing import ballot_keys
from tests.conftest import add_issue, create_group, invite_path, join, members_vote, vote
from tests.helpers import group_json, issue_json, text, visible


def followed(client, response) -> str:
    """The visible text of the page a redirect leads to (with the message it flashed)."""
    assert response.status_code == 302, text(response)[:2000]
    return visible(client.get(response.headers["Location"]))


def page_order(client, group_id: int) -> list[str]:
    """The issue keys as the group page lists them, top to bottom."""
    page = text(client.get(f"/groups/{group_id}"))
    return [html.unescape(key) for key in re.findall(r'href="/issues/\d+">([^<]*)</a>', page)]


def json_order(client, group_id: int) -> list[str]:
    return [issue["key"] for issue in group_json(client, group_id)["issues"]]


def user_id(app, nickname: str) -> int:
    with app.app_context():
        found = db.session.scalar(sa.select(User.id).where(User.nickname == nickname))
    assert found is not None, nickname
    return found


def rows(app, model, **where: int) -> int:
    """How many rows of a table match the column values given."""
    with app.app_context():
        query = sa.select(sa.func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return int(db.session.scalar(query) or 0)


def move(client, issue_id: int, to: str | None):
    return client.post(f"/issues/{issue_id}/move", data={} if to is None else {"to": to})


def reveal(client, issue_id: int):
    return client.post(f"/issues/{issue_id}/reveal")


def open_key_id(app, issue_id: int) -> str:
    """The key id of the issue's open round (the round must hold a vote)."""
    with app.app_context():
        key_id = db.session.scalar(
            sa.select(Round.key_id).where(Round.issue_id == issue_id, Round.revealed_at.is_(None))
        )
    assert key_id is not None, "the open round has no key yet"
    return key_id


def key_exists(app, key_id: str) -> bool:
    with app.app_context():
        return ballot_keys.store.get(key_id) is not None


@pytest.fixture
def backlog(app, team) -> dict[str, int]:
    """The team's group with four issues A-1 … A-4 in backlog order: key → id."""
    owner, group = team["owner"], team["group"]
    assert (
        owner.post(f"/issues/{team['issue']}/edit", data={"key": "A-1", "description": ""}).status_code == 302
    )
    ids = {"A-1": team["issue"]}
    for n in (2, 3, 4):
        ids[f"A-{n}"] = add_issue(app, owner, group, f"A-{n}", f"Story {n}")
    return ids


# --- order ---------------------------------------------------------------------------------------


def test_new_issues_go_to_the_end_even_after_moves(app, team, backlog):
    owner, group = team["owner"], team["group"]
    assert page_order(owner, group) == ["A-1", "A-2", "A-3", "A-4"]
    assert json_order(team["bob"], group) == ["A-1", "A-2", "A-3", "A-4"]
    assert move(owner, backlog["A-4"], "top").status_code == 302
    add_issue(app, owner, group, "A-5")
    assert page_order(team["bob"], group) == ["A-4", "A-1", "A-2", "A-3", "A-5"]
    assert json_order(owner, group) == ["A-4", "A-1", "A-2", "A-3", "A-5"]


@pytest.mark.parametrize(
    "key, to, order",
    [
        ("A-3", "up", ["A-1", "A-3", "A-2", "A-4"]),
        ("A-2", "down", ["A-1", "A-3", "A-2", "A-4"]),
        ("A-3", "top", ["A-3", "A-1", "A-2", "A-4"]),
        ("A-2", "bottom", ["A-1", "A-3", "A-4", "A-2"]),
        ("A-4", "top", ["A-4", "A-1", "A-2", "A-3"]),
        ("A-1", "bottom", ["A-2", "A-3", "A-4", "A-1"]),
        # at an edge nothing moves
        ("A-1", "up", ["A-1", "A-2", "A-3", "A-4"]),
        ("A-1", "top", ["A-1", "A-2", "A-3", "A-4"]),
        ("A-4", "down", ["A-1", "A-2", "A-3", "A-4"]),
        ("A-4", "bottom", ["A-1", "A-2", "A-3", "A-4"]),
    ],
)
def test_moving_reorders_the_page_the_json_and_the_room(app, team, backlog, key, to, order):
    owner, group = team["owner"], team["group"]
    response = move(owner, backlog[key], to)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(f"/groups/{group}")
    assert page_order(owner, group) == order
    assert page_order(team["bob"], group) == order
    assert json_order(team["carol"], group) == order
    # the room's "next" follows the backlog order: from nothing, the first issue
    assert owner.post(f"/groups/{group}/next").status_code == 302
    assert group_json(team["bob"], group)["current_issue"] == backlog[order[0]]
    assert owner.post(f"/groups/{group}/next").status_code == 302
    assert group_json(team["bob"], group)["current_issue"] == backlog[order[1]]


@pytest.mark.parametrize(
    "key, place, order",
    [
        ("A-1", 3, ["A-2", "A-3", "A-1", "A-4"]),
        ("A-4", 2, ["A-1", "A-4", "A-2", "A-3"]),
        ("A-2", 1, ["A-2", "A-1", "A-3", "A-4"]),
        ("A-2", 2, ["A-1", "A-2", "A-3", "A-4"]),  # where it is already
        ("A-2", 999, ["A-1", "A-3", "A-4", "A-2"]),  # beyond the end: the bottom
    ],
)
def test_dragging_moves_an_issue_to_a_place_and_says_where(app, team, backlog, key, place, order):
    owner, group = team["owner"], team["group"]
    response = owner.post(
        f"/issues/{backlog[key]}/move",
        data={"to": "place", "place": place},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200
    assert response.get_json() == {
        "moved": f"{key} is now number {order.index(key) + 1} of the backlog.",
        "place": order.index(key) + 1,
    }
    assert page_order(team["bob"], group) == order and json_order(owner, group) == order


def test_a_move_by_button_says_where_the_issue_went(app, team, backlog):
    page = followed(team["owner"], move(team["owner"], backlog["A-3"], "top"))
    assert "A-3 is now number 1 of the backlog." in page


@pytest.mark.parametrize("place", [None, "", "0", "-1", "two", "1001", "1.5"])
def test_a_move_to_no_good_place_changes_nothing_and_says_why(app, team, backlog, place):
    owner, group = team["owner"], team["group"]
    data = {"to": "place"} | ({} if place is None else {"place": place})
    response = owner.post(f"/issues/{backlog['A-3']}/move", data=data, headers={"Accept": "application/json"})
    assert response.status_code == 422 and response.get_json()["error"]
    page = followed(owner, owner.post(f"/issues/{backlog['A-3']}/move", data=data))
    assert "place" in page.lower()
    assert page_order(owner, group) == ["A-1", "A-2", "A-3", "A-4"]


def test_moves_add_up(app, team, backlog):
    owner, group = team["owner"], team["group"]
    for key, to in (("A-4", "up"), ("A-4", "up"), ("A-1", "down"), ("A-2", "bottom"), ("A-3", "down")):
        assert move(owner, backlog[key], to).status_code == 302
    assert page_order(owner, group) == ["A-4", "A-1", "A-2", "A-3"]


def test_the_owner_s_page_has_move_buttons_disabled_at_the_edges(app, team, backlog):
    page = text(team["owner"].get(f"/groups/{team['group']}"))
    first_up = re.search(r'aria-label="Move A-1 up"[^>]*>', page)
    last_down = re.search(r'aria-label="Move A-4 down"[^>]*>', page)
    middle_up = re.search(r'aria-label="Move A-2 up"[^>]*>', page)
    assert first_up and last_down and middle_up, "the owner's page has no move buttons"
    assert "disabled" in first_up.group(0) and "disabled" in last_down.group(0)
    assert "disabled" not in middle_up.group(0)


def test_members_see_no_backlog_controls(app, team, backlog):
    page = text(team["bob"].get(f"/groups/{team['group']}"))
    for control in ("/move", "/edit", "/delete", "Move A-1"):
        assert control not in page


@pytest.mark.parametrize("to", ["", "sideways", "UP", "2", None])
def test_a_bad_move_changes_nothing_and_says_why(app, team, backlog, to):
    owner, group = team["owner"], team["group"]
    page = followed(owner, move(owner, backlog["A-3"], to))
    assert "Move an issue up, down, to the top or to the bottom." in page
    assert page_order(owner, group) == ["A-1", "A-2", "A-3", "A-4"]


def test_only_the_owner_moves_issues(app, team, backlog, outsider):
    group = team["group"]
    assert move(team["bob"], backlog["A-3"], "top").status_code == 403
    assert move(outsider, backlog["A-3"], "top").status_code == 404
    assert move(team["owner"], 987654, "top").status_code == 404
    assert json_order(team["owner"], group) == ["A-1", "A-2", "A-3", "A-4"]


def test_get_on_move_goes_back_to_the_group_page(app, team, backlog):
    response = team["owner"].get(f"/issues/{backlog['A-3']}/move")
    assert response.status_code == 302
    assert response.headers["Location"].split("#")[0] == f"/groups/{team['group']}"
    assert json_order(team["owner"], team["group"]) == ["A-1", "A-2", "A-3", "A-4"]


def test_move_needs_a_login(app, team, backlog):
    response = app.test_client().post(f"/issues/{backlog['A-3']}/move", data={"to": "top"})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")


# --- edit ----------------------------------------------------------------------------------------


def edit(client, issue_id: int, key: str, description: str = ""):
    return client.post(f"/issues/{issue_id}/edit", data={"key": key, "description": description})


def test_the_edit_page_is_filled_in_with_the_issue(app, team, backlog):
    response = team["owner"].get(f"/issues/{backlog['A-2']}/edit")
    assert response.status_code == 200
    page = text(response)
    assert 'value="A-2"' in page and "Story 2</textarea>" in page
    assert f'href="/groups/{team["group"]}"' in page  # a way back


def test_editing_changes_key_and_description_everywhere(app, team, backlog):
    owner, group = team["owner"], team["group"]
    response = edit(owner, backlog["A-2"], "  NEW-2 ", "Line one\nline <two>")
    assert response.status_code == 302 and response.headers["Location"] == f"/groups/{group}"
    assert "Issue NEW-2 saved." in visible(owner.get(f"/groups/{group}"))
    assert page_order(team["bob"], group) == ["A-1", "NEW-2", "A-3", "A-4"]
    state = issue_json(team["bob"], backlog["A-2"])
    assert (state["key"], state["description"]) == ("NEW-2", "Line one\nline <two>")
    assert "line &lt;two&gt;" in text(team["bob"].get(f"/groups/{group}"))


def test_an_issue_keeps_its_own_key_in_another_case(app, team, backlog):
    assert edit(team["owner"], backlog["A-2"], "a-2", "Story 2").status_code == 302
    assert issue_json(team["owner"], backlog["A-2"])["key"] == "a-2"
    assert edit(team["owner"], backlog["A-2"], "a-2", "Other words").status_code == 302
    assert issue_json(team["owner"], backlog["A-2"])["description"] == "Other words"


def test_editing_keeps_votes_and_results(app, team, dave, backlog):
    issue = backlog["A-1"]
    members_vote(team, issue, ("3", "5", "8"))
    assert reveal(team["owner"], issue).status_code == 302
    assert edit(team["owner"], issue, "A-1b", "renamed").status_code == 302
    result = issue_json(team["bob"], issue)["result"]
    assert result["distribution"] == {"3": 1, "5": 1, "8": 1}


@pytest.mark.parametrize(
    "key, description, message",
    [
        ("", "", "An issue key cannot be empty."),
        ("   ", "", "An issue key cannot be empty."),
        ("K" * 33, "", "An issue key has at most 32 characters."),
        ("A\u200b-9", "", "cannot contain control characters or invisible characters"),
        ("A\x07-9", "", "cannot contain control characters or invisible characters"),
        ("A\u202e-9", "", "cannot contain control characters or invisible characters"),
        ("\u0301A-9", "", "mark on its own"),
        ("A-3", "", "The group already has an issue A-3."),
        ("a-3", "", "The group already has an issue a-3."),
        ("A-9", "d" * 501, "A description has at most 500 characters."),
        ("A-9", "bidi \u202e trick", "cannot contain control characters or invisible characters"),
    ],
)
def test_bad_edits_are_refused_and_save_nothing(app, team, backlog, key, description, message):
    owner, group = team["owner"], team["group"]
    before = group_json(owner, group)["issues"]
    response = edit(owner, backlog["A-2"], key, description)
    assert response.status_code == 422
    assert message in visible(response)
    assert group_json(owner, group)["issues"] == before


def test_keys_clash_under_full_case_folding_when_edited(app, team, backlog):
    owner = team["owner"]
    assert edit(owner, backlog["A-3"], "Straße").status_code == 302
    response = edit(owner, backlog["A-2"], "STRASSE")
    assert response.status_code == 422 and "already has an issue" in visible(response)
    assert issue_json(owner, backlog["A-2"])["key"] == "A-2"


def test_only_the_owner_edits_and_only_their_own_group(app, team, backlog, new_client):
    issue = backlog["A-2"]
    bob = team["bob"]
    assert bob.get(f"/issues/{issue}/edit").status_code == 403
    assert edit(bob, issue, "BOB-1").status_code == 403
    dave = new_client("Dave")
    create_group(dave, "Dave's own")  # an owner, but of another group
    assert dave.get(f"/issues/{issue}/edit").status_code == 404
    assert edit(dave, issue, "DAVE-1").status_code == 404
    assert edit(team["owner"], 987654, "X-1").status_code == 404
    assert issue_json(team["owner"], issue)["key"] == "A-2"


# --- delete an issue -----------------------------------------------------------------------------


def test_deleting_an_issue_asks_first(app, team, backlog):
    response = team["owner"].get(f"/issues/{backlog['A-2']}/delete")
    assert response.status_code == 200
    page = visible(response)
    assert "Delete A-2?" in page and "Delete the issue" in page and "Cancel" in page
    assert f'action="/issues/{backlog["A-2"]}/delete"' in text(response)
    assert json_order(team["owner"], team["group"]) == ["A-1", "A-2", "A-3", "A-4"]


def test_deleting_an_issue_deletes_its_rounds_tallies_ballots_and_key(app, team, dave, backlog):
    owner, bob, carol, group = team["owner"], team["bob"], team["carol"], team["group"]
    issue = backlog["A-2"]
    members_vote(team, issue, ("3", "5", "8"))
    assert reveal(owner, issue).status_code == 302
    assert owner.post(f"/issues/{issue}/revote").status_code == 302
    assert vote(bob, issue, "13").status_code == 302  # round 2 is open and sealed under a key
    key_id = open_key_id(app, issue)
    assert key_exists(app, key_id)
    with app.app_context():
        round_ids = list(db.session.scalars(sa.select(Round.id).where(Round.issue_id == issue)))
    assert len(round_ids) == 2 and rows(app, Tally, round_id=round_ids[0]) == 3

    response = owner.post(f"/issues/{issue}/delete")
    assert response.status_code == 302 and response.headers["Location"] == f"/groups/{group}"
    assert "Issue A-2 was deleted, with its rounds." in visible(owner.get(f"/groups/{group}"))
    assert page_order(bob, group) == ["A-1", "A-3", "A-4"]
    assert json_order(carol, group) == ["A-1", "A-3", "A-4"]
    assert bob.get(f"/issues/{issue}").status_code == 404
    assert bob.get(f"/api/issues/{issue}").status_code == 404
    assert rows(app, Issue, id=issue) == 0
    for round_id in round_ids:
        assert rows(app, Round, id=round_id) == 0
        assert rows(app, Tally, round_id=round_id) == 0
        assert rows(app, Ballot, round_id=round_id) == 0
    assert not key_exists(app, key_id), "the deleted round's key outlived its ballots"
    # the others are untouched and the order goes on working
    assert move(owner, backlog["A-4"], "up").status_code == 302
    assert json_order(owner, group) == ["A-1", "A-4", "A-3"]


def test_deleting_the_issue_in_the_room_empties_the_room(app, team, backlog):
    owner, group = team["owner"], team["group"]
    assert owner.post(f"/issues/{backlog['A-3']}/start").status_code == 302
    assert group_json(team["bob"], group)["current_issue"] == backlog["A-3"]
    assert owner.post(f"/issues/{backlog['A-3']}/delete").status_code == 302
    assert group_json(team["bob"], group)["current_issue"] is None
    assert "Waiting for the facilitator to pick an issue." in visible(
        team["bob"].get(f"/groups/{group}/room")
    )
    assert "No issue is in the room yet" in visible(owner.get(f"/groups/{group}/room"))


def test_only_the_owner_deletes_issues(app, team, backlog, outsider):
    issue = backlog["A-2"]
    assert team["bob"].get(f"/issues/{issue}/delete").status_code == 403
    assert team["bob"].post(f"/issues/{issue}/delete").status_code == 403
    assert outsider.get(f"/issues/{issue}/delete").status_code == 404
    assert outsider.post(f"/issues/{issue}/delete").status_code == 404
    assert team["owner"].post("/issues/987654/delete").status_code == 404
    assert json_order(team["owner"], team["group"]) == ["A-1", "A-2", "A-3", "A-4"]


# --- leave ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["member", "observer"])
def test_members_and_observers_can_leave_after_a_confirmation(app, owner, new_client, role):
    group = create_group(owner)
    erin = new_client("Erin")
    assert join(app, erin, group, role).status_code == 302
    response = erin.get(f"/groups/{group}/leave")
    assert response.status_code == 200
    assert "Leave “Team Rocket”?" in visible(response) and "Leave the group" in visible(response)
    assert f'action="/groups/{group}/leave"' in text(response)
    assert [m["nickname"] for m in group_json(owner, group)["members"]] == ["Olivia", "Erin"]

    response = erin.post(f"/groups/{group}/leave")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "You left “Team Rocket”." in visible(erin.get("/"))
    assert "Team Rocket" not in visible(erin.get("/"))
    assert erin.get(f"/groups/{group}").status_code == 404
    assert erin.get(f"/api/groups/{group}").status_code == 404
    assert erin.get(f"/groups/{group}/leave").status_code == 404
    assert [m["nickname"] for m in group_json(owner, group)["members"]] == ["Olivia"]
    # they can come back through the invite link
    assert join(app, erin, group).status_code == 302


def test_leaving_withdraws_only_one_s_own_open_votes(app, team, dave, new_client):
    owner, bob, carol, issue, group = team["owner"], team["bob"], team["carol"], team["issue"], team["group"]
    earlier = add_issue(app, owner, group, "DONE-1")
    for voter, card in ((bob, "40"), (carol, "3"), (dave, "3"), (owner, "3")):
        assert vote(voter, earlier, card).status_code == 302
    assert reveal(owner, earlier).status_code == 302
    erin = new_client("Erin")  # so that, Bob gone, three votes besides the facilitator's are left
    assert join(app, erin, group).status_code == 302
    for voter, card in ((bob, "40"), (carol, "5"), (dave, "5"), (erin, "5"), (owner, "8")):
        assert vote(voter, issue, card).status_code == 302
    assert issue_json(owner, issue)["votes_cast"] == 5

    assert bob.post(f"/groups/{group}/leave").status_code == 302
    state = issue_json(owner, issue)
    assert state["votes_cast"] == 4
    assert "Bob" not in [voter["nickname"] for voter in state["voters"]]
    assert all(voter["voted"] for voter in state["voters"])  # the others' votes stay
    assert rows(app, Ballot, user_id=user_id(app, "Bob")) == 1  # only the revealed round's
    assert reveal(owner, issue).status_code == 302
    assert issue_json(carol, issue)["result"]["distribution"] == {"5": 3, "8": 1}
    # the revealed round keeps everybody who took part
    assert issue_json(carol, earlier)["result"]["distribution"] == {"3": 3, "40": 1}
    assert issue_json(carol, earlier)["votes_cast"] == 4


def test_the_facilitator_cannot_leave(app, team):
    owner, group = team["owner"], team["group"]
    message = "The facilitator cannot leave: hand the group over to a member first, or delete it."
    assert message in followed(owner, owner.get(f"/groups/{group}/leave"))
    assert message in followed(owner, owner.post(f"/groups/{group}/leave"))
    state = group_json(owner, group)
    assert state["owner"] == "Olivia" and state["members"][0] == {"nickname": "Olivia", "role": "owner"}


def test_the_group_page_offers_leaving_to_members_only(app, team):
    leave = f'href="/groups/{team["group"]}/leave"'
    assert leave in text(team["bob"].get(f"/groups/{team['group']}"))
    assert leave not in text(team["owner"].get(f"/groups/{team['group']}"))


def test_outsiders_cannot_leave_a_group_they_are_not_in(app, team, outsider):
    assert outsider.get(f"/groups/{team['group']}/leave").status_code == 404
    assert outsider.post(f"/groups/{team['group']}/leave").status_code == 404


# --- hand over -----------------------------------------------------------------------------------


def hand_over(client, group_id: int, data: dict[str, object]):
    return client.post(f"/groups/{group_id}/owner", data=data)


def test_handing_over_makes_the_member_the_facilitator(app, team):
    owner, bob, group = team["owner"], team["bob"], team["group"]
    response = hand_over(owner, group, {"user_id": user_id(app, "Bob")})
    assert "Bob facilitates the group now; you are a member." in followed(owner, response)
    state = group_json(team["carol"], group)
    assert state["owner"] == "Bob"
    roles = {m["nickname"]: m["role"] for m in state["members"]}
    assert roles == {"Olivia": "member", "Bob": "owner", "Carol": "member"}
    # Bob has the owner's controls now, and Olivia a member's
    bob_page = text(bob.get(f"/groups/{group}"))
    assert "Add an issue" in bob_page and invite_path(app, group) in bob_page
    olivia_page = text(owner.get(f"/groups/{group}"))
    assert "Add an issue" not in olivia_page and invite_path(app, group) not in olivia_page
    assert owner.post(f"/groups/{group}/issues", data={"key": "OLD-1"}).status_code == 403
    assert bob.post(f"/groups/{group}/issues", data={"key": "NEW-1"}).status_code == 302
    assert bob.get(f"/groups/{group}/invite.svg").status_code == 200
    # Olivia votes as a member and may leave now
    assert vote(owner, team["issue"], "5").status_code == 302
    assert owner.post(f"/groups/{group}/leave").status_code == 302
    assert owner.get(f"/groups/{group}").status_code == 404


@pytest.mark.parametrize(
    "data, message",
    [
        ({}, "Choose the member to hand over to."),
        ({"user_id": ""}, "Choose the member to hand over to."),
        ({"user_id": "Bob"}, "Not a valid integer value."),
        ({"user_id": "0"}, "That person is not a member of this group."),
        ({"user_id": "-3"}, "That person is not a member of this group."),
    ],
)
def test_a_missing_or_bad_user_id_hands_nothing_over(app, team, data, message):
    owner, group = team["owner"], team["group"]
    assert message in followed(owner, hand_over(owner, group, data))
    assert group_json(owner, group)["owner"] == "Olivia"


@pytest.mark.parametrize("number", [str(2**31), str(2**63), "99999999999999999999"])
def test_a_user_id_too_big_for_the_database_is_refused_not_an_error(app, team, number):
    owner, group = team["owner"], team["group"]
    response = hand_over(owner, group, {"user_id": number})
    assert response.status_code == 302, f"user_id={number} answered {response.status_code}"
    page = followed(owner, response)
    assert "not a member of this group" in page or "Choose the member to hand over to." in page
    assert group_json(owner, group)["owner"] == "Olivia"


def test_handing_over_to_somebody_outside_the_group_or_to_oneself_is_refused(app, team, outsider):
    owner, group = team["owner"], team["group"]
    page = followed(owner, hand_over(owner, group, {"user_id": user_id(app, "Mallory")}))
    assert "That person is not a member of this group." in page
    page = followed(owner, hand_over(owner, group, {"user_id": user_id(app, "Olivia")}))
    assert "The facilitator's own role cannot be changed." in page
    state = group_json(owner, group)
    assert state["owner"] == "Olivia"
    assert {m["nickname"]: m["role"] for m in state["members"]}["Olivia"] == "owner"
    assert outsider.get(f"/groups/{group}").status_code == 404


def test_only_the_owner_hands_over(app, team, outsider):
    group = team["group"]
    assert hand_over(team["bob"], group, {"user_id": user_id(app, "Bob")}).status_code == 403
    assert hand_over(outsider, group, {"user_id": user_id(app, "Mallory")}).status_code == 404
    response = team["owner"].get(f"/groups/{group}/owner")
    assert (response.status_code, response.headers["Location"]) == (302, f"/groups/{group}")
    assert group_json(team["owner"], group)["owner"] == "Olivia"


# --- delete the group ----------------------------------------------------------------------------


def test_deleting_a_group_asks_first(app, team):
    owner, group = team["owner"], team["group"]
    response = owner.get(f"/groups/{group}/delete")
    assert response.status_code == 200
    page = visible(response)
    assert "Delete “Team Rocket”?" in page and "Delete the group" in page and "cannot be undone" in page
    assert f'action="/groups/{group}/delete"' in text(response)
    assert group_json(team["bob"], group)["name"] == "Team Rocket"


def test_deleting_a_group_deletes_everything_it_holds(app, team, new_client):
    owner, bob, carol, group, issue = team["owner"], team["bob"], team["carol"], team["group"], team["issue"]
    kept = create_group(owner, "Kept")  # another group of hers stays as it was
    kept_issue = add_issue(app, owner, kept, "KEEP-1")
    assert vote(owner, kept_issue, "8").status_code == 302
    kept_key = open_key_id(app, kept_issue)

    for voter, card in ((bob, "3"), (carol, "5"), (owner, "8")):
        assert vote(voter, issue, card).status_code == 302
    assert reveal(owner, issue).status_code == 302
    second = add_issue(app, owner, group, "PROJ-2")
    assert vote(bob, second, "13").status_code == 302
    assert owner.post(f"/issues/{second}/start").status_code == 302  # in the room
    key_id = open_key_id(app, second)
    invite = invite_path(app, group)

    response = owner.post(f"/groups/{group}/delete")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    dashboard = visible(owner.get("/"))
    assert "The group “Team Rocket” was deleted." in dashboard and "Kept" in dashboard
    for client in (owner, bob, carol):
        assert client.get(f"/groups/{group}").status_code == 404
        assert client.get(f"/api/groups/{group}").status_code == 404
        assert client.get(f"/issues/{issue}").status_code == 404
        assert "Team Rocket" not in visible(client.get("/"))
    assert new_client("Erin").get(invite).status_code == 404
    assert rows(app, Group, id=group) == 0
    assert rows(app, Membership, group_id=group) == 0
    assert rows(app, Issue, group_id=group) == 0
    assert rows(app, Issue) == 1
    assert rows(app, Round) == 1 and rows(app, Ballot) == 1  # the kept group's
    assert rows(app, Tally) == 0
    assert not key_exists(app, key_id), "the deleted group's open round kept its key"
    assert key_exists(app, kept_key)
    assert group_json(owner, kept)["issues"][0]["votes_cast"] == 1


def test_only_the_owner_deletes_a_group(app, team, outsider):
    group = team["group"]
    assert team["bob"].get(f"/groups/{group}/delete").status_code == 403
    assert team["bob"].post(f"/groups/{group}/delete").status_code == 403
    assert outsider.get(f"/groups/{group}/delete").status_code == 404
    assert outsider.post(f"/groups/{group}/delete").status_code == 404
    assert group_json(team["bob"], group)["name"] == "Team Rocket"


# --- remove a member -----------------------------------------------------------------------------


def test_removing_a_member_asks_first_then_removes(app, team):
    owner, group = team["owner"], team["group"]
    bob = user_id(app, "Bob")
    response = owner.get(f"/groups/{group}/members/{bob}/remove")
    assert response.status_code == 200
    assert "Remove Bob?" in visible(response)
    assert f'action="/groups/{group}/members/{bob}/remove"' in text(response)
    assert "<button" in text(response)
    assert "Bob" in [m["nickname"] for m in group_json(owner, group)["members"]]
    assert team["bob"].get(f"/groups/{group}/members/{bob}/remove").status_code == 403

    response = owner.post(f"/groups/{group}/members/{bob}/remove")
    assert "Bob was removed from the group." in followed(owner, response)
    assert "Bob" not in [m["nickname"] for m in group_json(owner, group)["members"]]
    assert team["bob"].get(f"/groups/{group}").status_code == 404


# --- the invite link as a QR code ----------------------------------------------------------------


def qr_text(svg: bytes) -> list[str]:
    """What a phone reads from the QR code: the SVG drawn on white, then decoded."""
    png = cairosvg.svg2png(bytestring=svg, background_color="white")
    return [found.text for found in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


def test_the_qr_code_holds_the_current_invite_link(app, team):
    owner, group = team["owner"], team["group"]
    response = owner.get(f"/groups/{group}/invite.svg")
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert "no-store" in response.headers["Cache-Control"]
    assert response.data.lstrip().startswith(b"<?xml") and b"<svg" in response.data
    old_link = f"http://localhost{invite_path(app, group)}"
    assert qr_text(response.data) == [old_link]
    assert f'src="/groups/{group}/invite.svg"' in text(owner.get(f"/groups/{group}"))

    assert owner.post(f"/groups/{group}/invite").status_code == 302
    new_link = f"http://localhost{invite_path(app, group)}"
    assert new_link != old_link
    assert qr_text(owner.get(f"/groups/{group}/invite.svg").data) == [new_link]


def test_only_the_owner_gets_the_qr_code(app, team, outsider):
    group = team["group"]
    assert team["bob"].get(f"/groups/{group}/invite.svg").status_code == 403
    assert "invite.svg" not in text(team["bob"].get(f"/groups/{group}"))
    assert outsider.get(f"/groups/{group}/invite.svg").status_code == 404
    response = app.test_client().get(f"/groups/{group}/invite.svg")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")


# --- limits --------------------------------------------------------------------------------------


def test_a_group_holds_at_most_1000_issues(app, team):
    owner, group = team["owner"], team["group"]
    with app.app_context():
        found = db.session.get(Group, group)
        assert found is not None
        rules.add_issues(found, [rules.NewIssue(f"BULK-{n}", "") for n in range(rules.MAX_ISSUES - 2)])
        db.session.commit()
    add_issue(app, owner, group, "LAST-1")  # the 1000th
    assert rows(app, Issue, group_id=group) == 1000
    response = owner.post(f"/groups/{group}/issues", data={"key": "ONE-MORE", "description": ""})
    assert response.status_code == 422
    assert "A group holds at most 1000 issues" in visible(response)
    assert rows(app, Issue, group_id=group) == 1000
    assert "ONE-MORE" not in json_order(owner, group)
    # deleting one makes room again
    assert owner.post(f"/issues/{team['issue']}/delete").status_code == 302
    add_issue(app, owner, group, "ONE-MORE")
    assert json_order(owner, group)[-1] == "ONE-MORE"


def test_a_group_holds_at_most_200_members(app, owner, new_client):
    group = create_group(owner)
    with app.app_context():
        for n in range(rules.MAX_MEMBERS - 2):
            nickname = f"member{n}"
            person = User(nickname=nickname, nickname_key=nickname, nickname_skeleton=nickname)
            db.session.add(person)
            db.session.flush()
            db.session.add(Membership(group_id=group, user_id=person.id, role=Role.MEMBER))
        db.session.commit()
    assert join(app, new_client("Number200"), group).status_code == 302
    assert rows(app, Membership, group_id=group) == 200
    late = new_client("Number201")
    response = join(app, late, group)
    assert response.status_code in (409, 422)
    assert "“Team Rocket” is full: a group has at most 200 members." in visible(response)
    assert rows(app, Membership, group_id=group) == 200
    assert late.get(f"/groups/{group}").status_code == 404


def own_groups(app, nickname: str, how_many: int) -> None:
    """Give somebody groups through the rules, as if they had made them one by one."""
    with app.app_context():
        person = db.session.scalar(sa.select(User).where(User.nickname == nickname))
        assert person is not None
        for n in range(how_many):
            rules.create_group(person, f"Group {n}", "range")
        db.session.commit()


def test_a_person_owns_at_most_100_groups(app, owner):
    own_groups(app, "Olivia", rules.MAX_OWNED_GROUPS - 1)
    hundredth = create_group(owner, "The hundredth")
    assert rows(app, Group) == 100
    response = owner.post("/groups", data={"name": "One too many", "deck": "range"})
    assert response.status_code == 422
    page = visible(response)
    assert "You facilitate 100 groups already, the most one person can." in page
    assert "My groups" in page  # the dashboard, not an error page
    assert rows(app, Group) == 100
    # deleting one makes room again
    assert owner.post(f"/groups/{hundredth}/delete").status_code == 302
    create_group(owner, "One too many")


def test_a_hand_over_never_makes_anybody_own_more_than_100_groups(app, team):
    """The limit is on what a person owns, however they came to own it."""
    owner, group = team["owner"], team["group"]
    own_groups(app, "Bob", rules.MAX_OWNED_GROUPS)
    page = followed(owner, hand_over(owner, group, {"user_id": user_id(app, "Bob")}))
    assert "100 groups" in page, "no message says why Bob cannot take the group"
    assert group_json(owner, group)["owner"] == "Olivia", "Bob owns 101 groups now"
