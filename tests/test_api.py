"""The JSON API: shapes, ETags and 304s, 401/404, and never an individual value."""

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from estimator.extensions import db
from tests.conftest import add_issue, join, members_vote, vote

ISSUE_KEYS = {
    "id",
    "group_id",
    "key",
    "description",
    "details",
    "state",
    "round",
    "deck",
    "voters",
    "votes_cast",
    "votes_expected",
    "result",
    "final_estimate",
    "history",
    "timer_ends_at",
}
RESULT_KEYS = {
    "votes",
    "unsure",
    "average",
    "nearest_integer",
    "nearest_fibonacci",
    "suggestion",
    "low",
    "high",
    "consensus",
    "distribution",
    "median",
}
# Votes 5, 8 and 5 on the range deck, as the anonymous result shows them.
REVEALED = {
    "votes": 3,
    "unsure": 0,
    "average": 6.0,
    "nearest_integer": 6,
    "nearest_fibonacci": 5,
    "suggestion": "5",
    "low": "5",
    "high": "8",
    "consensus": False,
    "distribution": {"5": 2, "8": 1},
    "median": 5.0,
}
GROUP_KEYS = {
    "id",
    "name",
    "deck",
    "owner",
    "members",
    "issues",
    "current_issue",
    "settings",
    "total",
    "present",
}
GROUP_ISSUE_KEYS = {
    "id",
    "key",
    "description",
    "state",
    "round",
    "votes_cast",
    "votes_expected",
    "final_estimate",
}


def test_issue_shape_before_and_after_reveal(app, team, new_client):
    issue, owner = team["issue"], team["owner"]
    join(app, new_client("Otto"), team["group"], role="observer")
    vote(team["bob"], issue, "5")
    data = team["carol"].get(f"/api/issues/{issue}").json
    assert set(data) == ISSUE_KEYS
    assert data["state"] == "voting" and data["round"] == 1 and data["deck"] == "range"
    assert data["result"] is None and data["history"] == [] and data["final_estimate"] is None
    assert data["voters"] == [
        {"nickname": "Olivia", "voted": False},
        {"nickname": "Bob", "voted": True},
        {"nickname": "Carol", "voted": False},
    ]  # observers are not voters
    assert (data["votes_cast"], data["votes_expected"]) == (1, 3)
    vote(team["carol"], issue, "8")
    dave = new_client("Dave")  # a reveal needs 3 votes besides the facilitator's by default
    assert join(app, dave, team["group"]).status_code == 302
    vote(dave, issue, "5")
    assert owner.post(f"/issues/{issue}/reveal").status_code == 302
    data = team["bob"].get(f"/api/issues/{issue}").json
    assert data["state"] == "revealed"
    assert set(data["result"]) == RESULT_KEYS
    assert data["result"] == REVEALED
    owner.post(f"/issues/{issue}/accept", data={"estimate": "5"})
    owner.post(f"/issues/{issue}/revote")
    data = owner.get(f"/api/issues/{issue}").json
    assert data["round"] == 2 and data["state"] == "voting" and data["result"] is None
    assert data["history"] == [{"round": 1, "result": REVEALED}]


def test_group_shape(app, team):
    add_issue(app, team["owner"], team["group"], "PROJ-2", "Second")
    vote(team["bob"], team["issue"], "3")
    data = team["bob"].get(f"/api/groups/{team['group']}").json
    assert set(data) == GROUP_KEYS
    assert data["name"] == "Team Rocket" and data["deck"] == "range" and data["owner"] == "Olivia"
    assert data["members"] == [
        {"nickname": "Olivia", "role": "owner"},
        {"nickname": "Bob", "role": "member"},
        {"nickname": "Carol", "role": "member"},
    ]
    assert [set(i) for i in data["issues"]] == [GROUP_ISSUE_KEYS] * 2
    first, second = data["issues"]
    assert (first["key"], first["votes_cast"], first["votes_expected"], first["state"]) == (
        "PROJ-1",
        1,
        3,
        "voting",
    )
    assert (second["key"], second["description"], second["votes_cast"]) == ("PROJ-2", "Second", 0)


def test_not_logged_in_is_401_json_and_never_a_redirect(app, team):
    anonymous = app.test_client()
    for path in (f"/api/issues/{team['issue']}", f"/api/groups/{team['group']}"):
        response = anonymous.get(path)
        assert response.status_code == 401 and response.is_json and "error" in response.json


def test_non_members_get_404_json(app, team, new_client):
    outsider = new_client("Mallory")
    for path in (f"/api/issues/{team['issue']}", f"/api/groups/{team['group']}", "/api/issues/999"):
        response = outsider.get(path)
        assert response.status_code == 404 and response.is_json and "error" in response.json


@pytest.mark.parametrize("kind", ["issues", "groups"])
def test_etag_and_304(app, team, kind):
    object_id = team["issue"] if kind == "issues" else team["group"]
    path = f"/api/{kind}/{object_id}"
    first = team["bob"].get(path)
    tag = first.headers["ETag"]
    again = team["bob"].get(path, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == tag
    vote(team["carol"], team["issue"], "13")  # any change anyone makes
    changed = team["bob"].get(path, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["ETag"] != tag
    assert team["bob"].get(path, headers={"If-None-Match": changed.headers["ETag"]}).status_code == 304


def test_304_is_cheap(app, team):
    path = f"/api/issues/{team['issue']}"
    tag = team["bob"].get(path).headers["ETag"]
    statements = []
    with app.app_context():
        engine = db.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        response = team["bob"].get(path, headers={"If-None-Match": tag})
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert response.status_code == 304
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 2, selects  # the user, then membership and version together


def shown_values(data: object, key: str = "") -> set[str]:
    """Every value in a JSON document, as text, except the ids (which may be any number)."""
    if isinstance(data, dict):
        return set().union(*(shown_values(value, name) for name, value in data.items()))
    if isinstance(data, list):
        return set().union(*(shown_values(value, key) for value in data))
    return set() if key in {"id", "group_id", "current_issue"} else {str(data)}


def test_no_individual_value_in_any_response(app, team, dave):
    """Bob votes 37, a number nobody else uses: it must never appear tied to anyone."""
    issue, group = team["issue"], team["group"]
    members_vote(team, issue, ("37", "2", "2"))
    for client in (team["owner"], team["carol"]):
        for path in (f"/api/issues/{issue}", f"/api/groups/{group}"):
            assert "37" not in shown_values(client.get(path).json)
    assert team["owner"].post(f"/issues/{issue}/reveal").status_code == 302
    data = team["carol"].get(f"/api/issues/{issue}").json
    assert data["result"]["distribution"] == {"2": 2, "37": 1}  # anonymous counts only
    assert all(set(voter) == {"nickname", "voted"} for voter in data["voters"])
    with app.app_context():
        sealed = db.session.execute(sa.text("SELECT sealed FROM ballots")).scalars().all()
    assert sealed == [None, None, None]  # not even the sealed cards are kept after the reveal
