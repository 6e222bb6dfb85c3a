"""The room: the facilitator leads the team through the backlog, one current issue at a time.

Start and next, the room page for each kind of member, the settings auto_reveal and
facilitator_votes, the round timer, the facilitator's "everybody voted" cue, and the JSON fields.
"""

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from estimator.extensions import db
from estimator.groups.rules import move_issue
from estimator.models import Issue
from tests.conftest import add_issue, create_group, join, members_vote, vote
from tests.helpers import group_json, issue_json, text, visible


def title(response) -> str:
    """The page's <title>, as the browser tab shows it."""
    match = re.search(r"<title>(.*?)</title>", text(response), re.DOTALL)
    assert match is not None, "the page has no title"
    return " ".join(match.group(1).split())


def room(client, group_id: int):
    """The room page as the client sees it (it must be there)."""
    response = client.get(f"/groups/{group_id}/room")
    assert response.status_code == 200, text(response)[:2000]
    return response


def change_settings(client, group_id: int, **fields: str | list[str]):
    """POST the settings form with exactly these fields (a box as the page sends it: ["0", "y"])."""
    return client.post(f"/groups/{group_id}/settings", data=fields)


TICKED, UNTICKED = ["0", "y"], "0"


def settings_of(client, group_id: int) -> dict[str, Any]:
    settings: dict[str, Any] = group_json(client, group_id)["settings"]
    return settings


def reveal(client, issue_id: int, **query: str):
    return client.post(f"/issues/{issue_id}/reveal", query_string=query)


def estimate(app, team, issue_id: int, cards: tuple[str, str, str] = ("5", "8", "5")) -> None:
    """Bob, Carol and Dave (the `dave` fixture) vote, the round is revealed and 5 recorded: the
    issue is estimated."""
    members_vote(team, issue_id, cards)
    assert reveal(team["owner"], issue_id).status_code == 302
    assert team["owner"].post(f"/issues/{issue_id}/accept", data={"estimate": "5"}).status_code == 302
    assert issue_json(team["owner"], issue_id)["state"] == "estimated"


def start(client, issue_id: int):
    return client.post(f"/issues/{issue_id}/start")


def next_issue(client, group_id: int):
    return client.post(f"/groups/{group_id}/next")


@pytest.fixture
def backlog(app, team):
    """The team's group with four issues PROJ-1 … PROJ-4 in backlog order; their ids in order."""
    more = [add_issue(app, team["owner"], team["group"], f"PROJ-{n}", f"Story {n}") for n in (2, 3, 4)]
    return [team["issue"], *more]


# --- POST /issues/<id>/start ---------------------------------------------------------------------


def test_start_puts_the_issue_in_everybody_s_room(app, team, backlog):
    owner, group = team["owner"], team["group"]
    response = start(owner, backlog[2])
    assert response.status_code == 302 and response.headers["Location"] == f"/groups/{group}/room"
    assert "PROJ-3 is in the room: the team can vote." in visible(room(owner, group))
    assert group_json(team["bob"], group)["current_issue"] == backlog[2]
    for viewer in (owner, team["bob"], team["carol"]):
        page = room(viewer, group)
        assert re.search(r"<h1[^>]*>PROJ-3</h1>", text(page)) and "Story 3" in visible(page)
    # another issue replaces it: there is only ever one current issue
    assert start(owner, backlog[0]).status_code == 302
    assert group_json(team["carol"], group)["current_issue"] == backlog[0]
    assert re.search(r"<h1[^>]*>PROJ-1</h1>", text(room(team["carol"], group)))


def test_start_keeps_the_votes_of_an_open_round(app, team, backlog):
    assert vote(team["bob"], backlog[1], "8").status_code == 302
    assert start(team["owner"], backlog[1]).status_code == 302
    state = issue_json(team["owner"], backlog[1])
    assert (state["state"], state["round"], state["votes_cast"]) == ("voting", 1, 1)
    assert "1 of 3" in visible(room(team["carol"], team["group"]))


def test_starting_an_estimated_issue_opens_a_new_round(app, team, dave):
    owner, issue = team["owner"], team["issue"]
    estimate(app, team, issue)
    assert start(owner, issue).status_code == 302
    state = issue_json(team["bob"], issue)
    assert state["state"] == "voting" and state["round"] == 2
    assert state["final_estimate"] is None and state["result"] is None and state["votes_cast"] == 0
    assert [h["round"] for h in state["history"]] == [1]
    assert state["history"][0]["result"]["distribution"] == {"5": 2, "8": 1}
    page = room(team["bob"], team["group"])
    assert "round 2" in visible(page) and 'name="value"' in text(page)  # Bob can vote again
    assert "Final estimate:" not in visible(page)
    status = visible(team["bob"].get(f"/issues/{issue}"))
    assert "Earlier rounds" in status and "Round 1" in status


def test_starting_a_revealed_issue_keeps_its_result(app, team, dave):
    owner, issue = team["owner"], team["issue"]
    members_vote(team, issue, ("3", "3", "3"))
    assert reveal(owner, issue).status_code == 302
    assert start(owner, issue).status_code == 302
    state = issue_json(owner, issue)
    assert (state["state"], state["round"], state["result"]["votes"]) == ("revealed", 1, 3)
    assert "Result of round 1" in visible(room(team["bob"], team["group"]))


def test_get_start_goes_to_the_room_and_changes_nothing(app, team):
    response = team["owner"].get(f"/issues/{team['issue']}/start")
    assert response.status_code == 302 and response.headers["Location"] == f"/groups/{team['group']}/room"
    assert group_json(team["owner"], team["group"])["current_issue"] is None


def test_only_the_facilitator_starts_an_issue(app, team, outsider):
    issue, group = team["issue"], team["group"]
    response = start(team["bob"], issue)
    assert response.status_code == 403 and "Only the group's facilitator" in visible(response)
    assert start(outsider, issue).status_code == 404
    assert start(team["owner"], 999_999).status_code == 404
    assert group_json(team["owner"], group)["current_issue"] is None


