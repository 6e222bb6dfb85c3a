"""The Jira connector against a Jira that answers as Atlassian documents it.

Every request the connector sends here is checked against Atlassian's published OpenAPI documents
of the Jira Cloud platform REST API v3 and the Jira Software REST API (`tests/jira_contract.py`,
read from `../shared/trackers/jira/`): the path and method exist, every query parameter is
declared and of its type, the JSON body fits the operation's request schema; every answer the
tests record fits the operation's response schema for its status, except where an answer no Jira
should give (not JSON, a 500) is the point of the test.

Jira Data Center's REST API v2 is not in those documents: its requests are checked as the v3
operation of the same path (same parameters and bodies; `GET /rest/api/2/search` is the
`startAt`-paged search that v3 documents too), its wiki-text descriptions fit `IssueBean`'s open
`fields`, and its Bearer authentication is asserted header by header. Jira Cloud's current
search, `GET /rest/api/3/search/jql`, is newer than the stored documents: it is checked against
Atlassian's current description of that one operation, its issues against the documents' own
`IssueBean` (see `SEARCH_JQL`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from estimator.trackers.base import EstimateField, TrackerError, TrackerIssue
from estimator.trackers.jira import JiraConnector, adf_text, format_number
from tests.jira_contract import ContractError, Jira, check_request, check_response, documents_present

CLOUD = {"email": "mia@example.com", "token": "ATATT3xFfGF0-cloud-token"}
DATA_CENTER = {"token": "NjM3OTc2-pat"}
SITE = "https://example.atlassian.net"

needs_documents = pytest.mark.skipif(
    not documents_present(),
    reason="Atlassian's OpenAPI documents are kept beside the repository in ../shared/trackers/jira/, "
    "and that folder is not there",
)


def json_body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def connect(
    handler: Callable[[httpx.Request], httpx.Response],
    secret: dict[str, str] = CLOUD,
    base_url: str = SITE,
    answers_conform: bool = True,
    estimate_field: str | None = None,
) -> tuple[JiraConnector, Jira]:
    """A connector on a mock Jira at base_url that holds every exchange to the documents."""
    jira = Jira(handler, base_url=base_url, answers_conform=answers_conform)
    return JiraConnector(jira.client(), base_url, secret, estimate_field=estimate_field), jira


def adf(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"type": "doc", "version": 1, "content": list(blocks)}


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **extra}


def paragraph(*inline: dict[str, Any]) -> dict[str, Any]:
    return {"type": "paragraph", "content": list(inline)}


def cloud_issue(number: int, summary: str, description: Any = None, points: Any = None) -> dict[str, Any]:
    """An issue as `GET /rest/api/3/search/jql` lists it with `fields=summary,description,…`."""
    fields: dict[str, Any] = {"summary": summary, "description": description}
    if points is not ...:
        fields["customfield_10016"] = points
    return {
        "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
        "id": str(10000 + number),
        "self": f"{SITE}/rest/api/3/issue/{10000 + number}",
        "key": f"PROJ-{number}",
        "fields": fields,
    }


ME_CLOUD = {
    "self": f"{SITE}/rest/api/3/user?accountId=5b10a2844c20165700ede21g",
    "accountId": "5b10a2844c20165700ede21g",
    "accountType": "atlassian",
    "emailAddress": "mia@example.com",
    "avatarUrls": {"48x48": "https://avatar.example.com/MK-5.png?size=48&s=48"},
    "displayName": "Mia Krystof",
    "active": True,
    "timeZone": "Australia/Sydney",
    "locale": "en_US",
}

FIELDS = [
    {
        "id": "summary",
        "key": "summary",
        "name": "Summary",
        "custom": False,
        "orderable": True,
        "navigable": True,
        "searchable": True,
        "clauseNames": ["summary"],
        "schema": {"type": "string", "system": "summary"},
    },
    {
        "id": "timeoriginalestimate",
        "key": "timeoriginalestimate",
        "name": "Original estimate",
        "custom": False,
        "orderable": True,
        "navigable": True,
        "searchable": True,
        "clauseNames": ["originalEstimate", "timeoriginalestimate"],
        "schema": {"type": "number", "system": "timeoriginalestimate"},
    },
    {
        "id": "customfield_10050",
        "key": "customfield_10050",
        "name": "Business value",
        "custom": True,
        "orderable": True,
        "navigable": True,
        "searchable": True,
        "clauseNames": ["cf[10050]", "Business value"],
        "schema": {
            "type": "number",
            "custom": "com.atlassian.jira.plugin.system.customfieldtypes:float",
            "customId": 10050,
        },
    },
    {
        "id": "customfield_10028",
        "key": "customfield_10028",
        "name": "Story Points",
        "custom": True,
        "orderable": True,
        "navigable": True,
        "searchable": True,
        "clauseNames": ["cf[10028]", "Story Points"],
        "schema": {
            "type": "number",
            "custom": "com.atlassian.jira.plugin.system.customfieldtypes:float",
            "customId": 10028,
        },
    },
    {
        "id": "customfield_10016",
        "key": "customfield_10016",
        "name": "Story point estimate",
        "custom": True,
        "orderable": True,
        "navigable": True,
        "searchable": True,
        "clauseNames": ["cf[10016]", "Story point estimate"],
        "schema": {
            "type": "number",
            "custom": "com.pyxis.greenhopper.jira:jsw-story-points",
            "customId": 10016,
        },
    },
    {
        "id": "customfield_10020",
        "key": "customfield_10020",
        "name": "Sprint",
        "custom": True,
        "orderable": True,
        "navigable": True,
        "searchable": True,
        "clauseNames": ["cf[10020]", "Sprint"],
        "schema": {
            "type": "array",
            "items": "json",
            "custom": "com.pyxis.greenhopper.jira:gh-sprint",
            "customId": 10020,
        },
    },
]

BOARDS = {
    "maxResults": 50,
    "startAt": 0,
    "total": 3,
    "isLast": True,
    "values": [
        {"id": 84, "self": f"{SITE}/rest/agile/1.0/board/84", "name": "PROJ board", "type": "scrum"},
        {"id": 92, "self": f"{SITE}/rest/agile/1.0/board/92", "name": "Support", "type": "kanban"},
        {"id": 7, "self": f"{SITE}/rest/agile/1.0/board/7", "name": "Apps board", "type": "simple"},
    ],
}

BOARD_84_CONFIGURATION = {
    "id": 84,
    "name": "PROJ board",
    "type": "scrum",
    "self": f"{SITE}/rest/agile/1.0/board/84/configuration",
    "location": {"type": "project", "projectKeyOrId": "10000"},
    "filter": {"id": "10010", "self": f"{SITE}/rest/api/3/filter/10010"},
    "columnConfig": {"columns": [], "constraintType": "issueCount"},
    "estimation": {
        "type": "field",
        "field": {"fieldId": "customfield_10016", "displayName": "Story point estimate"},
    },
    "ranking": {"rankCustomFieldId": 10019},
}

PAGE_ONE = {
    "issues": [
        cloud_issue(
            1,
            "Log in with a passkey",
            adf(
                {"type": "heading", "attrs": {"level": 2}, "content": [text("Goal")]},
                paragraph(
                    text("Ask "),
                    {"type": "mention", "attrs": {"id": "5b10a2844c20165700ede21g", "text": "@Mia Krystof"}},
                    text(" first "),
                    {"type": "emoji", "attrs": {"shortName": ":smile:", "text": "😄"}},
                    {"type": "hardBreak"},
                    text("then build it", marks=[{"type": "strong"}]),
                ),
                {
                    "type": "bulletList",
                    "content": [
                        {"type": "listItem", "content": [paragraph(text("WebAuthn"))]},
                        {
                            "type": "listItem",
                            "content": [
                                paragraph(text("Fallback")),
                                {
                                    "type": "orderedList",
                                    "attrs": {"order": 1},
                                    "content": [
                                        {"type": "listItem", "content": [paragraph(text("e-mail link"))]}
                                    ],
                                },
                            ],
                        },
                    ],
                },
                {
                    "type": "codeBlock",
                    "attrs": {"language": "python"},
                    "content": [text("login(passkey)\nok()")],
                },
            ),
            points=5.0,
        ),
        cloud_issue(2, "Forget the password form", None, None),
    ],
    "nextPageToken": "CAEaAggD",
    "isLast": False,
}
PAGE_TWO = {
    "issues": [cloud_issue(3, "Rate-limit sign-ups", adf(paragraph(text("Per address"))), 2.5)],
    "isLast": True,
}


def cloud_search(request: httpx.Request) -> httpx.Response:
    """Jira Cloud's enhanced search over three issues, two to a page."""
    assert request.url.path == "/rest/api/3/search/jql"
    token = request.url.params.get("nextPageToken")
    return httpx.Response(200, json=PAGE_ONE if token is None else PAGE_TWO)


