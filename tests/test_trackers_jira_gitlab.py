"""A group connected to Jira (Cloud and Data Center) or GitLab, through the app as a facilitator uses it.

The trackers are real HTTP servers on loopback (`tests.fake_trackers`), reached through the app's
own guarded client: the facilitator connects, tests, picks the field, imports by a query, the team
votes, the facilitator records and sends. Every request the fake Jira receives is held to
Atlassian's OpenAPI documents (`tests.jira_contract`), so a request Jira would reject fails here.
Every request either tracker receives is kept, to check what was written and that nothing of the
meeting (a nickname, a vote, a figure of the result) crossed.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

import estimator.trackers.http as tracker_http
from estimator.extensions import db
from estimator.models import Issue, TrackerConnection
from tests.conftest import create_group, estimate
from tests.fake_trackers import FakeGitLab, FakeJira, FakeTracker, JiraIssue, Received, running
from tests.helpers import text as text_of
from tests.helpers import visible
from tests.jira_contract import documents_present
from tests.test_tracker_gitlab import ME as GITLAB_ME
from tests.test_tracker_gitlab import gitlab_issue
from tests.test_tracker_jira import BOARD_84_CONFIGURATION, BOARDS, FIELDS, ME_CLOUD, adf, paragraph, text

pytestmark = pytest.mark.skipif(
    not documents_present(),
    reason="Atlassian's OpenAPI documents are kept beside the repository in ../shared/trackers/jira/, "
    "and that folder is not there",
)

ME_DATA_CENTER = {
    "self": "https://jira.example.com/rest/api/2/user?username=mia",
    "key": "JIRAUSER10100",
    "name": "mia",
    "emailAddress": "mia@example.com",
    "displayName": "Mia Krystof (Data Center)",
    "active": True,
    "timeZone": "Europe/Berlin",
    "locale": "de_DE",
}
JQL = 'project = PROJ AND "Story point estimate" is EMPTY ORDER BY Rank'
NICKNAMES = ("olivia", "bob", "carol", "dave")


def jira_issues() -> list[JiraIssue]:
    """Three issues: 5 points (a Fibonacci card), none, 2.5 (not one)."""
    return [
        JiraIssue(
            "10001",
            "PROJ-1",
            "Log in with a passkey",
            adf(paragraph(text("WebAuthn first"))),
            {"customfield_10016": 5.0},
        ),
        JiraIssue("10002", "PROJ-2", "Forget the password form", None, {"customfield_10016": None}),
        JiraIssue(
            "10003",
            "PROJ-3",
            "Rate-limit sign-ups",
            adf(paragraph(text("Per address"))),
            {"customfield_10016": 2.5},
        ),
    ]


def fake_jira(cloud: bool) -> FakeJira:
    if cloud:
        return FakeJira(ME_CLOUD, FIELDS, BOARDS, BOARD_84_CONFIGURATION, jira_issues(), cloud=True)
    issues = jira_issues()
    for issue in issues:  # Data Center's descriptions are wiki text
        issue.description = "h2. Why\n* one" if issue.description else None
    return FakeJira(
        ME_DATA_CENTER, FIELDS, BOARDS, BOARD_84_CONFIGURATION, issues, cloud=False, context="/jira"
    )


def fake_gitlab() -> FakeGitLab:
    """A GitLab with three issues of the project shop/web/app (id 8): weights 3, none, 40."""
    issues = [
        gitlab_issue(1, "Pay by invoice", "Only for **companies**", 3),
        gitlab_issue(2, "Export the backlog", None, None),
        gitlab_issue(3, "Rewrite the checkout", "", 40),
    ]
    issues[2]["labels"] = ["Frontend"]
    return FakeGitLab(GITLAB_ME, "shop/web/app", 8, issues)


@contextmanager
def serving(name: str) -> Iterator[FakeTracker]:
    """The tracker `jira-cloud`, `jira-dc` (under the context path /jira) or `gitlab` on loopback;
    no request a Jira received may break Atlassian's documents."""
    fake = fake_gitlab() if name == "gitlab" else fake_jira(name == "jira-cloud")
    with running(fake):
        yield fake
    if isinstance(fake, FakeJira):
        assert not fake.violations, fake.violations