def test_starting_an_issue_of_another_group_is_not_found(app, team, new_client):
    """Olivia owns the team; Bob owns a group of his own that she is not in."""
    bobs_group = create_group(team["bob"], "Bob's side project")
    bobs_issue = add_issue(app, team["bob"], bobs_group, "SIDE-1")
    response = start(team["owner"], bobs_issue)
    assert response.status_code == 404
    assert group_json(team["bob"], bobs_group)["current_issue"] is None
    assert group_json(team["owner"], team["group"])["current_issue"] is None


def test_start_needs_a_login(app, team):
    response = app.test_client().post(f"/issues/{team['issue']}/start")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/login?next=/issues/{team['issue']}/start"


# --- POST /groups/<id>/next ----------------------------------------------------------------------


def test_next_starts_with_the_first_issue(app, team, backlog):
    response = next_issue(team["owner"], team["group"])
    assert response.status_code == 302 and response.headers["Location"] == f"/groups/{team['group']}/room"
    assert group_json(team["bob"], team["group"])["current_issue"] == backlog[0]
    assert re.search(r"<h1[^>]*>PROJ-1</h1>", text(room(team["bob"], team["group"])))


def test_next_skips_estimated_issues_and_wraps_round(app, team, backlog, dave):
    owner, group = team["owner"], team["group"]
    estimate(app, team, backlog[2])  # PROJ-3
    start(owner, backlog[1])  # PROJ-2
    assert next_issue(owner, group).status_code == 302
    assert group_json(owner, group)["current_issue"] == backlog[3]  # PROJ-3 is done: PROJ-4
    assert next_issue(owner, group).status_code == 302
    assert group_json(owner, group)["current_issue"] == backlog[0]  # round to the start
    assert next_issue(owner, group).status_code == 302
    assert group_json(owner, group)["current_issue"] == backlog[1]


def test_next_follows_the_backlog_order(app, team, backlog):
    """The facilitator has moved PROJ-4 to the top of the backlog: 4, 1, 2, 3."""
    owner, group = team["owner"], team["group"]
    with app.app_context():  # the backlog's own order rule, as its move button applies it
        move_issue(db.get_or_404(Issue, backlog[3]), "top")
        db.session.commit()
    assert [i["key"] for i in group_json(owner, group)["issues"]][:2] == ["PROJ-4", "PROJ-1"]
    next_issue(owner, group)
    assert group_json(owner, group)["current_issue"] == backlog[3]
    next_issue(owner, group)
    assert group_json(owner, group)["current_issue"] == backlog[0]
    start(owner, backlog[2])  # the last one: next wraps round to the top
    next_issue(owner, group)
    assert group_json(owner, group)["current_issue"] == backlog[3]


def test_next_comes_back_to_the_current_issue_when_it_is_the_only_one_left(app, team, backlog, dave):
    owner, group = team["owner"], team["group"]
    for issue in backlog[1:]:
        estimate(app, team, issue)
    start(owner, backlog[0])
    assert next_issue(owner, group).status_code == 302
    assert group_json(owner, group)["current_issue"] == backlog[0]


def test_when_every_issue_is_estimated_the_room_says_so(app, team, backlog, dave):
    owner, group = team["owner"], team["group"]
    for issue in backlog:
        estimate(app, team, issue)
    start(owner, backlog[3])  # re-opens PROJ-4 …
    estimate(app, team, backlog[3])  # … which is estimated again
    response = next_issue(owner, group)
    assert response.status_code == 302 and response.headers["Location"] == f"/groups/{group}/room"
    assert group_json(owner, group)["current_issue"] is None
    assert "Every issue is estimated" in visible(owner.get(f"/groups/{group}/room"))
    for viewer in (owner, team["bob"]):
        page = visible(room(viewer, group))
        assert "All 4 issues are estimated." in page
        assert "Waiting for the facilitator to pick an issue" not in page
        assert "Your estimate" not in page


def test_get_next_goes_to_the_room_and_changes_nothing(app, team):
    response = team["owner"].get(f"/groups/{team['group']}/next")
    assert response.status_code == 302 and response.headers["Location"] == f"/groups/{team['group']}/room"
    assert group_json(team["owner"], team["group"])["current_issue"] is None


def test_only_the_facilitator_moves_the_room_on(app, team, outsider):
    group = team["group"]
    response = next_issue(team["carol"], group)
    assert response.status_code == 403 and "Only the group's facilitator" in visible(response)
    assert next_issue(outsider, group).status_code == 404
    assert next_issue(team["owner"], 999_999).status_code == 404
    assert group_json(team["owner"], group)["current_issue"] is None


# --- GET /groups/<id>/room -----------------------------------------------------------------------


def test_before_anything_is_current_members_wait_for_the_facilitator(app, team):
    group = team["group"]
    for member in (team["bob"], team["carol"]):
        page = visible(room(member, group))
        assert "Waiting for the facilitator to pick an issue" in page
        assert "Your estimate" not in page and "Next issue" not in page
    owners = room(team["owner"], group)
    assert "No issue is in the room yet" in visible(owners)
    assert f'action="/groups/{group}/next"' in text(owners)


def test_the_group_page_links_to_the_room(app, team):
    for viewer in (team["owner"], team["bob"]):
        assert f'href="/groups/{team["group"]}/room"' in text(viewer.get(f"/groups/{team['group']}"))


def test_a_member_sees_the_issue_the_deck_and_the_progress(app, team):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    other = add_issue(app, owner, group, "PROJ-9", "Export the backlog as CSV")
    start(owner, other)
    vote(team["carol"], other, "13")
    vote(team["bob"], issue, "1")  # a vote on another issue does not count here
    response = room(team["bob"], group)
    page = visible(response)
    assert re.search(r"<h1[^>]*>PROJ-9</h1>", text(response))
    assert "Export the backlog as CSV" in page
    assert 'name="value"' in text(response) and "Your estimate" in page  # the deck
    assert "1 of 3" in page  # the progress
    assert re.search(r"Carol</span>\s*<span class=\"text-success\"", text(response))
    assert re.search(r"Bob</span>\s*<span class=\"text-body-secondary\">not yet", text(response))
    assert "13" not in page  # nobody sees Carol's card
    assert "Reveal votes" not in page and "Next issue" not in page  # no facilitator controls