# Who am I, on Cloud and Data Center, at any base address.


@needs_documents
def test_cloud_check_names_the_account_signed_in_with_the_api_token():
    connector, jira = connect(lambda request: httpx.Response(200, json=ME_CLOUD))
    assert connector.check() == "Mia Krystof"
    (request,) = jira.requests
    assert request.url == f"{SITE}/rest/api/3/myself"
    basic = base64.b64encode(b"mia@example.com:ATATT3xFfGF0-cloud-token").decode()
    assert request.headers["Authorization"] == f"Basic {basic}"


@needs_documents
@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://jira.example.com", "https://jira.example.com/rest/api/2/myself"),
        ("https://jira.example.com/", "https://jira.example.com/rest/api/2/myself"),
        ("https://example.com/jira", "https://example.com/jira/rest/api/2/myself"),
        ("https://example.com/jira/", "https://example.com/jira/rest/api/2/myself"),
    ],
)
def test_data_center_check_uses_the_personal_access_token_at_the_base_address(base_url, expected):
    me = {
        "self": "https://jira.example.com/rest/api/2/user?username=mia",
        "key": "JIRAUSER10100",
        "name": "mia",
        "emailAddress": "mia@example.com",
        "displayName": "Mia Krystof",
        "active": True,
        "timeZone": "Europe/Berlin",
        "locale": "de_DE",
    }
    connector, jira = connect(lambda request: httpx.Response(200, json=me), DATA_CENTER, base_url)
    assert connector.check() == "Mia Krystof"
    (request,) = jira.requests
    assert str(request.url) == expected
    assert request.headers["Authorization"] == "Bearer NjM3OTc2-pat"


