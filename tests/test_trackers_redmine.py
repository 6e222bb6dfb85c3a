"""A group connected to a real Redmine: import by project, estimate, send back, read it in Redmine."""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import sqlalchemy as sa

from estimator.extensions import db
from estimator.models import Issue, TrackerConnection
from estimator.trackers.http import GuardedTransport
from tests import redmine as redmine_server
from tests.conftest import create_group, estimate
from tests.helpers import visible


@pytest.fixture(scope="session")
def redmine() -> Iterator[redmine_server.Redmine]:
    """One real Redmine for the whole run (each pytest-xdist worker starts its own)."""
    missing = redmine_server.installed()
    if missing:
        pytest.skip(missing)
    running = redmine_server.start()
    yield running
    redmine_server.stop(running)


@pytest.fixture
def settings(redmine) -> dict[str, object]:
    """The app may reach this Redmine, on loopback."""
    return {"TRACKER_ALLOWED_HOSTS": f"127.0.0.1:{redmine.port}", "TRACKER_ALLOW_PRIVATE": True}


@dataclass
class Project:
    """A Redmine project of one test, so that tests do not see each other's estimates."""

    identifier: str
    issues: list[int]


@pytest.fixture
def project(redmine, request) -> Project:
    """Three issues: 3 hours, none, 8 hours."""
    identifier = "t-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:60].strip("-")
    issues = [("Log in with a nickname", 3), ("Export the backlog", None), ("Pay by invoice", 8)]
    return Project(identifier, redmine.new_project(identifier, issues))


def connect(owner, group_id: int, redmine, **fields):
    """Save a Redmine connection through the form."""
    data = {"kind": "redmine", "base_url": redmine.url, "token": redmine.key, "submit": "1"} | fields
    return owner.post(f"/groups/{group_id}/tracker", data=data)


def issue_of(app, group_id: int, key: str) -> Issue:
    with app.app_context():
        issue = db.session.scalar(sa.select(Issue).where(Issue.group_id == group_id, Issue.key == key))
        assert isinstance(issue, Issue), key
        db.session.expunge(issue)
        return issue


def test_import_estimate_send_and_read_back_in_redmine(app, owner, voters, redmine, project):
    """The facilitator connects, tests, imports the project, the team estimates an issue, and the
    estimate lands in Redmine's Story points and then its estimated hours."""
    group_id, members = voters(owner)
    tested = owner.post(
        f"/groups/{group_id}/tracker",
        data={"kind": "redmine", "base_url": redmine.url + "/", "token": redmine.key, "test": "1"},
    )
    assert tested.status_code == 200
    page = visible(tested)
    assert "Connected to Redmine as Ada Admin (admin)." in page
    assert "Story points" in page and "Estimated time (hours)" in page
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(TrackerConnection)) == 0

    saved = connect(owner, group_id, redmine, estimate_field=f"cf_{redmine.story_points}")
    assert saved.status_code == 302
    page = visible(owner.get(f"/groups/{group_id}/tracker"))
    assert "Credentials saved; enter a new one to replace it." in page
    assert redmine.key not in owner.get(f"/groups/{group_id}/tracker").get_data(as_text=True)

    imported = owner.post(f"/groups/{group_id}/tracker/import", data={"query": project.identifier})
    assert imported.status_code == 200, visible(imported)
    page = visible(imported)
    assert "Added 3, updated 0 titles, skipped 0." in page
    first, second, third = (f"#{number}" for number in project.issues)
    group_page = visible(owner.get(f"/groups/{group_id}"))
    assert "Log in with a nickname" in group_page and "Pay by invoice" in group_page
    # Story points are empty in Redmine: nothing recorded from them yet
    assert issue_of(app, group_id, first).final_estimate is None
    assert issue_of(app, group_id, second).tracker_ref == str(project.issues[1])

    issue = issue_of(app, group_id, second)
    assert owner.post(f"/issues/{issue.id}/start").status_code == 302  # the room is on it
    recorded = estimate(owner, members, issue.id, ["3", "8", "13"], "8")
    assert "Final estimate for" in visible(recorded)
    for page in (f"/issues/{issue.id}", f"/groups/{group_id}/room"):
        assert "Send 8 to the tracker" in visible(owner.get(page))
        assert "Send 8 to the tracker" not in visible(members[0].get(page))
    unestimated = issue_of(app, group_id, first)
    assert "to the tracker" not in visible(owner.get(f"/issues/{unestimated.id}"))
    sent = owner.post(f"/issues/{issue.id}/tracker/send", follow_redirects=True)
    assert f"Sent 8 to the tracker for {second}." in visible(sent)
    points = {field["id"]: field["value"] for field in redmine.issue(project.issues[1])["custom_fields"]}
    assert points[redmine.story_points] == "8"

    assert connect(owner, group_id, redmine, token="", estimate_field="estimated_hours").status_code == 302
    owner.post(f"/issues/{issue.id}/tracker/send")
    assert redmine.issue(project.issues[1])["estimated_hours"] == 8.0

    # A title changed in Redmine follows on the next import; nothing else changes
    redmine.put(
        f"/issues/{project.issues[0]}.json", {"issue": {"subject": "Log in with a nickname or a password"}}
    )
    again = visible(owner.post(f"/groups/{group_id}/tracker/import", data={"query": project.identifier}))
    assert "Added 0, updated 1 titles, skipped 2." in again
    assert issue_of(app, group_id, first).description == "Log in with a nickname or a password"
    assert issue_of(app, group_id, second).final_estimate == "8"