@pytest.fixture(params=["jira-cloud", "jira-dc"])
def jira(request) -> Iterator[FakeJira]:
    """Jira Cloud, then Jira Data Center."""
    with serving(request.param) as fake:
        assert isinstance(fake, FakeJira)
        yield fake


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with serving("gitlab") as fake:
        assert isinstance(fake, FakeGitLab)
        yield fake


@pytest.fixture
def tracker(request) -> Iterator[FakeTracker]:
    """The tracker the test is parametrized with (indirectly)."""
    with serving(request.param) as fake:
        yield fake


@pytest.fixture
def settings(request) -> dict[str, Any]:
    """The app may reach the fake trackers this test uses, on loopback."""
    hosts = [
        f"127.0.0.1:{request.getfixturevalue(name).port}"
        for name in ("jira", "gitlab", "tracker")
        if name in request.fixturenames
    ]
    return {"TRACKER_ALLOWED_HOSTS": ", ".join(hosts), "TRACKER_ALLOW_PRIVATE": True}


def credentials(tracker: FakeTracker) -> dict[str, str]:
    """The connect form's fields for the tracker, as its facilitator fills them in."""
    if isinstance(tracker, FakeGitLab):
        return {"kind": "gitlab", "base_url": tracker.base_url, "token": tracker.token}
    assert isinstance(tracker, FakeJira)
    if tracker.cloud:
        return {
            "kind": "jira",
            "base_url": tracker.base_url,
            "email": tracker.account.email,
            "token": tracker.account.api_token,
        }
    return {"kind": "jira", "base_url": tracker.base_url + "/", "token": tracker.account.personal_token}


def connect(owner, group_id: int, tracker: FakeTracker, **fields: str):
    """Save the connection through the form."""
    return owner.post(f"/groups/{group_id}/tracker", data=credentials(tracker) | {"submit": "1"} | fields)


def import_issues(owner, group_id: int, query: str):
    return owner.post(f"/groups/{group_id}/tracker/import", data={"query": query})


def issue_of(app, group_id: int, key: str) -> Issue:
    with app.app_context():
        issue = db.session.scalar(sa.select(Issue).where(Issue.group_id == group_id, Issue.key == key))
        assert isinstance(issue, Issue), key
        db.session.expunge(issue)
        return issue