@needs_documents
def test_refused_credentials_say_so_without_repeating_them():
    connector, _jira = connect(
        lambda request: httpx.Response(401, text="Client must be authenticated to access this resource.")
    )
    with pytest.raises(
        TrackerError, match=r"refused the credentials while reading who .* \(401\)"
    ) as refused:
        connector.check()
    assert "ATATT3xFfGF0" not in str(refused.value)


@needs_documents
def test_a_forbidden_write_says_the_credentials_were_refused():
    connector, _jira = connect(lambda request: httpx.Response(403))
    with pytest.raises(TrackerError, match=r"refused the credentials while writing the estimate \(403\)"):
        connector.write_estimate("10001", "customfield_10016", "5")


def test_a_secret_without_a_token_is_refused_before_anything_is_sent():
    client = httpx.Client(transport=httpx.MockTransport(lambda request: pytest.fail("nothing is sent")))
    connector = JiraConnector(client, SITE, {"email": "mia@example.com", "token": " "})
    with pytest.raises(TrackerError, match="API token"):
        connector.check()


# Fields that can receive the estimate.


@needs_documents
def test_fields_offer_story_points_first_then_boards_then_other_numbers():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/rest/api/3/field":
            return httpx.Response(200, json=FIELDS)
        assert request.url.path == "/rest/agile/1.0/board"
        return httpx.Response(200, json=BOARDS)

    connector, jira = connect(handler)
    assert connector.fields() == [
        EstimateField("customfield_10016", "Story point estimate"),
        EstimateField("customfield_10028", "Story Points"),
        EstimateField("agile-estimation:7", "Estimation of the board Apps board"),
        EstimateField("agile-estimation:84", "Estimation of the board PROJ board"),
        EstimateField("customfield_10050", "Business value"),
    ]
    # Neither the time estimate (seconds) nor the Kanban board is offered: a 5 there is not 5 points.


