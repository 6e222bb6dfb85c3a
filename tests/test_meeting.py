"""The facilitator's shortest way through a meeting: "Record and next issue" in the room."""

from tests.conftest import add_issue, vote
from tests.helpers import group_json, issue_json, text, visible


def test_record_and_next_records_the_estimate_and_moves_the_room_on(app, team, dave):
    owner, group, first = team["owner"], team["group"], team["issue"]
    second = add_issue(app, owner, group, "PROJ-2")
    owner.post(f"/issues/{first}/start")
    for member, card in ((team["bob"], "3"), (team["carol"], "5"), (dave, "8")):
        vote(member, first, card)
    owner.post(f"/issues/{first}/reveal?back=room")
    room = text(owner.get(f"/groups/{group}/room"))
    assert 'name="then" value="next"' in room, "the room offers it while no estimate is recorded"

    response = owner.post(
        f"/issues/{first}/accept?back=room", data={"estimate": "5", "then": "next"}, follow_redirects=True
    )
    assert "Final estimate for PROJ-1: 5. Next: PROJ-2." in visible(response)
    assert issue_json(owner, first)["final_estimate"] == "5"
    assert issue_json(owner, first)["state"] == "estimated"
    assert group_json(owner, group)["current_issue"] == second


def test_record_and_next_on_the_last_issue_ends_the_meeting(app, team, dave):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    owner.post(f"/issues/{issue}/start")
    for member, card in ((team["bob"], "3"), (team["carol"], "5"), (dave, "8")):
        vote(member, issue, card)
    owner.post(f"/issues/{issue}/reveal")
    response = owner.post(
        f"/issues/{issue}/accept?back=room", data={"estimate": "5", "then": "next"}, follow_redirects=True
    )
    page = visible(response)
    assert "Every issue is estimated." in page and "The 1 issue is estimated. Total: 5" in page
    assert group_json(owner, group)["current_issue"] is None


def test_a_bad_estimate_with_record_and_next_changes_nothing(app, team, dave):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    add_issue(app, owner, group, "PROJ-2")
    owner.post(f"/issues/{issue}/start")
    for member, card in ((team["bob"], "3"), (team["carol"], "5"), (dave, "8")):
        vote(member, issue, card)
    owner.post(f"/issues/{issue}/reveal")
    response = owner.post(f"/issues/{issue}/accept?back=room", data={"estimate": "0", "then": "next"})
    assert response.status_code == 422
    assert group_json(owner, group)["current_issue"] == issue
    assert issue_json(owner, issue)["final_estimate"] is None
