"""The GitLab connector against a GitLab that answers as its REST API v4 documentation shows.

The recorded answers follow GitLab's REST API documentation: `GET /user` ("Users API: get the
current user"), `GET /projects/:id/issues` ("Issues API: list project issues", an array of
issues with `id`, `iid`, `project_id`, `title`, `description`, `weight`, … and pages chosen by
`page` and `per_page`), `PUT /projects/:id/issues/:issue_iid` ("Issues API: edit an issue", which
answers the edited issue), and GitLab's error bodies (`{"message": "404 Project Not Found"}`,
`{"message": "401 Unauthorized"}`, a field's complaints under `message`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from estimator.trackers.base import EstimateField, TrackerError, TrackerIssue
from estimator.trackers.gitlab import MAX_PAGES, GitLabConnector

SECRET = {"token": "glpat-Xq3cW8zN2vB7mK1pL9aT"}
SITE = "https://gitlab.example.com"

ME = {
    "id": 1,
    "username": "john_smith",
    "name": "John Smith",
    "state": "active",
    "locked": False,
    "avatar_url": "https://gitlab.example.com/uploads/user/avatar/1/index.jpg",
    "web_url": "https://gitlab.example.com/john_smith",
    "created_at": "2012-05-23T08:00:58Z",
    "bio": "",
    "public_email": "",
}


def gitlab_issue(
    iid: int, title: str, description: str | None = None, weight: int | None = None
) -> dict[str, Any]:
    """An issue as `GET /projects/:id/issues` lists it."""
    return {
        "id": 7600 + iid,
        "iid": iid,
        "project_id": 8,
        "title": title,
        "description": description,
        "state": "opened",
        "created_at": "2026-11-04T15:31:39.996Z",
        "updated_at": "2026-11-04T15:31:39.996Z",
        "closed_at": None,
        "closed_by": None,
        "labels": ["Backend", "Needs estimate"],
        "milestone": {"id": 12, "iid": 4, "project_id": 8, "title": "Sprint 4", "state": "active"},
        "assignees": [],
        "author": {"id": 1, "username": "john_smith", "name": "John Smith", "state": "active"},
        "type": "ISSUE",
        "user_notes_count": 1,
        "merge_requests_count": 0,
        "upvotes": 0,
        "downvotes": 0,
        "due_date": None,
        "confidential": False,
        "discussion_locked": None,
        "issue_type": "issue",
        "web_url": f"https://gitlab.example.com/shop/web/app/-/issues/{iid}",
        "time_stats": {"time_estimate": 0, "total_time_spent": 0},
        "weight": weight,
        "references": {"short": f"#{iid}", "relative": f"#{iid}", "full": f"shop/web/app#{iid}"},
    }


class GitLab:
    """A mock GitLab that keeps the requests it was sent."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response], base_url: str = SITE) -> None:
        self.handler = handler
        self.base_url = base_url
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


def connect(
    handler: Callable[[httpx.Request], httpx.Response], base_url: str = SITE
) -> tuple[GitLabConnector, GitLab]:
    gitlab = GitLab(handler, base_url)
    client = httpx.Client(transport=httpx.MockTransport(gitlab), base_url=base_url)
    return GitLabConnector(client, base_url, SECRET), gitlab


def silent() -> GitLabConnector:
    """A connector whose GitLab fails the test if anything reaches it."""
    client = httpx.Client(transport=httpx.MockTransport(lambda request: pytest.fail("nothing is sent")))
    return GitLabConnector(client, SITE, SECRET)


def project_issues(issues: list[dict[str, Any]]) -> Callable[[httpx.Request], httpx.Response]:
    """GitLab's issue list over issues, paged as `page` and `per_page` ask."""

    def handler(request: httpx.Request) -> httpx.Response:
        page, per_page = int(request.url.params["page"]), int(request.url.params["per_page"])
        return httpx.Response(200, json=issues[(page - 1) * per_page : page * per_page])

    return handler


# Who am I, at any base address.


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        (SITE, "https://gitlab.example.com/api/v4/user"),
        (SITE + "/", "https://gitlab.example.com/api/v4/user"),
        ("https://example.com/gitlab", "https://example.com/gitlab/api/v4/user"),
        ("https://example.com/gitlab/", "https://example.com/gitlab/api/v4/user"),
    ],
)
def test_check_names_the_account_of_the_token(base_url, expected):
    connector, gitlab = connect(lambda request: httpx.Response(200, json=ME), base_url)
    assert connector.check() == "John Smith (@john_smith)"
    (request,) = gitlab.requests
    assert str(request.url) == expected
    assert request.headers["PRIVATE-TOKEN"] == "glpat-Xq3cW8zN2vB7mK1pL9aT"
    assert "Authorization" not in request.headers


