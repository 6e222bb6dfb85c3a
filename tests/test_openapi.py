"""The OpenAPI document: it describes every API route, and the real answers match it.

schemathesis reads the document from the app and sends generated requests to it in-process
(WSGI, no server), checking every answer with its default checks: no server error, documented
status codes, content types, headers and bodies, auth that is enforced, invalid input refused.
Its pytest plugin's fixture-based loader does not run under pytest 9 (it sets a node attribute
pytest no longer has), so the tests drive its Hypothesis strategies directly, as schemathesis
documents for tests outside its plugin.
"""

import re
from collections import Counter

import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis.errors import FailureGroup

import estimator.live
from estimator.api import routes
from estimator.live.cache import VersionCache
from estimator.voting.state import issue_state
from tests.conftest import add_issue, create_group, join, vote
from tests.test_api import ISSUE_KEYS

ISSUE = "/api/issues/{issue_id}"
GROUP = "/api/groups/{group_id}"
EVENTS = "/api/groups/{group_id}/events"
REGIONS = "/api/groups/{group_id}/regions"
MEMBERS_ONLY = (ISSUE, GROUP, EVENTS, REGIONS)
# Database-backed requests on a busy machine: no per-example deadline; enough examples to mix
# real objects, unknown ones and ETags, while the whole file stays well under a minute.
FUZZ = settings(max_examples=60, deadline=None)


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: `/api/issues/<id:issue_id>` → `/api/issues/{issue_id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def everyone_votes(clients, issue_id: int, cards: list[str]) -> None:
    """Each client votes the card at the same position."""
    for client, card in zip(clients, cards, strict=True):
        assert vote(client, issue_id, card).status_code in (200, 302)


@pytest.fixture
def estimating(app, team, new_client):
    """Olivia's range group with issues in every state, and a t-shirt group with a result.

    Issues: voting with a vote cast; revealed (with a `?`); estimated; re-voted, so it has a
    result in its history and a new open round. Otto observes, Dave votes, Mallory is in neither.
    """
    owner, bob, carol = team["owner"], team["bob"], team["carol"]
    dave = new_client("Dave")
    assert join(app, dave, team["group"]).status_code == 302
    assert join(app, new_client("Otto"), team["group"], role="observer").status_code == 302
    voters = [owner, bob, carol, dave]
    group = team["group"]

    voting = team["issue"]
    vote(bob, voting, "5")

    revealed = add_issue(app, owner, group, "PROJ-2", "Revealed, with one unsure")
    everyone_votes(voters, revealed, ["3", "8", "5", "?"])
    owner.post(f"/issues/{revealed}/reveal")

    estimated = add_issue(app, owner, group, "PROJ-3", "Estimated")
    everyone_votes(voters, estimated, ["5", "5", "5", "5"])
    owner.post(f"/issues/{estimated}/reveal")
    owner.post(f"/issues/{estimated}/accept", data={"estimate": "5"})

    revoted = add_issue(app, owner, group, "PROJ-4", "Re-voted")
    everyone_votes(voters, revoted, ["1", "13", "21", "2"])
    owner.post(f"/issues/{revoted}/reveal")
    owner.post(f"/issues/{revoted}/revote")
    vote(carol, revoted, "8")

    sizes = create_group(owner, "Design", deck="tshirt")
    for member in (bob, carol, dave):
        assert join(app, member, sizes).status_code == 302
    sized = add_issue(app, owner, sizes, "UI-1", "Sized")
    everyone_votes([bob, carol, dave], sized, ["S", "XL", "M"])  # the facilitator's card would not count
    owner.post(f"/issues/{sized}/reveal")

    issues = {
        "voting": voting,
        "revealed": revealed,
        "estimated": estimated,
        "revoted": revoted,
        "sized": sized,
    }
    states = {name: bob.get(f"/api/issues/{i}").json for name, i in issues.items()}
    assert {name: (s["state"], s["round"], len(s["history"])) for name, s in states.items()} == {
        "voting": ("voting", 1, 0),
        "revealed": ("revealed", 1, 0),
        "estimated": ("estimated", 1, 0),
        "revoted": ("voting", 2, 1),
        "sized": ("revealed", 1, 0),
    }, "the scenario must hold every state the document describes"
    assert (
        states["revealed"]["result"]["unsure"] == 1 and states["sized"]["result"]["nearest_integer"] is None
    )
    return {
        "issues": issues,
        "groups": {"range": group, "tshirt": sizes},
        "member": bob,
        "outsider": new_client("Mallory"),
    }


def session_cookie(client) -> dict[str, str]:
    """The cookie that carries a test client's login, to send with schemathesis's requests."""
    cookie = client.get_cookie("session")
    assert cookie is not None
    return {"session": cookie.value}


def load_schema(app):
    """The document as schemathesis reads it from the app."""
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


def test_document_describes_every_api_route(app, client):
    document = client.get("/api/openapi.json").json
    described = {
        (path, method.upper()) for path, operations in document["paths"].items() for method in operations
    }
    served = {
        (openapi_path(rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert served, "the API has routes"
    assert served <= described, f"API routes missing from /api/openapi.json: {sorted(served - described)}"
    assert described <= served, f"documented but not served: {sorted(described - served)}"


def test_document_is_public_json_and_says_what_clients_rely_on(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.is_json
    document = response.json
    assert document["openapi"].startswith("3.")
    assert document["components"]["securitySchemes"]["session"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "session",
        "description": "The signed session cookie that logging in at /login sets.",
    }
    assert document["paths"]["/api/openapi.json"]["get"]["security"] == []  # public
    schemas = document["components"]["schemas"]
    for path, shape in ((ISSUE, "IssueStatus"), (GROUP, "GroupStatus")):
        operation = document["paths"][path]["get"]
        assert operation["security"] == [{"session": []}]
        responses = operation["responses"]
        assert set(responses) == {"200", "304", "401", "404"}
        assert responses["200"]["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{shape}"
        }
        assert "content" not in responses["304"]
        for status in ("200", "304"):
            assert responses[status]["headers"]["ETag"]["required"] is True
        for status in ("401", "404"):
            error = responses[status]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorBody"}
        assert [p["name"] for p in operation["parameters"] if p["in"] == "header"] == ["If-None-Match"]
        assert schemas[shape]["additionalProperties"] is False
    # The event stream, and the 204 of a worker that cannot hold one: the client polls instead.
    events = document["paths"][EVENTS]["get"]["responses"]
    # 400: a view or version no page names; 429: a person or address holds as many as it may
    assert set(events) == {"200", "204", "400", "401", "404", "429"}
    assert events["429"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert list(events["200"]["content"]) == ["text/event-stream"]
    assert "content" not in events["204"] and "Poll" in events["204"]["description"]
    # the document lists exactly the fields the API sends (tests/test_api.py checks those)
    assert set(schemas["IssueStatus"]["required"]) == set(schemas["IssueStatus"]["properties"]) == ISSUE_KEYS
    nullable = {"type": "null"}
    assert nullable in schemas["IssueStatus"]["properties"]["result"]["anyOf"]
    assert schemas["Result"]["properties"]["distribution"]["additionalProperties"]["type"] == "integer"
    assert schemas["HistoryEntry"]["properties"]["result"] == {"$ref": "#/components/schemas/Result"}
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', response.get_data(as_text=True)))
    assert refs == set(schemas), "every schema is used, and every one used is there"


def test_every_state_and_answer_matches_the_document(app, estimating):
    """One real request per documented answer, checked by schemathesis against the document."""
    schema = load_schema(app)
    member, outsider = session_cookie(estimating["member"]), session_cookie(estimating["outsider"])

    def check(path: str, parameters: dict[str, int], cookies: dict[str, str] | None, headers=None):
        case = schema[path]["GET"].Case(
            path_parameters=parameters, headers=headers or {}, cookies=cookies or {}
        )
        return case.call_and_validate()

    for issue_id in estimating["issues"].values():
        first = check(ISSUE, {"issue_id": issue_id}, member)
        assert first.status_code == 200
        again = check(ISSUE, {"issue_id": issue_id}, member, {"If-None-Match": first.headers["etag"][0]})
        assert again.status_code == 304
    for group_id in estimating["groups"].values():
        first = check(GROUP, {"group_id": group_id}, member)
        assert first.status_code == 200
        again = check(GROUP, {"group_id": group_id}, member, {"If-None-Match": first.headers["etag"][0]})
        assert again.status_code == 304
    issue_id, group_id = estimating["issues"]["voting"], estimating["groups"]["range"]
    # The event stream of a worker that cannot hold it (this in-process one), and of one that can.
    assert check(EVENTS, {"group_id": group_id}, member).status_code == 204
    with pytest.MonkeyPatch.context() as streams_held:
        streams_held.setattr(estimator.live, "cooperative_worker", lambda: True)
        assert check(EVENTS, {"group_id": group_id}, member).status_code == 200
    assert check(ISSUE, {"issue_id": issue_id}, None).status_code == 401
    assert check(GROUP, {"group_id": group_id}, None).status_code == 401
    assert check(ISSUE, {"issue_id": issue_id}, outsider).status_code == 404
    assert check(GROUP, {"group_id": group_id}, outsider).status_code == 404
    assert check("/api/openapi.json", {}, None).status_code == 200


def test_an_undocumented_field_is_caught_by_the_tests_but_never_breaks_the_api(app, estimating, monkeypatch):
    monkeypatch.setattr(routes, "issue_state", lambda issue: {**issue_state(issue), "surprise": 1})
    monkeypatch.setitem(
        app.extensions, "live_json", VersionCache(1 << 20)
    )  # JSON states built earlier are kept
    issue_id = estimating["issues"]["revealed"]
    response = estimating["member"].get(f"/api/issues/{issue_id}")
    assert response.status_code == 200 and response.json["surprise"] == 1  # no 500 in production
    case = load_schema(app)[ISSUE]["GET"].Case(
        path_parameters={"issue_id": issue_id}, cookies=session_cookie(estimating["member"])
    )
    with pytest.raises(FailureGroup) as failures:
        case.call_and_validate()
    assert ["surprise" in str(failure) for failure in failures.value.exceptions] == [True]


def aim_at(schema, estimating) -> None:
    """Make half of the generated requests name real objects and send their current ETags."""
    ids = {ISSUE: list(estimating["issues"].values()), GROUP: list(estimating["groups"].values())}
    member = estimating["member"]
    etags = {
        path: [member.get(path.split("{")[0] + str(i)).headers["ETag"] for i in found]
        for path, found in ids.items()
    }
    ids[EVENTS] = ids[REGIONS] = ids[GROUP]

    @schema.hook
    def before_generate_path_parameters(context, strategy):
        path = context.operation.path
        if path not in ids:
            return strategy
        (name,) = (parameter.name for parameter in context.operation.path_parameters)
        return st.one_of(strategy, st.fixed_dictionaries({name: st.sampled_from(ids[path])}))

    @schema.hook
    def before_generate_headers(context, strategy):
        path = context.operation.path
        if path not in etags:
            return strategy
        return st.one_of(strategy, st.fixed_dictionaries({"If-None-Match": st.sampled_from(etags[path])}))


def fuzz(schema, mode, cookies: dict[str, str] | None) -> Counter[tuple[str, int]]:
    """Send schemathesis's generated requests to each operation; returns how often each answer came.

    schemathesis leaves out the operation that serves the document it read (it is checked above).
    """
    seen: Counter[tuple[str, int]] = Counter()
    for operation in schema.get_all_operations():

        @FUZZ
        @given(case=operation.ok().as_strategy(mode, cookies=cookies))
        def run(case):
            response = case.call_and_validate()
            seen[case.operation.path, response.status_code] += 1

        run()
    return seen


def test_schemathesis_finds_nothing_as_a_member(app, estimating, streams_held):
    cookies = session_cookie(estimating["member"])
    aimed = load_schema(app)
    aim_at(aimed, estimating)
    seen = fuzz(aimed, schemathesis.GenerationMode.POSITIVE, cookies)
    for path in MEMBERS_ONLY:
        assert seen[path, 200] and seen[path, 404], seen  # real objects and unknown ones were asked for
    # Ids that are no ids (0, negative, too large, not numbers): a documented 404, never a 500.
    invalid = fuzz(load_schema(app), schemathesis.GenerationMode.NEGATIVE, cookies)
    for path in MEMBERS_ONLY:
        assert invalid[path, 404], invalid


def test_schemathesis_finds_nothing_anonymously(app, estimating):
    aimed = load_schema(app)
    aim_at(aimed, estimating)
    seen = fuzz(aimed, schemathesis.GenerationMode.POSITIVE, None)
    assert {path for path, _ in seen} == set(MEMBERS_ONLY)
    assert {status for _, status in seen} == {401}, seen