def test_the_room_shows_the_result_after_the_reveal(app, team, dave):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    start(owner, issue)
    members_vote(team, issue, ("3", "8", "8"))
    reveal(owner, issue, back="room")
    page = visible(room(team["bob"], group))
    assert "Result of round 1" in page and "Suggestion" in page
    assert "Waiting for the facilitator to record the final estimate" in page
    assert 'name="value"' not in text(room(team["bob"], group))  # no deck once revealed


def test_an_observer_sees_the_room_without_a_deck(app, team, new_client):
    otto = new_client("Otto")
    join(app, otto, team["group"], role="observer")
    start(team["owner"], team["issue"])
    response = room(otto, team["group"])
    assert re.search(r"<h1[^>]*>PROJ-1</h1>", text(response))
    assert 'name="value"' not in text(response) and "You are observing" in visible(response)
    assert "0 of 3" in visible(response)  # Otto is not waited for


def test_the_facilitator_sees_the_controls_that_come_back_to_the_room(app, team, dave):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    start(owner, issue)
    page = room(owner, group)
    assert f'action="/issues/{issue}/timer?back=room"' in text(page) and "Start timer" in visible(page)
    assert f'action="/groups/{group}/next"' in text(page) and "Next issue" in visible(page)
    assert "3 more needed" in visible(page)
    assert "/reveal" not in text(page) and "Reveal votes" not in visible(page)  # nothing to press yet
    members_vote(team, issue, ("3", "8", "8"))
    page = room(owner, group)
    assert f'action="/issues/{issue}/reveal?back=room"' in text(page) and "Reveal votes" in visible(page)
    reveal(owner, issue, back="room")
    page = room(owner, group)
    assert f'action="/issues/{issue}/accept?back=room"' in text(page)
    assert 'value="Record final estimate"' in text(page)
    assert f'action="/issues/{issue}/revote?back=room"' in text(page) and "Vote again" in visible(page)


def test_revote_from_the_room_comes_back_to_the_room(app, team, dave):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    start(owner, issue)
    members_vote(team, issue, ("5", "5", "5"))
    reveal(owner, issue, back="room")
    response = owner.post(f"/issues/{issue}/revote", query_string={"back": "room"})
    assert response.status_code == 302 and response.headers["Location"] == f"/groups/{group}/room"
    assert "round 2" in visible(room(team["bob"], group))


def test_the_room_is_for_members_only(app, team, outsider):
    group, client = team["group"], app.test_client()
    assert outsider.get(f"/groups/{group}/room").status_code == 404
    assert team["owner"].get("/groups/999999/room").status_code == 404
    response = client.get(f"/groups/{group}/room")
    assert response.status_code == 302 and response.headers["Location"] == f"/login?next=/groups/{group}/room"


def test_running_one_issue_takes_the_facilitator_three_posts_and_each_member_one(app, team, dave):
    """The facilitator only facilitates; Bob, Carol and Dave vote."""
    owner, group, issue = team["owner"], team["group"], team["issue"]
    assert change_settings(owner, group, facilitator_votes=UNTICKED).status_code == 302
    room_url = f"/groups/{group}/room"

    response = next_issue(owner, group)  # 1
    assert response.status_code == 302 and response.headers["Location"] == room_url
    for member, card in ((team["bob"], "3"), (team["carol"], "5"), (dave, "8")):
        assert vote(member, issue, card).status_code == 302  # one POST each
    response = reveal(owner, issue, back="room")  # 2
    assert response.status_code == 302 and response.headers["Location"] == room_url
    suggestion = re.search(r'id="estimate" name="estimate"[^>]*value="(\d+)"', text(room(owner, group)))
    assert suggestion is not None and suggestion.group(1) == "5"
    response = owner.post(f"/issues/{issue}/accept?back=room", data={"estimate": suggestion.group(1)})  # 3
    assert response.status_code == 302 and response.headers["Location"] == room_url

    state = issue_json(team["bob"], issue)
    assert (state["state"], state["final_estimate"], state["result"]["votes"]) == ("estimated", "5", 3)
    assert "Final estimate: 5" in visible(room(team["bob"], group))


# --- settings: auto_reveal -----------------------------------------------------------------------


def test_auto_reveal_reveals_with_the_vote_that_completes_the_round(app, team, dave):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    assert change_settings(owner, group, auto_reveal=TICKED, facilitator_votes=TICKED).status_code == 302
    assert settings_of(owner, group) == {
        "auto_reveal": True,
        "min_votes": 3,
        "facilitator_votes": True,
        "present_only": False,
    }
    start(owner, issue)
    vote(owner, issue, "8")
    vote(team["bob"], issue, "3")
    vote(team["carol"], issue, "5")
    assert issue_json(owner, issue)["state"] == "voting"
    assert vote(dave, issue, "8").status_code == 302  # the last expected voter
    state = issue_json(team["bob"], issue)
    assert state["state"] == "revealed" and state["result"]["distribution"] == {"3": 1, "5": 1, "8": 2}
    assert "Result of round 1" in visible(room(team["carol"], group))


def test_auto_reveal_waits_for_every_expected_voter(app, team, dave):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    change_settings(owner, group, auto_reveal=TICKED)
    for voter in (team["bob"], team["carol"], dave):  # enough for the threshold, but Olivia is missing
        vote(voter, issue, "5")
    assert issue_json(owner, issue)["state"] == "voting"
    vote(owner, issue, "5")
    assert issue_json(owner, issue)["state"] == "revealed"


def test_auto_reveal_does_not_reveal_below_the_threshold(app, team):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    change_settings(owner, group, auto_reveal=TICKED)
    vote(team["bob"], issue, "8")
    vote(team["carol"], issue, "5")
    assert vote(owner, issue, "5").status_code == 302  # everybody voted: two cards besides Olivia's
    state = issue_json(owner, issue)
    assert state["state"] == "voting" and state["votes_cast"] == 3 and state["result"] is None
    # the facilitator is told why the round cannot be revealed
    response = reveal(owner, issue)
    assert response.status_code == 302
    assert "1 more vote is needed" in visible(owner.get(f"/issues/{issue}"))
    assert issue_json(owner, issue)["state"] == "voting"