def test_a_refused_token_says_the_credentials_were_refused_without_repeating_them():
    connector, _gitlab = connect(lambda request: httpx.Response(401, json={"message": "401 Unauthorized"}))
    with pytest.raises(TrackerError, match=r"refused the credentials .*\(401\)") as refused:
        connector.check()
    assert "glpat" not in str(refused.value)


def test_a_connection_without_a_token_is_refused_before_anything_is_sent():
    client = httpx.Client(transport=httpx.MockTransport(lambda request: pytest.fail("nothing is sent")))
    with pytest.raises(TrackerError, match="access token"):
        GitLabConnector(client, SITE, {"token": ""}).check()


def test_the_weight_is_the_one_field():
    assert silent().fields() == [EstimateField("weight", "Weight")]


# Search.


def test_search_sends_the_filters_and_reads_key_title_description_and_weight():
    issues = [
        gitlab_issue(6, "Checkout with a saved card", "## Why\r\n\r\n- faster\r\n- **fewer** drop-outs", 5),
        gitlab_issue(7, "  Refund in one click ", None, None),
        gitlab_issue(9, "Show the stock", "", 0),
    ]
    connector, gitlab = connect(project_issues(issues))
    query = 'shop/web/app label:Backend label:"Needs estimate" milestone:"Sprint 4" state:opened'
    assert connector.search(query, 50) == [
        TrackerIssue(
            "#6", "Checkout with a saved card", "## Why\n\n- faster\n- **fewer** drop-outs", "5", "8:6"
        ),
        TrackerIssue("#7", "Refund in one click", "", None, "8:7"),
        TrackerIssue("#9", "Show the stock", "", "0", "8:9"),
    ]
    (request,) = gitlab.requests
    assert request.method == "GET"
    assert request.url.raw_path.startswith(b"/api/v4/projects/shop%2Fweb%2Fapp/issues?")
    assert dict(request.url.params) == {
        "labels": "Backend,Needs estimate",
        "milestone": "Sprint 4",
        "state": "opened",
        "per_page": "50",
        "page": "1",
    }
    assert request.content == b""


@pytest.mark.parametrize(
    ("query", "base_url", "path", "params"),
    [
        ("shop/app", SITE, b"/api/v4/projects/shop%2Fapp/issues", {"state": "opened"}),
        (
            "42 state:all search:refund",
            SITE,
            b"/api/v4/projects/42/issues",
            {"state": "all", "search": "refund"},
        ),
        (
            "https://gitlab.example.com/shop/app/-/issues?label_name[]=x milestone:None",
            SITE,
            b"/api/v4/projects/shop%2Fapp/issues",
            {"state": "opened", "milestone": "None"},
        ),
        (
            "https://example.com/gitlab/shop/sub/app.git state:closed",
            "https://example.com/gitlab/",
            b"/gitlab/api/v4/projects/shop%2Fsub%2Fapp/issues",
            {"state": "closed"},
        ),
    ],
)
def test_the_project_is_read_from_a_path_an_id_or_an_address(query, base_url, path, params):
    connector, gitlab = connect(lambda request: httpx.Response(200, json=[]), base_url)
    assert connector.search(query, 10) == []
    (request,) = gitlab.requests
    assert request.url.raw_path.split(b"?")[0] == path
    assert {k: v for k, v in request.url.params.items() if k not in ("page", "per_page")} == params


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "project's path"),
        ("label:Backend", "project's path"),
        ("app", "project's path"),
        ("shop/app Backend", "does not know Backend"),
        ("shop/app assignee:me", "does not know assignee:me"),
        ("shop/app label:", "does not know label:"),
        ("shop/app state:open", "opened, closed or all"),
        ('shop/app label:"Needs estimate', "quotation mark"),
        ('shop/app label:"a,b"', "no comma"),
    ],
)
def test_a_query_that_does_not_read_says_why_and_sends_nothing(query, message):
    with pytest.raises(TrackerError, match=message):
        silent().search(query, 10)


def test_search_reads_pages_until_a_short_one():
    issues = [gitlab_issue(iid, f"Issue {iid}") for iid in range(1, 251)]
    connector, gitlab = connect(project_issues(issues))
    found = connector.search("shop/app", 1000)
    assert [issue.key for issue in found] == [f"#{iid}" for iid in range(1, 251)]
    assert [(r.url.params["page"], r.url.params["per_page"]) for r in gitlab.requests] == [
        ("1", "100"),
        ("2", "100"),
        ("3", "100"),
    ]


def test_search_stops_at_the_limit_without_asking_for_more():
    issues = [gitlab_issue(iid, f"Issue {iid}") for iid in range(1, 251)]
    connector, gitlab = connect(project_issues(issues))
    assert [issue.key for issue in connector.search("shop/app", 2)] == ["#1", "#2"]
    (request,) = gitlab.requests
    assert request.url.params["per_page"] == "2"