@needs_documents
def test_fields_without_jira_software_are_the_custom_fields():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/rest/api/3/field":
            return httpx.Response(200, json=FIELDS)
        return httpx.Response(404)

    connector, _jira = connect(handler, answers_conform=False)  # the software API is not there at all
    assert [field.id for field in connector.fields()] == [
        "customfield_10016",
        "customfield_10028",
        "customfield_10050",
    ]


# Search.


@needs_documents
def test_cloud_search_reads_every_page_by_token_and_converts_descriptions():
    connector, jira = connect(cloud_search, estimate_field="customfield_10016")
    issues = connector.search("project = PROJ ORDER BY Rank", 50)
    assert issues == [
        TrackerIssue(
            key="PROJ-1",
            title="Log in with a passkey",
            details="Goal\n\nAsk @Mia Krystof first 😄\nthen build it\n\n"
            "- WebAuthn\n- Fallback\n  1. e-mail link\n\n"
            "login(passkey)\nok()",
            estimate="5",
            ref="10001",
        ),
        TrackerIssue(key="PROJ-2", title="Forget the password form", details="", estimate=None, ref="10002"),
        TrackerIssue(
            key="PROJ-3", title="Rate-limit sign-ups", details="Per address", estimate="2.5", ref="10003"
        ),
    ]
    first, second = jira.requests
    assert dict(first.url.params) == {
        "jql": "project = PROJ ORDER BY Rank",
        "fields": "summary,description,customfield_10016",
        "maxResults": "50",
    }
    assert second.url.params["nextPageToken"] == "CAEaAggD"
    assert second.url.params["maxResults"] == "48"


@needs_documents
def test_search_stops_at_the_limit_without_asking_for_more():
    connector, jira = connect(cloud_search)
    issues = connector.search("project = PROJ", 2)
    assert [issue.key for issue in issues] == ["PROJ-1", "PROJ-2"]
    assert [issue.estimate for issue in issues] == [None, None]  # no field picked: no estimate read
    (request,) = jira.requests
    assert request.url.params["maxResults"] == "2"
    assert request.url.params["fields"] == "summary,description"


@needs_documents
def test_search_with_a_board_reads_the_field_the_board_estimates_in():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/rest/agile/1.0/board/84/configuration":
            return httpx.Response(200, json=BOARD_84_CONFIGURATION)
        return cloud_search(request)

    connector, jira = connect(handler, estimate_field="agile-estimation:84")
    issues = connector.search("sprint in openSprints()", 10)
    assert [issue.estimate for issue in issues] == ["5", None, "2.5"]
    assert jira.requests[1].url.params["fields"] == "summary,description,customfield_10016"