def test_auto_reveal_is_never_set_off_by_a_changed_card(app, team, dave):
    """Changing a card in a round everybody has voted in must not reveal it: the reveal would tell
    everybody that this voter had changed their card, and so that it had been something else."""
    owner, group, issue = team["owner"], team["group"], team["issue"]
    vote(team["bob"], issue, "?")
    vote(team["carol"], issue, "5")
    vote(owner, issue, "5")
    vote(dave, issue, "5")
    assert change_settings(owner, group, auto_reveal=TICKED).status_code == 302  # after the last vote
    assert issue_json(owner, issue)["state"] == "voting"
    vote(team["bob"], issue, "8")
    assert issue_json(owner, issue)["state"] == "voting"
    assert reveal(owner, issue).status_code == 302  # the facilitator can
    assert issue_json(owner, issue)["result"]["distribution"] == {"5": 3, "8": 1}


def test_without_auto_reveal_the_completing_vote_reveals_nothing(app, team, dave):
    issue = team["issue"]
    for voter in (team["bob"], team["carol"], dave, team["owner"]):
        vote(voter, issue, "5")
    assert issue_json(team["owner"], issue)["state"] == "voting"
    assert reveal(team["owner"], issue).status_code == 302 and issue_json(dave, issue)["state"] == "revealed"


# --- settings: facilitator_votes -----------------------------------------------------------------


def test_a_facilitator_who_does_not_vote_is_not_waited_for(app, team, dave):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    assert change_settings(owner, group, facilitator_votes=UNTICKED).status_code == 302
    start(owner, issue)
    vote(team["bob"], issue, "3")
    state = issue_json(owner, issue)
    assert [v["nickname"] for v in state["voters"]] == ["Bob", "Carol", "Dave"]
    assert (state["votes_cast"], state["votes_expected"]) == (1, 3)
    assert group_json(owner, group)["issues"][0]["votes_expected"] == 3
    for viewer in (owner, team["bob"]):
        assert "1 of 3" in visible(room(viewer, group))
    page = room(owner, group)
    assert 'name="value"' not in text(page) and "You facilitate without voting" in visible(page)

    response = vote(owner, issue, "5")
    assert response.status_code == 403 and "without voting" in text(response)
    assert owner.get(f"/issues/{issue}/estimate").status_code == 403

    # but every facilitator power stays
    vote(team["carol"], issue, "5")
    vote(dave, issue, "8")
    assert reveal(owner, issue, back="room").status_code == 302
    assert issue_json(owner, issue)["result"]["votes"] == 3  # no card of Olivia's
    assert owner.post(f"/issues/{issue}/accept", data={"estimate": "5"}).status_code == 302
    assert issue_json(owner, issue)["state"] == "estimated"
    add_issue(app, owner, group, "PROJ-2")
    assert next_issue(owner, group).status_code == 302
    assert group_json(owner, group)["current_issue"] != issue


def test_a_facilitator_who_stops_voting_keeps_the_card_already_cast(app, team, dave):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    assert vote(owner, issue, "13").status_code == 302
    assert change_settings(owner, group, facilitator_votes=UNTICKED).status_code == 302
    state = issue_json(owner, issue)
    assert {"nickname": "Olivia", "voted": True} in state["voters"] and state["votes_cast"] == 1
    members_vote(team, issue, ("5", "5", "5"))
    assert reveal(owner, issue).status_code == 302
    assert issue_json(owner, issue)["result"]["distribution"] == {"13": 1, "5": 3}


def test_a_facilitator_who_votes_again_is_waited_for_again(app, team):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    change_settings(owner, group, facilitator_votes=UNTICKED)
    assert issue_json(owner, issue)["votes_expected"] == 2
    change_settings(owner, group, facilitator_votes=TICKED)
    assert issue_json(owner, issue)["votes_expected"] == 3
    assert vote(owner, issue, "5").status_code == 302


def test_auto_reveal_without_the_facilitator_s_card(app, team, dave):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    change_settings(owner, group, auto_reveal=TICKED, facilitator_votes=UNTICKED)
    for member in (team["bob"], team["carol"], dave):
        vote(member, issue, "5")
    assert issue_json(owner, issue)["state"] == "revealed"


# --- settings: the form --------------------------------------------------------------------------


def test_the_settings_form_sends_a_hidden_zero_before_each_box(app, team):
    page = text(team["owner"].get(f"/groups/{team['group']}"))
    for name in ("auto_reveal", "facilitator_votes"):
        assert re.search(
            rf'<input type="hidden" name="{name}" value="0">\s*.*?name="{name}"', page, re.DOTALL
        )
    # the defaults: no auto-reveal, the facilitator votes
    assert re.search(
        r'<input[^>]*checked[^>]*name="facilitator_votes"|name="facilitator_votes"[^>]*checked', page
    )
    assert not re.search(r'<input[^>]*checked[^>]*name="auto_reveal"|name="auto_reveal"[^>]*checked', page)


@pytest.mark.parametrize(
    "sent, expected",
    [
        ({"auto_reveal": TICKED, "facilitator_votes": TICKED}, (True, True)),  # both boxes ticked
        ({"auto_reveal": "0", "facilitator_votes": "0"}, (False, False)),  # both unticked
        ({"auto_reveal": TICKED, "facilitator_votes": "0"}, (True, False)),
        ({"auto_reveal": "y"}, (True, True)),  # facilitator_votes left out: unchanged
        ({"facilitator_votes": "0"}, (False, False)),  # auto_reveal left out: unchanged
        ({}, (False, True)),  # nothing mentioned: nothing changes
    ],
)
def test_checkbox_settings(app, team, sent, expected):
    owner, group = team["owner"], team["group"]
    response = change_settings(owner, group, **sent)
    assert response.status_code == 302 and response.headers["Location"] == f"/groups/{group}"
    settings = settings_of(owner, group)
    assert (settings["auto_reveal"], settings["facilitator_votes"]) == expected
    assert settings["min_votes"] == 3  # not sent, so unchanged