def test_a_project_gitlab_does_not_know_is_named_in_the_message():
    connector, _gitlab = connect(
        lambda request: httpx.Response(404, json={"message": "404 Project Not Found"})
    )
    with pytest.raises(TrackerError) as missing:
        connector.search("shop/gone", 10)
    assert "shop/gone" in str(missing.value)
    assert "404 Project Not Found" in str(missing.value)


def test_an_answer_that_is_not_json_is_reported():
    sign_in = "<!DOCTYPE html><html><body>Sign in · GitLab</body></html>"
    connector, _gitlab = connect(lambda request: httpx.Response(200, text=sign_in))
    with pytest.raises(TrackerError, match="not JSON"):
        connector.search("shop/app", 10)


def test_an_answer_that_is_not_an_issue_list_is_reported():
    connector, _gitlab = connect(lambda request: httpx.Response(200, json={"issues": []}))
    with pytest.raises(TrackerError, match="not what GitLab sends"):
        connector.search("shop/app", 10)


def test_a_gitlab_that_ignores_the_page_ends_in_a_clear_error():
    """Every page is the first page again: the issues repeat, and the search says so."""
    first = [gitlab_issue(iid, f"Issue {iid}") for iid in range(1, 101)]
    connector, gitlab = connect(lambda request: httpx.Response(200, json=first))
    with pytest.raises(TrackerError, match="never end"):
        connector.search("shop/app", 1000)
    assert len(gitlab.requests) == 2


def test_a_gitlab_whose_pages_never_run_out_is_stopped():
    """Full pages of new issues, forever: the search stops after MAX_PAGES pages."""
    numbers: Iterator[int] = iter(range(1, 10**7))

    def handler(request: httpx.Request) -> httpx.Response:
        per_page = int(request.url.params["per_page"])
        return httpx.Response(200, json=[gitlab_issue(next(numbers), "More") for _ in range(per_page)])

    connector, gitlab = connect(handler)
    with pytest.raises(TrackerError, match="never end"):
        connector.search("shop/app", 10**9)
    assert len(gitlab.requests) == MAX_PAGES


# Writing the final estimate back: the weight and nothing else.


@pytest.mark.parametrize(("value", "weight"), [("5", 5), ("0", 0), ("13", 13), (" 8 ", 8), ("100", 100)])
def test_write_puts_the_weight_and_nothing_else(value, weight):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json=gitlab_issue(6, "Checkout", weight=json.loads(request.content)["weight"])
        )

    connector, gitlab = connect(handler, "https://example.com/gitlab/")
    connector.write_estimate("8:6", "weight", value)
    (request,) = gitlab.requests
    assert (request.method, str(request.url)) == (
        "PUT",
        "https://example.com/gitlab/api/v4/projects/8/issues/6",
    )
    assert json.loads(request.content) == {"weight": weight}
    assert request.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("value", ["½", "0.5", "2.5", "M", "XL", "?", "☕", "", "-1", "1e3", "5 points"])
def test_an_estimate_that_is_not_a_whole_number_is_refused_before_anything_is_sent(value):
    with pytest.raises(TrackerError, match="whole numbers of 0 or more"):
        silent().write_estimate("8:6", "weight", value)


@pytest.mark.parametrize(
    ("ref", "field"), [("8:6", "title"), ("8:6", "time_estimate"), ("8/6", "weight"), ("x:6", "weight")]
)
def test_only_the_weight_of_an_issue_can_be_written(ref, field):
    with pytest.raises(TrackerError):
        silent().write_estimate(ref, field, "5")


def test_a_gitlab_that_drops_the_weight_says_it_needs_premium():
    """GitLab Free answers the edit with the issue as it was, and no weight in it."""
    free = {key: value for key, value in gitlab_issue(6, "Checkout").items() if key != "weight"}
    connector, _gitlab = connect(lambda request: httpx.Response(200, json=free))
    with pytest.raises(TrackerError, match="Premium"):
        connector.write_estimate("8:6", "weight", "5")


def test_a_weight_gitlab_refuses_shows_gitlabs_reason():
    refusal = {"message": {"weight": ["must be greater than or equal to 0"]}}
    connector, _gitlab = connect(lambda request: httpx.Response(400, json=refusal))
    with pytest.raises(TrackerError, match="weight must be greater than or equal to 0"):
        connector.write_estimate("8:6", "weight", "5")


def test_a_forbidden_write_says_the_credentials_were_refused():
    connector, _gitlab = connect(lambda request: httpx.Response(403, json={"message": "403 Forbidden"}))
    with pytest.raises(TrackerError, match=r"refused the credentials while writing the estimate \(403\)"):
        connector.write_estimate("8:6", "weight", "5")