@needs_documents
def test_data_center_search_pages_by_offset_and_keeps_wiki_text():
    def issue(number: int, points: float | None) -> dict[str, Any]:
        return {
            "expand": "operations,versionedRepresentations,editmeta,changelog,renderedFields",
            "id": str(20000 + number),
            "self": f"https://example.com/jira/rest/api/2/issue/{20000 + number}",
            "key": f"OPS-{number}",
            "fields": {
                "summary": f"Task {number}",
                "description": "h2. Why\n* one\n* {{two}}",
                "customfield_10002": points,
            },
        }

    pages = {0: [issue(1, 3.0), issue(2, None)], 2: [issue(3, 0.5)]}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/jira/rest/api/2/search"
        start = int(request.url.params["startAt"])
        page = {
            "expand": "schema,names",
            "startAt": start,
            "maxResults": 2,
            "total": 3,
            "issues": pages[start],
        }
        return httpx.Response(200, json=page)

    connector, jira = connect(
        handler, DATA_CENTER, "https://example.com/jira/", estimate_field="customfield_10002"
    )
    issues = connector.search("project = OPS", 1000)
    assert [(i.key, i.title, i.estimate, i.ref) for i in issues] == [
        ("OPS-1", "Task 1", "3", "20001"),
        ("OPS-2", "Task 2", None, "20002"),
        ("OPS-3", "Task 3", "0.5", "20003"),
    ]
    assert issues[0].details == "h2. Why\n* one\n* {{two}}"
    assert [request.url.params["startAt"] for request in jira.requests] == ["0", "2"]
    assert all(request.headers["Authorization"] == "Bearer NjM3OTc2-pat" for request in jira.requests)


@needs_documents
def test_a_query_jira_refuses_shows_jiras_reason():
    refusal = {"errorMessages": ["The value 'NOPE' does not exist for the field 'project'."], "errors": {}}
    connector, _jira = connect(lambda request: httpx.Response(400, json=refusal))
    with pytest.raises(TrackerError) as refused:
        connector.search("project = NOPE", 10)
    assert "The value 'NOPE' does not exist for the field 'project'." in str(refused.value)
    assert "reading the issues" in str(refused.value)


@needs_documents
def test_a_wrong_address_says_nothing_is_there():
    # No Jira answers there at all: the web server's own 404 is no answer of the API.
    connector, _jira = connect(
        lambda request: httpx.Response(404, text="<html>Not Found</html>"),
        DATA_CENTER,
        "https://jira.example.com",
        answers_conform=False,
    )
    with pytest.raises(TrackerError, match=r"found nothing at that address .*\(404\)"):
        connector.search("project = OPS", 10)


def test_an_empty_query_is_refused_before_anything_is_sent():
    client = httpx.Client(transport=httpx.MockTransport(lambda request: pytest.fail("nothing is sent")))
    with pytest.raises(TrackerError, match="JQL"):
        JiraConnector(client, SITE, CLOUD).search("  ", 10)


@needs_documents
def test_an_answer_that_is_not_json_is_reported():
    login_page = "<!DOCTYPE html><html><body>Log in to continue</body></html>"
    connector, _jira = connect(
        lambda request: httpx.Response(200, text=login_page, headers={"Content-Type": "text/html"}),
        answers_conform=False,
    )
    with pytest.raises(TrackerError, match="not JSON"):
        connector.search("project = PROJ", 10)


@needs_documents
def test_a_server_error_is_reported_with_its_status():
    connector, _jira = connect(lambda request: httpx.Response(500, text="oops"), answers_conform=False)
    with pytest.raises(TrackerError, match="500"):
        connector.check()


@needs_documents
def test_pages_that_repeat_themselves_end_in_a_clear_error():
    """A Jira that hands out a new token for the same page again, forever."""
    served = iter(range(1_000))

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={**PAGE_ONE, "nextPageToken": f"token-{next(served)}"})

    connector, jira = connect(handler)
    with pytest.raises(TrackerError, match="never end"):
        connector.search("project = PROJ", 1000)
    assert len(jira.requests) == 2


@needs_documents
def test_a_token_that_comes_back_ends_in_a_clear_error():
    """A Jira whose pages hold new issues but whose token leads round in a circle."""
    numbers = iter(range(1, 1_000))

    def handler(request: httpx.Request) -> httpx.Response:
        issues = [cloud_issue(next(numbers), "Again"), cloud_issue(next(numbers), "Again")]
        return httpx.Response(200, json={"issues": issues, "nextPageToken": "same", "isLast": False})

    connector, jira = connect(handler)
    with pytest.raises(TrackerError, match="never end"):
        connector.search("project = PROJ", 1000)
    assert len(jira.requests) == 2