def test_a_setting_left_out_keeps_a_value_that_was_changed(app, team):
    owner, group = team["owner"], team["group"]
    change_settings(owner, group, auto_reveal=TICKED, facilitator_votes="0", min_votes="5")
    change_settings(owner, group, min_votes="4")
    assert settings_of(owner, group) == {
        "auto_reveal": True,
        "min_votes": 4,
        "facilitator_votes": False,
        "present_only": False,
    }
    change_settings(owner, group, auto_reveal="0")
    assert settings_of(owner, group) == {
        "auto_reveal": False,
        "min_votes": 4,
        "facilitator_votes": False,
        "present_only": False,
    }
    page = text(owner.get(f"/groups/{group}"))
    assert not re.search(r'name="facilitator_votes"[^>]*checked|checked[^>]*name="facilitator_votes"', page)


@pytest.mark.parametrize("min_votes", ["0", "21", "-1", "abc", "", "2.5"])
def test_a_bad_threshold_changes_no_setting(app, team, min_votes):
    owner, group = team["owner"], team["group"]
    response = change_settings(owner, group, auto_reveal=TICKED, facilitator_votes="0", min_votes=min_votes)
    assert response.status_code == 422
    page = visible(response)
    assert "Choose a whole number from 1 to 20" in page or "Please give a number of votes" in page
    assert settings_of(owner, group) == {
        "auto_reveal": False,
        "min_votes": 3,
        "facilitator_votes": True,
        "present_only": False,
    }


def test_only_the_facilitator_changes_the_settings(app, team, outsider):
    group = team["group"]
    response = change_settings(team["bob"], group, auto_reveal=TICKED)
    assert response.status_code == 403
    assert change_settings(outsider, group, auto_reveal=TICKED).status_code == 404
    assert settings_of(team["owner"], group)["auto_reveal"] is False


# --- the timer -----------------------------------------------------------------------------------


def set_timer(client, issue_id: int, seconds: str | None = None, **query: str):
    data = {} if seconds is None else {"seconds": seconds}
    return client.post(f"/issues/{issue_id}/timer", data=data, query_string=query)


def ends_at(client, issue_id: int) -> datetime | None:
    """The issue's timer_ends_at as the JSON sends it: ISO 8601 UTC with "Z", to the second."""
    value = issue_json(client, issue_id)["timer_ends_at"]
    if value is None:
        return None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value), value
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@pytest.mark.parametrize("seconds", [10, 60, 3600])
def test_the_timer_runs_for_the_seconds_given(app, team, seconds):
    owner, issue = team["owner"], team["issue"]
    before = datetime.now(UTC)
    response = set_timer(owner, issue, str(seconds))
    assert response.status_code == 302 and response.headers["Location"] == f"/issues/{issue}"
    ends = ends_at(team["bob"], issue)
    assert ends is not None
    assert (
        before + timedelta(seconds=seconds - 2) <= ends <= datetime.now(UTC) + timedelta(seconds=seconds + 1)
    )
    assert "The timer is running." in visible(owner.get(f"/issues/{issue}"))


def test_every_open_page_shows_the_countdown(app, team):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    start(owner, issue)
    response = set_timer(owner, issue, "120", back="room")
    assert response.status_code == 302 and response.headers["Location"] == f"/groups/{group}/room"
    for viewer in (owner, team["bob"]):
        for page in (room(viewer, group), viewer.get(f"/issues/{issue}")):
            assert "Time left:" in visible(page)
            left = re.search(r'data-seconds-left="(\d+)"', text(page))
            assert left is not None and 110 <= int(left.group(1)) <= 120
            assert re.search(r">\s*[12]:\d\d\s*<", text(page))  # 2:00 or 1:59 …
    assert "Stop the timer" in visible(room(owner, group))
    assert "Stop the timer" not in visible(room(team["bob"], group))


def test_zero_stops_the_timer(app, team):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    start(owner, issue)
    set_timer(owner, issue, "60")
    response = set_timer(owner, issue, "0", back="room")
    assert response.status_code == 302 and response.headers["Location"] == f"/groups/{group}/room"
    assert ends_at(owner, issue) is None
    assert "The timer is stopped." in visible(room(owner, group))
    assert "Time left" not in visible(room(team["bob"], group))


@pytest.mark.parametrize(
    "seconds, reason",
    [
        ("9", "A timer runs 10 to 3600 seconds"),
        ("3601", "A timer runs 10 to 3600 seconds"),
        ("-1", "A timer runs 10 to 3600 seconds"),
        ("abc", "Not a valid integer"),
        ("", "Please give the timer's length in seconds"),
        (None, "Please give the timer's length in seconds"),
    ],
)
def test_a_bad_timer_length_changes_nothing_and_says_why(app, team, seconds, reason):
    owner, issue = team["owner"], team["issue"]
    set_timer(owner, issue, "60")
    running = ends_at(owner, issue)
    response = set_timer(owner, issue, seconds)
    assert response.status_code == 302 and response.headers["Location"] == f"/issues/{issue}"
    assert reason in visible(owner.get(f"/issues/{issue}"))
    assert ends_at(owner, issue) == running


def test_the_reveal_ends_the_timer_and_a_revealed_round_refuses_one(app, team, dave):
    owner, issue = team["owner"], team["issue"]
    set_timer(owner, issue, "300")
    members_vote(team, issue, ("5", "5", "5"))
    reveal(owner, issue)
    assert ends_at(owner, issue) is None
    response = set_timer(owner, issue, "60")
    assert response.status_code == 302
    assert "this round is already revealed" in visible(owner.get(f"/issues/{issue}"))
    assert ends_at(owner, issue) is None
    assert "Time left" not in visible(team["bob"].get(f"/issues/{issue}"))
    # the next round starts without one
    owner.post(f"/issues/{issue}/revote")
    assert ends_at(owner, issue) is None
    assert set_timer(owner, issue, "60").status_code == 302 and ends_at(owner, issue) is not None


def test_an_auto_reveal_ends_the_timer(app, team, dave):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    change_settings(owner, group, auto_reveal=TICKED)
    set_timer(owner, issue, "300")
    for voter in (team["bob"], team["carol"], dave, owner):
        vote(voter, issue, "5")
    assert issue_json(owner, issue)["state"] == "revealed" and ends_at(owner, issue) is None