def issues_of(app, group_id: int) -> list[tuple[str, str, str | None, str | None]]:
    """(key, title, final estimate, tracker reference) of the group's issues, in backlog order."""
    with app.app_context():
        rows = db.session.execute(
            sa.select(Issue.key, Issue.description, Issue.final_estimate, Issue.tracker_ref)
            .where(Issue.group_id == group_id)
            .order_by(Issue.position, Issue.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def connection_row(app) -> tuple[str, str, str | None, bool] | None:
    with app.app_context():
        connection = db.session.scalar(sa.select(TrackerConnection))
        if connection is None:
            return None
        return (
            connection.kind,
            connection.base_url,
            connection.estimate_field,
            connection.send_automatically,
        )


def nothing_of_the_meeting(received: list[Received], written: list[Any]) -> None:
    """No request carries a nickname, a vote or a figure of the result: the only bodies sent are
    the final estimates written, and nothing else names a person or a round."""
    assert received, "nothing reached the tracker"
    assert [seen.json() for seen in received if seen.body] == written
    for seen in received:
        everything = seen.everything()
        for nickname in NICKNAMES:
            assert nickname not in everything, seen
        for word in ("vote", "distribution", "average", "median"):
            assert word not in everything, (word, seen)


# The connect page ------------------------------------------------------------------------------


def test_the_connect_page_tells_each_kind_what_to_enter(app, owner):
    group_id = create_group(owner)
    page = visible(owner.get(f"/groups/{group_id}/tracker"))
    assert "Tracker Redmine Jira GitLab" in page
    assert "E-mail address (Jira Cloud only)" in page
    assert "Jira: API token or personal access token" in page
    assert "Jira Data Center: a personal access token from your profile, and no e-mail address." in page
    assert "GitLab: Access token (scope api)" in page


def test_a_jira_cloud_site_without_the_e_mail_address_is_told_what_is_missing(app, owner):
    """A token alone goes to Jira Data Center as a personal access token; Jira Cloud takes none, and
    the page says the e-mail address is missing rather than that the token was refused."""
    group_id = create_group(owner)
    app.config["TRACKER_ALLOWED_HOSTS"] = "yourteam.atlassian.net"
    data = {"kind": "jira", "base_url": "https://yourteam.atlassian.net", "token": "ATATT3xFfGF0-cloud-token"}
    for button in ("test", "submit"):
        answer = owner.post(f"/groups/{group_id}/tracker", data=data | {button: "1"})
        assert answer.status_code == 422
        assert (
            "Jira Cloud (an atlassian.net address) signs in with the account's e-mail address and an API "
            "token: enter the e-mail address too."
        ) in visible(answer)
    assert connection_row(app) is None


# Jira, Cloud and Data Center ----------------------------------------------------------------------


def test_jira_connect_import_estimate_and_send_the_story_points(app, owner, voters, jira):
    """Connect (Cloud: e-mail and API token as Basic; Data Center: a personal access token as
    Bearer), test, pick the story points, import by JQL, estimate, send: Jira receives the one PUT."""
    group_id, members = voters(owner)
    tested = owner.post(f"/groups/{group_id}/tracker", data=credentials(jira) | {"test": "1"})
    assert tested.status_code == 200, visible(tested)
    page = visible(tested)
    assert f"Connected to Jira as {jira.me['displayName']}." in page
    for label in (
        "Story point estimate",
        "Story Points",
        "Estimation of the board PROJ board",
        "Business value",
    ):
        assert label in page
    assert "Support" not in page  # a Kanban board estimates nothing
    assert connection_row(app) is None  # a test saves nothing
    first = jira.received[0]
    assert first.path == jira.context + ("/rest/api/3/myself" if jira.cloud else "/rest/api/2/myself")
    if jira.cloud:
        basic = base64.b64encode(b"mia@example.com:ATATT3xFfGF0-cloud-token").decode()
        assert {seen.headers["Authorization"] for seen in jira.received} == {f"Basic {basic}"}
    else:
        assert {seen.headers["Authorization"] for seen in jira.received} == {"Bearer NjM3OTc2-pat"}

    assert connect(owner, group_id, jira, estimate_field="customfield_10016").status_code == 302
    assert connection_row(app) == ("jira", jira.base_url, "customfield_10016", False)
    saved = owner.get(f"/groups/{group_id}/tracker")
    assert jira.account.api_token not in saved.get_data(as_text=True)
    assert "Story point estimate" in visible(saved)

    imported = import_issues(owner, group_id, JQL)
    assert imported.status_code == 200, visible(imported)
    page = visible(imported)
    assert "Added 3, updated 0 titles, skipped 0." in page
    assert "1 came with an estimate of the group's deck, recorded as its final estimate." in page
    searches = [seen for seen in jira.received if "search" in seen.path]
    assert {seen.params["jql"] for seen in searches} == {JQL}
    assert len(searches) == 2  # two to a page
    assert issues_of(app, group_id) == [
        ("PROJ-1", "Log in with a passkey", "5", "10001"),
        ("PROJ-2", "Forget the password form", None, "10002"),
        ("PROJ-3", "Rate-limit sign-ups", None, "10003"),  # 2.5 is no Fibonacci card
    ]
    assert JQL in html.unescape(text_of(owner.get(f"/groups/{group_id}/tracker")))  # the query is kept

    issue = issue_of(app, group_id, "PROJ-2")
    assert owner.post(f"/issues/{issue.id}/start").status_code == 302
    # cards 1, 2 and 21: average 8, median 2, so the final estimate 13 is none of the figures
    recorded = estimate(owner, members, issue.id, ["1", "2", "21"], "13")
    assert "Final estimate for PROJ-2: 13." in visible(recorded)
    assert not jira.writes()  # not sent until asked
    for path in (f"/issues/{issue.id}", f"/groups/{group_id}/room"):
        assert "Send 13 to the tracker" in visible(owner.get(path))
        assert "Send 13 to the tracker" not in visible(members[0].get(path))
    sent = owner.post(f"/issues/{issue.id}/tracker/send", follow_redirects=True)
    assert "Sent 13 to the tracker for PROJ-2." in visible(sent)
    (write,) = jira.writes()
    assert (write.method, write.path) == ("PUT", f"{jira.context}{jira.api}/issue/10002")
    assert write.json() == {"fields": {"customfield_10016": 13}}
    assert jira.issues[1].fields["customfield_10016"] == 13
    written = [{"fields": {"customfield_10016": 13}}]

    # A title changed in Jira follows on the next import; estimates and votes stay
    jira.issues[0].summary = "Log in with a passkey or a password"
    again = visible(import_issues(owner, group_id, JQL))
    assert "Added 0, updated 1 titles, skipped 2." in again
    assert issues_of(app, group_id)[:2] == [
        ("PROJ-1", "Log in with a passkey or a password", "5", "10001"),
        ("PROJ-2", "Forget the password form", "13", "10002"),
    ]
    nothing_of_the_meeting(jira.received, written)


def test_jira_board_estimation_is_read_at_import_and_written_on_record(app, owner, voters, jira):
    """With a board's estimation picked and automatic sending, the import reads the field the board
    estimates in, and recording sends the estimate through the board's estimation endpoint."""
    group_id, members = voters(owner)
    fields = {"estimate_field": "agile-estimation:84", "send_automatically": "y"}
    assert connect(owner, group_id, jira, **fields).status_code == 302
    page = visible(owner.get(f"/groups/{group_id}/tracker"))
    assert "Estimation of the board PROJ board" in page
    assert "Added 3" in visible(import_issues(owner, group_id, "project = PROJ"))
    assert any(seen.path.endswith("/rest/agile/1.0/board/84/configuration") for seen in jira.received)
    assert issue_of(app, group_id, "PROJ-1").final_estimate == "5"

    issue = issue_of(app, group_id, "PROJ-3")
    page = visible(estimate(owner, members, issue.id, ["1", "2", "21"], "8"))
    assert "Final estimate for PROJ-3: 8." in page
    assert "Sent 8 to the tracker for PROJ-3." in page
    (write,) = jira.writes()
    assert (write.method, write.path) == ("PUT", f"{jira.context}/rest/agile/1.0/issue/10003/estimation")
    assert write.params == {"boardId": "84"}
    assert write.json() == {"value": "8"}
    assert jira.issues[2].fields["customfield_10016"] == 8.0
    nothing_of_the_meeting(jira.received, [{"value": "8"}])


# GitLab ----------------------------------------------------------------------------------------


def test_gitlab_connect_import_estimate_and_send_the_weight(app, owner, voters, gitlab):
    group_id, members = voters(owner)
    tested = owner.post(f"/groups/{group_id}/tracker", data=credentials(gitlab) | {"test": "1"})
    assert tested.status_code == 200, visible(tested)
    page = visible(tested)
    assert "Connected to GitLab as John Smith (@john_smith)." in page
    assert "Weight" in page
    assert connection_row(app) is None
    assert {seen.headers.get("PRIVATE-TOKEN") for seen in gitlab.received} == {gitlab.token}
    assert not any("Authorization" in seen.headers for seen in gitlab.received)

    assert connect(owner, group_id, gitlab, estimate_field="weight").status_code == 302
    assert connection_row(app) == ("gitlab", gitlab.base_url, "weight", False)
    page = visible(owner.get(f"/groups/{group_id}/tracker"))
    assert "A project's path, optionally with labels and a milestone." in page

    imported = import_issues(owner, group_id, "shop/web/app label:Backend")
    assert imported.status_code == 200, visible(imported)
    page = visible(imported)
    assert "Added 2, updated 0 titles, skipped 0." in page
    assert "1 came with an estimate of the group's deck, recorded as its final estimate." in page
    (listing,) = [seen for seen in gitlab.received if seen.path.endswith("/issues")]
    assert listing.path == "/api/v4/projects/shop%2Fweb%2Fapp/issues"
    assert listing.params | {"per_page": "x"} == {
        "state": "opened",
        "labels": "Backend",
        "page": "1",
        "per_page": "x",
    }
    assert issues_of(app, group_id) == [
        ("#1", "Pay by invoice", "3", "8:1"),
        ("#2", "Export the backlog", None, "8:2"),
    ]

    issue = issue_of(app, group_id, "#2")
    assert "Final estimate for #2: 13." in visible(estimate(owner, members, issue.id, ["1", "2", "21"], "13"))
    assert not gitlab.writes()
    sent = owner.post(f"/issues/{issue.id}/tracker/send?back=room", follow_redirects=True)
    assert "Sent 13 to the tracker for #2." in visible(sent)
    (write,) = gitlab.writes()
    assert (write.method, write.path, write.json()) == ("PUT", "/api/v4/projects/8/issues/2", {"weight": 13})
    assert gitlab.issues[1]["weight"] == 13

    gitlab.issues[0]["title"] = "Pay by invoice or card"
    again = visible(import_issues(owner, group_id, "shop/web/app"))
    assert "Added 1, updated 1 titles, skipped 1." in again
    assert issues_of(app, group_id) == [
        ("#1", "Pay by invoice or card", "3", "8:1"),
        ("#2", "Export the backlog", "13", "8:2"),
        ("#3", "Rewrite the checkout", None, "8:3"),  # weight 40 is no Fibonacci card
    ]
    nothing_of_the_meeting(gitlab.received, [{"weight": 13}])


def test_gitlab_weight_is_sent_when_the_estimate_is_recorded(app, owner, voters, gitlab):
    group_id, members = voters(owner)
    assert (
        connect(owner, group_id, gitlab, estimate_field="weight", send_automatically="y").status_code == 302
    )
    assert "Added 2" in visible(import_issues(owner, group_id, "shop/web/app label:Backend"))
    issue = issue_of(app, group_id, "#2")
    page = visible(estimate(owner, members, issue.id, ["5", "5", "8"], "5"))
    assert "Sent 5 to the tracker for #2." in page
    (write,) = gitlab.writes()
    assert write.json() == {"weight": 5}
    nothing_of_the_meeting(gitlab.received, [{"weight": 5}])


# A final estimate that is not a number ---------------------------------------------------------


@pytest.mark.parametrize(
    ("tracker", "field", "message"),
    [
        (
            "jira-cloud",
            "customfield_10016",
            "The Jira field takes numbers only, and the final estimate M is not a number.",
        ),
        (
            "jira-dc",
            "agile-estimation:84",
            "The Jira field takes numbers only, and the final estimate M is not a number.",
        ),
        (
            "gitlab",
            "weight",
            "GitLab's issue weight takes whole numbers of 0 or more, and the final estimate M is not one.",
        ),
    ],
    indirect=["tracker"],
)
def test_a_t_shirt_size_is_not_sent_and_the_page_says_why(app, owner, voters, tracker, field, message):
    fake: FakeTracker = tracker
    group_id, members = voters(owner, deck="tshirt")
    assert connect(owner, group_id, fake, estimate_field=field, send_automatically="y").status_code == 302
    gitlab = isinstance(fake, FakeGitLab)
    query = "shop/web/app" if gitlab else "project = PROJ"
    assert "Added" in visible(import_issues(owner, group_id, query))
    key = "#2" if gitlab else "PROJ-2"
    issue = issue_of(app, group_id, key)
    page = visible(estimate(owner, members, issue.id, ["S", "M", "L"], "M"))
    assert f"Final estimate for {key}: M." in page
    assert "The estimate is recorded but was not sent to the tracker. " + message in page
    sent = owner.post(f"/issues/{issue.id}/tracker/send", follow_redirects=True)
    assert sent.status_code == 200
    assert "The estimate was not sent. " + message in visible(sent)
    assert not fake.writes()
    assert issue_of(app, group_id, key).final_estimate == "M"


# Trackers that misbehave: a clear message, nothing changed, never a 500 ----------------------------

HOSTILE = {
    "refused": "The tracker refused the credentials while {what} (401).",
    "redirect": "The tracker redirected elsewhere (302): give its address exactly as the tracker's own pages "
    "show it.",
    "huge": "The tracker's answer was larger than 5 MiB.",
    "stall": "The tracker did not answer in time while {what}.",
}


@pytest.mark.parametrize("how", list(HOSTILE))
@pytest.mark.parametrize("tracker", ["jira-cloud", "jira-dc", "gitlab"], indirect=True)
def test_a_misbehaving_tracker_changes_nothing(app, owner, voters, monkeypatch, tracker, how):
    """Test, import and send each meet a tracker that refuses, redirects, answers 10 MiB or stalls:
    each says so on the page, and the connection, the issues and the estimate stay as they were."""
    fake: FakeTracker = tracker
    gitlab = isinstance(fake, FakeGitLab)
    group_id, members = voters(owner)
    field = "weight" if gitlab else "customfield_10016"
    assert connect(owner, group_id, fake, estimate_field=field).status_code == 302
    query = "shop/web/app" if gitlab else "project = PROJ"
    assert "Added 3" in visible(import_issues(owner, group_id, query))
    key = "#2" if gitlab else "PROJ-2"
    issue = issue_of(app, group_id, key)
    estimate(owner, members, issue.id, ["5", "5", "8"], "5")
    connection, issues = connection_row(app), issues_of(app, group_id)

    fake.hostile = how
    # A stall is cut short here; set only now, so that the setting up above is not hurried.
    monkeypatch.setattr(tracker_http, "TOTAL_SECONDS", 0.5)
    tested = owner.post(f"/groups/{group_id}/tracker", data=credentials(fake) | {"test": "1"})
    assert tested.status_code == 422
    assert HOSTILE[how].format(what="reading who the credentials belong to") in visible(tested)
    saved = connect(owner, group_id, fake, estimate_field=field, send_automatically="y")
    assert saved.status_code == 422
    assert connection_row(app) == connection

    imported = import_issues(owner, group_id, query)
    assert imported.status_code == 422
    what = "reading the issues of shop/web/app" if gitlab else "reading the issues"
    assert "Nothing was imported. " + HOSTILE[how].format(what=what) in visible(imported)

    sent = owner.post(f"/issues/{issue.id}/tracker/send", follow_redirects=True)
    assert sent.status_code == 200
    assert "The estimate was not sent. " + HOSTILE[how].format(what="writing the estimate") in visible(sent)
    assert issues_of(app, group_id) == issues
    assert issue_of(app, group_id, key).final_estimate == "5"
    # The one write that reached the tracker was answered with a refusal, a redirect, 10 MiB or
    # nothing in time, and took no effect
    written = {"weight": 5} if gitlab else {"fields": {"customfield_10016": 5}}
    assert [seen.json() for seen in fake.writes()] == [written]
    if isinstance(fake, FakeGitLab):
        assert fake.issues[1]["weight"] is None
    else:
        assert isinstance(fake, FakeJira)
        assert fake.issues[1].fields["customfield_10016"] is None