@needs_documents
def test_a_data_center_that_ignores_the_offset_ends_in_a_clear_error():
    page = {
        "startAt": 0,
        "maxResults": 2,
        "total": 50,
        "issues": [cloud_issue(1, "One"), cloud_issue(2, "Two")],
    }
    connector, jira = connect(
        lambda request: httpx.Response(200, json=page), DATA_CENTER, "https://jira.example.com"
    )
    with pytest.raises(TrackerError, match="never end"):
        connector.search("project = PROJ", 1000)
    assert len(jira.requests) == 2


@needs_documents
def test_an_empty_page_ends_the_search():
    pages = iter([PAGE_ONE, {"issues": [], "nextPageToken": "more", "isLast": False}])
    connector, jira = connect(lambda request: httpx.Response(200, json=next(pages)))
    assert [issue.key for issue in connector.search("project = PROJ", 1000)] == ["PROJ-1", "PROJ-2"]
    assert len(jira.requests) == 2


# Writing the final estimate back: the number and nothing else.


@needs_documents
@pytest.mark.parametrize(
    ("value", "number"), [("5", 5), ("13", 13), ("½", 0.5), ("0.5", 0.5), ("2.25", 2.25), (" 8 ", 8)]
)
def test_cloud_write_puts_the_number_into_the_field_and_nothing_else(value, number):
    connector, jira = connect(lambda request: httpx.Response(204))
    connector.write_estimate("10001", "customfield_10016", value)
    (request,) = jira.requests
    assert (request.method, str(request.url)) == ("PUT", f"{SITE}/rest/api/3/issue/10001")
    assert json_body(request) == {"fields": {"customfield_10016": number}}
    assert type(json_body(request)["fields"]["customfield_10016"]) is type(number)


@needs_documents
def test_data_center_write_uses_api_2_under_the_context_path():
    connector, jira = connect(lambda request: httpx.Response(204), DATA_CENTER, "https://example.com/jira")
    connector.write_estimate("OPS-12", "customfield_10002", "3")
    (request,) = jira.requests
    assert str(request.url) == "https://example.com/jira/rest/api/2/issue/OPS-12"
    assert json_body(request) == {"fields": {"customfield_10002": 3}}
    assert request.headers["Authorization"] == "Bearer NjM3OTc2-pat"


@needs_documents
def test_write_through_a_board_uses_the_estimation_endpoint():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"fieldId": "customfield_10016", "value": json_body(request)["value"]}
        )

    connector, jira = connect(handler)
    connector.write_estimate("10001", "agile-estimation:84", "½")
    (request,) = jira.requests
    assert request.method == "PUT"
    assert request.url.path == "/rest/agile/1.0/issue/10001/estimation"
    assert dict(request.url.params) == {"boardId": "84"}
    assert json_body(request) == {"value": "0.5"}


@pytest.mark.parametrize("value", ["M", "XL", "?", "☕", "", "1e3", "-3", "inf", "NaN", "5 points"])
def test_an_estimate_that_is_not_a_number_is_refused_before_anything_is_sent(value):
    client = httpx.Client(transport=httpx.MockTransport(lambda request: pytest.fail("nothing is sent")))
    connector = JiraConnector(client, SITE, CLOUD)
    for field in ("customfield_10016", "agile-estimation:84"):
        with pytest.raises(TrackerError, match="takes numbers only"):
            connector.write_estimate("10001", field, value)


@pytest.mark.parametrize(
    ("ref", "field"),
    [("10001", "summary"), ("10001", "customfield_1 OR 1=1"), ("10001/../../myself", "customfield_10016")],
)
def test_only_an_estimate_field_of_an_issue_can_be_written(ref, field):
    client = httpx.Client(transport=httpx.MockTransport(lambda request: pytest.fail("nothing is sent")))
    with pytest.raises(TrackerError):
        JiraConnector(client, SITE, CLOUD).write_estimate(ref, field, "5")