def test_only_the_facilitator_sets_the_timer(app, team, outsider):
    issue = team["issue"]
    assert set_timer(team["bob"], issue, "60").status_code == 403
    assert set_timer(outsider, issue, "60").status_code == 404
    assert set_timer(team["owner"], 999_999, "60").status_code == 404
    assert ends_at(team["owner"], issue) is None
    response = team["owner"].get(f"/issues/{issue}/timer")
    assert response.status_code == 302 and response.headers["Location"] == f"/issues/{issue}"
    response = team["owner"].get(f"/issues/{issue}/timer?back=room")
    assert response.headers["Location"] == f"/groups/{team['group']}/room"


# --- the facilitator's "everybody voted" cue ----------------------------------------------------


def refusal(client, issue_id: int) -> list[str]:
    """Ask for the reveal as the facilitator, and read the messages of the page shown afterwards
    (those of earlier steps are shown, and so cleared, first)."""
    client.get(f"/issues/{issue_id}")
    page = text(client.post(f"/issues/{issue_id}/reveal", follow_redirects=True))
    found = re.findall(r'<div class="alert alert-\w+ alert-dismissible[^>]*>(.*?)<button', page, re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", message).split()) for message in found]


def test_the_facilitator_is_told_when_everybody_has_voted(app, team, dave):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    start(owner, issue)
    vote(team["bob"], issue, "5")
    vote(team["carol"], issue, "8")
    vote(dave, issue, "?")
    for page in (room(owner, group), owner.get(f"/issues/{issue}")):
        assert "Everybody has voted" not in visible(page) and "All voted" not in title(page)
        assert "3 of 4 voted — 1 missing" in visible(page)
    vote(owner, issue, "5")
    for page in (room(owner, group), owner.get(f"/issues/{issue}")):
        assert "Everybody has voted. You can reveal." in visible(page)
        assert title(page).startswith("All voted — PROJ-1")
    for member in (team["bob"], team["carol"]):
        for page in (room(member, group), member.get(f"/issues/{issue}")):
            assert "Everybody has voted" not in visible(page) and "All voted" not in title(page)
        assert "All votes are in. Waiting for the facilitator to reveal." in visible(room(member, group))
    reveal(owner, issue)
    for page in (room(owner, group), owner.get(f"/issues/{issue}")):
        assert "Everybody has voted" not in visible(page) and "All voted" not in title(page)


def test_the_cue_does_not_wait_for_a_facilitator_who_does_not_vote(app, team, dave):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    change_settings(owner, group, facilitator_votes="0")
    start(owner, issue)
    vote(team["bob"], issue, "5")
    vote(team["carol"], issue, "5")
    assert "All voted" not in title(room(owner, group))
    vote(dave, issue, "5")
    assert title(room(owner, group)).startswith("All voted — ")
    assert "Everybody has voted" in visible(room(owner, group))


def test_everybody_having_voted_is_no_cue_while_a_reveal_would_be_refused(app, team):
    """Olivia, Bob and Carol have all voted, but only two of the cards are not the facilitator's:
    nothing tells Olivia to reveal, there is nothing to press, and the members are told why they wait."""
    owner, group, issue = team["owner"], team["group"], team["issue"]
    start(owner, issue)
    for voter, card in ((team["bob"], "5"), (team["carol"], "8"), (owner, "13")):
        assert vote(voter, issue, card).status_code == 302
    assert issue_json(owner, issue)["votes_cast"] == 3
    for page in (room(owner, group), owner.get(f"/issues/{issue}")):
        assert "3 of 3 voted." in visible(page)
        assert "Everybody has voted" not in visible(page) and "You can reveal" not in visible(page)
        assert "All voted" not in title(page)
        assert "/reveal" not in text(page) and "Reveal votes" not in visible(page)
        assert "1 more needed" in visible(page)
    for member in (team["bob"], team["carol"]):
        page = visible(room(member, group))
        assert "All votes are in, but a reveal needs 1 more vote" in page
        assert "Waiting for the facilitator to reveal" not in page
    assert any("1 more vote is needed" in message for message in refusal(owner, issue))
    assert issue_json(owner, issue)["state"] == "voting"


def test_a_question_mark_counts_and_the_facilitator_s_card_never_does(app, team, new_client):
    """With the default threshold of 3, Bob, Carol and Dave voting 5, "?" and 8 make a round the
    room offers to reveal, and the reveal is accepted. Two members and the facilitator do not, and
    each refusal on the way reads the same whatever the cards cast so far."""
    owner, group = team["owner"], team["group"]
    dave = new_client("Dave")
    assert join(app, dave, group).status_code == 302
    # Bob, Carol and Olivia: a "?" where another issue gets a number, and each refusal compared
    refused: dict[str, list[list[str]]] = {}
    for key, cards in (("UNSURE-1", ("5", "?", "8")), ("NUMBER-1", ("5", "8", "8"))):
        issue = add_issue(app, owner, group, key)
        start(owner, issue)
        refused[key] = [refusal(owner, issue)]
        for voter, card in zip((team["bob"], team["carol"], owner), cards, strict=True):
            assert vote(voter, issue, card).status_code == 302
            refused[key].append(refusal(owner, issue))
        page = room(owner, group)
        assert "You can reveal" not in visible(page) and "All voted" not in title(page)
        assert f'action="/issues/{issue}/reveal' not in text(page)
        assert issue_json(owner, issue)["state"] == "voting"
    assert refused["UNSURE-1"] == refused["NUMBER-1"]
    needed = [" ".join(messages) for messages in refused["NUMBER-1"]]
    for more, messages in zip(
        ("3 more votes", "2 more votes", "1 more vote", "1 more vote"), needed, strict=True
    ):
        assert f"{more} " in messages, messages
    # Bob, Carol and Dave: 5, "?" and 8 are enough
    issue = add_issue(app, owner, group, "PROJ-2")
    start(owner, issue)
    for voter, card in ((team["bob"], "5"), (team["carol"], "?"), (dave, "8")):
        assert vote(voter, issue, card).status_code == 302
    assert "You can reveal" not in visible(room(owner, group))  # Olivia has not voted
    assert f'action="/issues/{issue}/reveal?back=room"' in text(room(owner, group))
    assert vote(owner, issue, "13").status_code == 302
    page = room(owner, group)
    assert "Everybody has voted. You can reveal." in visible(page)
    assert title(page).startswith("All voted — PROJ-2")
    assert reveal(owner, issue, back="room").status_code == 302
    result = issue_json(team["bob"], issue)["result"]
    assert result["votes"] == 4 and result["unsure"] == 1


# --- JSON ----------------------------------------------------------------------------------------


def test_the_group_json_names_the_current_issue_and_the_settings(app, team):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    state = group_json(team["bob"], group)
    assert state["current_issue"] is None
    assert state["settings"] == {
        "auto_reveal": False,
        "min_votes": 3,
        "facilitator_votes": True,
        "present_only": False,
    }
    start(owner, issue)
    change_settings(owner, group, auto_reveal=TICKED, facilitator_votes="0", min_votes="4")
    state = group_json(team["carol"], group)
    assert state["current_issue"] == issue
    assert state["settings"] == {
        "auto_reveal": True,
        "min_votes": 4,
        "facilitator_votes": False,
        "present_only": False,
    }
    assert issue_json(team["carol"], issue)["timer_ends_at"] is None


@pytest.mark.parametrize("kind", ["issues", "groups"])
def test_start_next_and_the_timer_change_the_etag(app, team, kind):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    add_issue(app, owner, group, "PROJ-2")
    path = f"/api/{kind}/{issue if kind == 'issues' else group}"
    actions = [
        lambda: start(owner, issue),
        lambda: next_issue(owner, group),
        lambda: set_timer(owner, issue, "60"),
        lambda: set_timer(owner, issue, "0"),
    ]
    tag = team["bob"].get(path).headers["ETag"]
    for action in actions:
        assert action().status_code == 302
        changed = team["bob"].get(path, headers={"If-None-Match": tag})
        assert changed.status_code == 200 and changed.headers["ETag"] != tag
        tag = changed.headers["ETag"]
    # a refused timer and a GET change nothing
    set_timer(owner, issue, "5")
    owner.get(f"/issues/{issue}/start")
    owner.get(f"/groups/{group}/next")
    assert team["bob"].get(path, headers={"If-None-Match": tag}).status_code == 304


# --- hostile input -------------------------------------------------------------------------------

HOSTILE_VALUES = [
    "9" * 5000,
    "\x00",
    "1e3",
    "0x10",
    "10.5",
    "NaN",
    "inf",
    "-0",
    " 60 ",
    "６０",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "\u202e06",
    "60\r\nX-Injected: 1",
]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_hostile_timer_lengths(app, team, value):
    owner, issue = team["owner"], team["issue"]
    response = set_timer(owner, issue, value)
    assert response.status_code == 302
    ends = ends_at(owner, issue)
    if ends is not None:  # only a value that really is a whole number of seconds may start it
        assert int(value.strip()) in range(10, 3601)
    assert owner.get(f"/issues/{issue}").status_code == 200


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_hostile_settings(app, team, value):
    owner, group = team["owner"], team["group"]
    for fields in ({"min_votes": value}, {"auto_reveal": value}, {"facilitator_votes": [value, value]}):
        response = change_settings(owner, group, **fields)
        assert response.status_code in (302, 422), (fields, response.status_code)
    assert 1 <= settings_of(owner, group)["min_votes"] <= 20
    assert room(owner, group).status_code == 200


@pytest.mark.parametrize(
    "back",
    ["//evil.example", "https://evil.example/", "ROOM", "room\r\nX: y", "room/../x", "\x00", "r" * 5000],
)
def test_only_back_room_leads_to_the_room(app, team, back):
    owner, issue = team["owner"], team["issue"]
    for response in (
        set_timer(owner, issue, "60", back=back),
        reveal(owner, issue, back=back),
        owner.get(f"/issues/{issue}/accept", query_string={"back": back}),
    ):
        assert response.status_code == 302 and response.headers["Location"] == f"/issues/{issue}"


@pytest.mark.parametrize(
    "path",
    [
        "/issues/0/start",
        "/issues/-1/start",
        "/issues/abc/start",
        "/issues/2147483648/start",
        "/issues/99999999999999999999/timer",
        "/groups/0/next",
        "/groups/2147483648/next",
        "/groups/%00/room",
        "/groups/1.5/room",
        "/groups/99999999999999999999/room",
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_hostile_ids(app, team, path, method):
    status = team["owner"].open(path, method=method, data={"seconds": "60"}).status_code
    # POST is not a method of the room at all: 405 there says so without looking at the id
    assert status == 404 or (status == 405 and method == "POST" and path.endswith("/room"))


@pytest.mark.parametrize("settings", [{"WTF_CSRF_ENABLED": True}])
def test_the_room_s_forms_need_their_csrf_token(app, client, settings):
    def token(path: str) -> str:
        match = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', text(client.get(path)))
        assert match is not None, path
        return match.group(1)

    client.post("/login", data={"nickname": "Olivia", "csrf_token": token("/login")})
    response = client.post("/groups", data={"name": "Tokens", "deck": "range", "csrf_token": token("/")})
    assert response.status_code == 302
    group = int(response.headers["Location"].rsplit("/", 1)[1])
    response = client.post(
        f"/groups/{group}/issues", data={"key": "T-1", "csrf_token": token(f"/groups/{group}")}
    )
    assert response.status_code == 302
    issue = group_json(client, group)["issues"][0]["id"]
    for path, data in (
        (f"/issues/{issue}/start", {}),
        (f"/groups/{group}/next", {}),
        (f"/issues/{issue}/timer", {"seconds": "60"}),
        (f"/groups/{group}/settings", {"auto_reveal": "y"}),
    ):
        response = client.post(path, data=data)
        assert response.status_code == 400 and "The form expired" in text(response), path
    state = group_json(client, group)
    assert state["current_issue"] is None and state["settings"]["auto_reveal"] is False
    assert issue_json(client, issue)["timer_ends_at"] is None
    response = client.post(f"/groups/{group}/next", data={"csrf_token": token(f"/groups/{group}/room")})
    assert response.status_code == 302 and group_json(client, group)["current_issue"] == issue


def test_logged_out_people_are_sent_to_log_in_first(app, team):
    client = app.test_client()
    for path in (f"/issues/{team['issue']}/timer", f"/groups/{team['group']}/next"):
        response = client.post(path, data={"seconds": "60"})
        assert response.status_code == 302 and response.headers["Location"] == f"/login?next={path}"
    assert group_json(team["owner"], team["group"])["current_issue"] is None
    assert issue_json(team["owner"], team["issue"])["timer_ends_at"] is None


# --- POST /issues/<id>/restart and the voters who joined during a round --------------------------


def test_the_facilitator_starts_a_round_over_and_every_ballot_is_gone_unread(app, team):
    from estimator.models import Ballot, Round
    from estimator.sealing import ballot_keys

    issue, owner = team["issue"], team["owner"]
    assert start(owner, issue).status_code == 302
    for voter, card in ((team["bob"], "5"), (team["carol"], "?")):
        assert vote(voter, issue, card).status_code == 302
    with app.app_context():
        key_id = db.session.scalar(sa.select(Round.key_id).where(Round.issue_id == issue))
    assert key_id and "Start this round over" in text(room(owner, team["group"]))
    assert "Start this round over" not in text(room(team["bob"], team["group"]))  # only the facilitator

    response = owner.post(f"/issues/{issue}/restart", query_string={"back": "room"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/room")
    page = visible(owner.get(response.headers["Location"]))
    assert "Round 1 starts over: every vote was discarded unread, and everybody votes again." in page
    state = issue_json(team["bob"], issue)
    assert state["votes_cast"] == 0 and state["round"] == 1 and state["state"] == "voting"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Ballot)) == 0
        assert ballot_keys.store.get(key_id) is None  # destroyed: nobody can ever read them
    bob_page = visible(team["bob"].get(f"/issues/{issue}"))
    assert "started this round over" in bob_page and "You have not voted yet" in bob_page
    assert vote(team["bob"], issue, "8").status_code == 302  # and votes again
    assert issue_json(owner, issue)["votes_cast"] == 1


def test_only_an_open_round_by_its_facilitator_starts_over(app, team, dave):
    issue = team["issue"]
    assert vote(team["bob"], issue, "5").status_code == 302
    assert team["bob"].post(f"/issues/{issue}/restart").status_code == 403
    assert issue_json(team["owner"], issue)["votes_cast"] == 1
    estimate(app, team, issue)
    page = visible(team["owner"].post(f"/issues/{issue}/restart", follow_redirects=True))
    assert "already revealed" in page
    assert issue_json(team["owner"], issue)["state"] == "estimated"
    assert team["owner"].get(f"/issues/{issue}/restart").status_code == 302  # a GET changes nothing


def test_people_who_joined_during_the_open_round_are_marked_for_everyone(app, team, new_client):
    group, issue = team["group"], team["issue"]
    assert start(team["owner"], issue).status_code == 302
    erin = new_client("Erin")  # before anybody has voted: nothing to mark
    assert join(app, erin, group).status_code == 302
    assert vote(team["bob"], issue, "5").status_code == 302
    dave = new_client("Dave")
    assert join(app, dave, group).status_code == 302
    team["dave"] = dave
    for viewer in (team["owner"], team["bob"], dave):
        voters = visible(room(viewer, group))
        assert re.search(r"Dave\s*joined during this round", voters)
        assert not re.search(r"(Bob|Carol|Erin)\s*joined during this round", voters)
    estimate(app, team, issue)
    assert "joined during this round" not in visible(room(team["owner"], group))


def test_next_issue_asks_first_while_votes_are_missing(app, team):
    group, issue, owner = team["group"], team["issue"], team["owner"]
    second = add_issue(app, owner, group, "PROJ-2")
    assert start(owner, issue).status_code == 302
    assert vote(team["bob"], issue, "5").status_code == 302
    asked = next_issue(owner, group)
    page = visible(asked)
    assert asked.status_code == 200 and "Move on from PROJ-1?" in page
    assert "Only 1 of 3 have voted on PROJ-1" in page and "Move on to the next issue" in page
    assert group_json(owner, group)["current_issue"] == issue  # nothing moved yet
    moved = owner.post(f"/groups/{group}/next", data={"confirm": "1"})
    assert moved.status_code == 302 and group_json(owner, group)["current_issue"] == second
    assert issue_json(owner, issue)["votes_cast"] == 1  # the vote stays for when the team comes back


def test_next_issue_moves_at_once_when_nobody_is_left_behind(app, team):
    group, issue, owner = team["group"], team["issue"], team["owner"]
    second = add_issue(app, owner, group, "PROJ-2")
    assert start(owner, issue).status_code == 302
    for voter in (team["bob"], team["carol"], owner):
        assert vote(voter, issue, "5").status_code == 302
    assert next_issue(owner, group).status_code == 302
    assert group_json(owner, group)["current_issue"] == second


def test_the_facilitator_changes_settings_from_the_room_and_stays_there(app, team):
    group, owner = team["group"], team["owner"]
    page = text(room(owner, group))
    assert f'action="/groups/{group}/settings?back=room"' in page and "room-settings" in page
    assert "room-settings" not in text(room(team["bob"], group))  # the facilitator's alone
    response = owner.post(
        f"/groups/{group}/settings?back=room",
        data={"auto_reveal": "1", "min_votes": "4", "facilitator_votes": "1"},
    )
    assert response.status_code == 302 and response.headers["Location"] == f"/groups/{group}/room"
    assert "Settings saved" in visible(owner.get(response.headers["Location"]))
    assert settings_of(owner, group) == {
        "auto_reveal": True,
        "min_votes": 4,
        "facilitator_votes": True,
        "present_only": False,
    }
    refused = owner.post(f"/groups/{group}/settings?back=room", data={"min_votes": "99"})
    assert refused.headers["Location"] == f"/groups/{group}/room"
    assert "whole number from 1 to 20" in visible(owner.get(refused.headers["Location"]))
    assert settings_of(owner, group)["min_votes"] == 4  # nothing changed