def test_estimates_in_redmine_that_fit_the_deck_become_final_estimates(app, owner, redmine, project):
    """With estimated hours as the field, an issue of 8 hours arrives estimated at 8 in a Fibonacci
    group; one without hours arrives to be voted on."""
    group_id = create_group(owner, deck="fibonacci")
    assert connect(owner, group_id, redmine, estimate_field="estimated_hours").status_code == 302
    page = visible(owner.post(f"/groups/{group_id}/tracker/import", data={"query": project.identifier}))
    assert "Added 3, updated 0 titles, skipped 0." in page
    assert "2 came with an estimate of the group's deck, recorded as their final estimates." in page
    three, unestimated, eight = (issue_of(app, group_id, f"#{number}") for number in project.issues)
    assert (three.final_estimate, three.state) == ("3", "estimated")
    assert (eight.final_estimate, eight.state) == ("8", "estimated")
    assert (unestimated.final_estimate, unestimated.state) == (None, "voting")


def test_a_wrong_key_is_refused_clearly_and_nothing_is_saved(app, owner, redmine, project):
    group_id = create_group(owner)
    refused = connect(owner, group_id, redmine, token="not-a-key-of-this-redmine")
    assert refused.status_code == 422
    assert "The tracker refused the credentials while checking the credentials (401)." in visible(refused)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(TrackerConnection)) == 0

    assert connect(owner, group_id, redmine).status_code == 302
    before = redmine.issue(project.issues[0])
    with app.app_context():
        connection = db.session.scalar(sa.select(TrackerConnection))
        assert connection is not None
        assert redmine.key.encode() not in connection.credentials  # sealed, not kept as typed
    refused = connect(owner, group_id, redmine, token="still-not-a-key")
    assert refused.status_code == 422
    imported = owner.post(f"/groups/{group_id}/tracker/import", data={"query": project.identifier})
    assert "Added 3" in visible(imported)  # the saved key was kept
    assert redmine.issue(project.issues[0])["updated_on"] == before["updated_on"]


def test_an_unknown_project_is_a_clear_message_and_adds_nothing(app, owner, redmine):
    group_id = create_group(owner)
    assert connect(owner, group_id, redmine).status_code == 302
    answer = owner.post(f"/groups/{group_id}/tracker/import", data={"query": "no-such-project"})
    assert answer.status_code == 422
    assert "Nothing was imported. The tracker found nothing at that address" in visible(answer)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Issue)) == 0


def test_sent_automatically_when_recorded_and_a_failure_is_a_warning(app, owner, voters, redmine, project):
    group_id, members = voters(owner)
    fields = {"estimate_field": "estimated_hours", "send_automatically": "y"}
    assert connect(owner, group_id, redmine, **fields).status_code == 302
    owner.post(f"/groups/{group_id}/tracker/import", data={"query": project.identifier})
    issue = issue_of(app, group_id, f"#{project.issues[1]}")
    page = visible(estimate(owner, members, issue.id, ["5", "5", "8"], "5"))
    assert f"Sent 5 to the tracker for #{project.issues[1]}." in page
    assert redmine.issue(project.issues[1])["estimated_hours"] == 5.0

    # The tracker cannot be reached now: the estimate is recorded all the same, with a warning
    app.config["TRACKER_ALLOWED_HOSTS"] = ""
    owner.post(f"/issues/{issue.id}/revote")
    page = visible(estimate(owner, members, issue.id, ["13", "13", "8"], "13"))
    assert "The estimate is recorded but was not sent to the tracker." in page
    assert "TRACKER_ALLOWED_HOSTS" in page
    assert issue_of(app, group_id, issue.key).final_estimate == "13"
    assert redmine.issue(project.issues[1])["estimated_hours"] == 5.0


def test_only_keys_titles_and_final_estimates_reach_the_tracker(
    app, owner, voters, redmine, project, monkeypatch
):
    """Every request sent to the tracker in a whole meeting (connect, import, three votes, reveal,
    record, send) is captured: no nickname, no card of the distribution, no figure of the result;
    the one body sent is the final estimate."""
    sent: list[httpx.Request] = []
    original = GuardedTransport.handle_request

    def capture(self, request):
        request.read()
        sent.append(request)
        return original(self, request)

    monkeypatch.setattr(GuardedTransport, "handle_request", capture)
    group_id, members = voters(owner)
    fields = {"estimate_field": f"cf_{redmine.story_points}", "send_automatically": "y"}
    assert connect(owner, group_id, redmine, **fields).status_code == 302
    owner.post(f"/groups/{group_id}/tracker/import", data={"query": project.identifier})
    issue = issue_of(app, group_id, f"#{project.issues[1]}")
    # cards 1, 2 and 21: average 8, median 2, so the final estimate 13 is none of the figures
    page = visible(estimate(owner, members, issue.id, ["1", "2", "21"], "13"))
    assert "Sent 13 to the tracker" in page

    assert sent, "nothing was sent to the tracker"
    bodies = [request.content for request in sent if request.content]
    assert [json.loads(body) for body in bodies] == [
        {"issue": {"custom_fields": [{"id": redmine.story_points, "value": "13"}]}}
    ]
    for request in sent:
        everything = (str(request.url) + str(dict(request.headers)) + request.content.decode()).casefold()
        for nickname in ("olivia", "bob", "carol", "dave"):
            assert nickname not in everything
        assert "vote" not in everything and "distribution" not in everything