@needs_documents
def test_a_field_jira_will_not_set_shows_jiras_reason():
    refusal = {
        "errorMessages": [],
        "errors": {
            "customfield_10016": "Field 'customfield_10016' cannot be set. "
            "It is not on the appropriate screen, or unknown."
        },
    }
    connector, _jira = connect(lambda request: httpx.Response(400, json=refusal))
    with pytest.raises(TrackerError, match="not on the appropriate screen"):
        connector.write_estimate("10001", "customfield_10016", "5")


# The judge itself: it catches what Atlassian's documents do not allow.


@needs_documents
@pytest.mark.parametrize(
    "request_",
    [
        # the estimate as a JSON number where the board estimation takes a string
        httpx.Request("PUT", f"{SITE}/rest/agile/1.0/issue/10001/estimation?boardId=84", json={"value": 5}),
        # anything beside the value
        httpx.Request(
            "PUT",
            f"{SITE}/rest/agile/1.0/issue/10001/estimation?boardId=84",
            json={"value": "5", "note": "x"},
        ),
        # `fields` must be an object of field ids
        httpx.Request("PUT", f"{SITE}/rest/api/3/issue/10001", json={"fields": "customfield_10016=5"}),
        # a board id that is not a number
        httpx.Request(
            "PUT", f"{SITE}/rest/agile/1.0/issue/10001/estimation?boardId=PROJ", json={"value": "5"}
        ),
        # a parameter the operation does not declare, and one of the wrong type
        httpx.Request("GET", f"{SITE}/rest/api/3/search/jql?jql=x&startAt=50"),
        httpx.Request("GET", f"{SITE}/rest/api/3/search/jql?jql=x&maxResults=all"),
        # a path or a method that is not there
        httpx.Request("GET", f"{SITE}/rest/api/3/searches"),
        httpx.Request("PATCH", f"{SITE}/rest/api/3/issue/10001", json={"fields": {}}),
    ],
)
def test_the_judge_refuses_requests_the_documents_do_not_allow(request_):
    with pytest.raises(ContractError):
        check_request(request_, SITE)


@needs_documents
@pytest.mark.parametrize(
    ("request_", "response"),
    [
        (
            httpx.Request("GET", f"{SITE}/rest/api/3/search/jql?jql=x"),
            httpx.Response(200, json={"issues": "none"}),
        ),
        # the old search's `total` is not in the enhanced search's answer
        (httpx.Request("GET", f"{SITE}/rest/api/3/search/jql?jql=x"), httpx.Response(200, json={"total": 3})),
        (httpx.Request("GET", f"{SITE}/rest/api/3/field"), httpx.Response(200, json=[{"id": 10016}])),
        (httpx.Request("GET", f"{SITE}/rest/api/3/myself"), httpx.Response(200, json={"displayName": 7})),
        # a status the operation does not declare
        (
            httpx.Request("PUT", f"{SITE}/rest/api/3/issue/1", json={"fields": {}}),
            httpx.Response(200, json={}),
        ),
    ],
)
def test_the_judge_refuses_answers_the_documents_do_not_allow(request_, response):
    with pytest.raises(ContractError):
        check_response(request_, response, SITE)


@needs_documents
def test_a_connector_that_sent_a_malformed_body_would_be_stopped_by_the_judge(monkeypatch):
    """The connector's requests really pass through the judge: were the board estimation sent as a
    JSON number (Jira Software takes a string), the test would fail before the mock answered."""
    connector, jira = connect(lambda request: pytest.fail("a malformed request reached the mock"))
    monkeypatch.setattr("estimator.trackers.jira._decimal", lambda number: number)
    with pytest.raises(ContractError, match="is not of type 'string'"):
        connector.write_estimate("10001", "agile-estimation:84", "5")
    assert jira.requests == []


# Atlassian Document Format as plain text.


def test_adf_of_every_kind_reads_as_plain_text():
    document = adf(
        {"type": "heading", "attrs": {"level": 1}, "content": [text("Title")]},
        paragraph(
            text("See "),
            {"type": "inlineCard", "attrs": {"url": "https://example.com/spec"}},
            text(" by "),
            {"type": "date", "attrs": {"timestamp": "1767225600000"}},
            text(" — "),
            {"type": "status", "attrs": {"text": "IN PROGRESS", "color": "blue"}},
        ),
        {"type": "blockquote", "content": [paragraph(text("Quoted")), paragraph(text("twice"))]},
        {"type": "rule"},
        {
            "type": "orderedList",
            "attrs": {"order": 3},
            "content": [
                {"type": "listItem", "content": [paragraph(text("third"))]},
                {"type": "listItem", "content": [paragraph(text("fourth"))]},
            ],
        },
        {
            "type": "taskList",
            "attrs": {"localId": "t"},
            "content": [
                {"type": "taskItem", "attrs": {"localId": "1", "state": "DONE"}, "content": [text("done")]},
                {"type": "taskItem", "attrs": {"localId": "2", "state": "TODO"}, "content": [text("to do")]},
            ],
        },
        {
            "type": "table",
            "content": [
                {
                    "type": "tableRow",
                    "content": [
                        {"type": "tableHeader", "content": [paragraph(text("Case"))]},
                        {"type": "tableHeader", "content": [paragraph(text("Points"))]},
                    ],
                },
                {
                    "type": "tableRow",
                    "content": [
                        {"type": "tableCell", "content": [paragraph(text("login"))]},
                        {"type": "tableCell", "content": [paragraph(text("3"))]},
                    ],
                },
            ],
        },
        {"type": "panel", "attrs": {"panelType": "info"}, "content": [paragraph(text("Note"))]},
        {"type": "expand", "attrs": {"title": "Details"}, "content": [paragraph(text("Hidden"))]},
        {"type": "mediaSingle", "content": [{"type": "media", "attrs": {"id": "x", "type": "file"}}]},
        paragraph(),
        paragraph(text("Mention "), {"type": "mention", "attrs": {"id": "1", "text": "Ann"}}),
    )
    assert adf_text(document) == (
        "Title\n\n"
        "See https://example.com/spec by 2026-01-01 — IN PROGRESS\n\n"
        "> Quoted\n>\n> twice\n\n"
        "---\n\n"
        "3. third\n4. fourth\n\n"
        "[x] done\n[ ] to do\n\n"
        "Case | Points\nlogin | 3\n\n"
        "Note\n\n"
        "Details\n\nHidden\n\n"
        "Mention @Ann"
    )


def test_adf_that_is_not_a_document_reads_as_nothing_and_deep_nesting_is_cut():
    assert adf_text(None) == ""
    assert adf_text(["not", "a", "document"]) == ""
    assert adf_text({"type": "doc", "content": "nonsense"}) == ""
    assert adf_text("h1. Wiki text stays") == "h1. Wiki text stays"
    deep: dict[str, Any] = paragraph(text("bottom"))
    for _ in range(5_000):
        deep = {"type": "blockquote", "content": [deep]}
    assert "bottom" not in adf_text(adf(deep, paragraph(text("top"))))
    assert adf_text(adf(deep, paragraph(text("top")))).endswith("top")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5.0, "5"),
        (5, "5"),
        (2.5, "2.5"),
        (0.5, "0.5"),
        (13.0, "13"),
        (0.1 + 0.2, "0.3"),
        (None, None),
        ("5", None),
        (True, None),
        (float("nan"), None),
    ],
)
def test_story_points_read_as_the_deck_writes_them(value, expected):
    assert format_number(value) == expected


@needs_documents
def test_an_answer_nested_deeper_than_python_reads_is_reported_as_not_json():
    deep = "[" * 100_000 + "]" * 100_000
    connector, _jira = connect(lambda request: httpx.Response(200, text=deep), answers_conform=False)
    with pytest.raises(TrackerError, match="not JSON"):
        connector.search("project = PROJ", 10)
