"""Atlassian's own OpenAPI documents as the judge of every request a test's Jira receives.

The documents are Atlassian's published descriptions of the Jira Cloud platform REST API v3 and
the Jira Software REST API, kept beside the repository in `../shared/trackers/jira/` (see its
README); they are read from there at test time, never copied in. openapi-core checks each request
(the path and method exist, path and query parameters are declared and of their type, the JSON
body fits the operation's request schema, every `$ref` resolved) and each recorded answer (its
status is one the operation declares, its JSON fits that status's schema).

Two gaps, said where they are filled:
- `GET /rest/api/3/search/jql`, Jira Cloud's search since Atlassian removed `/rest/api/3/search`
  in 2025, is newer than the stored copy. `SEARCH_JQL` below describes that one operation as
  Atlassian's current reference does (Issue search → "Search for issues using JQL enhanced search
  (GET)"), its issues by the stored document's own `IssueBean`.
- Jira Data Center's REST API v2 has no OpenAPI document here. Its paths are v3's with `2` for
  `3`, with the same parameters and bodies (only rich-text fields differ: wiki text where v3 has
  Atlassian Document Format, which `IssueBean.fields` leaves open); a v2 request is checked as the
  v3 operation of the same path, which is as far as a document can vouch for Data Center.
  Its authentication (a Bearer token) is not in the documents at all: the tests assert the header.

The security requirement (HTTP Basic or OAuth2) is likewise asserted by the tests, header by
header, rather than by openapi-core, which cannot evaluate the OAuth2 alternative.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from jsonschema_path import SchemaPath
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.validation.request.validators import V30RequestBodyValidator, V30RequestParametersValidator
from openapi_core.validation.response.validators import V30ResponseValidator
from werkzeug.datastructures import Headers, ImmutableMultiDict

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ROOT.parent / "shared" / "trackers" / "jira"
PLATFORM = DOCUMENTS / "platform-openapi.v3.json"
SOFTWARE = DOCUMENTS / "software-openapi.v3.json"

#: `GET /rest/api/3/search/jql` as Atlassian's current REST API v3 reference describes it
#: (developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-search/
#: #api-rest-api-3-search-jql-get): the one operation Estimator uses that the stored copy predates.
SEARCH_JQL: dict[str, Any] = {
    "get": {
        "operationId": "searchAndReconsileIssuesUsingJql",
        "parameters": [
            {"name": "jql", "in": "query", "schema": {"type": "string"}},
            {"name": "nextPageToken", "in": "query", "schema": {"type": "string"}},
            {
                "name": "maxResults",
                "in": "query",
                "schema": {"type": "integer", "format": "int32", "default": 50},
            },
            {"name": "fields", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
            {"name": "expand", "in": "query", "schema": {"type": "string"}},
            {"name": "properties", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
            {"name": "fieldsByKeys", "in": "query", "schema": {"type": "boolean", "default": False}},
            {"name": "failFast", "in": "query", "schema": {"type": "boolean", "default": False}},
            {
                "name": "reconcileIssues",
                "in": "query",
                "schema": {"type": "array", "items": {"type": "integer", "format": "int64"}},
            },
        ],
        "responses": {
            "200": {
                "description": "Returned if the request is successful.",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "isLast": {"type": "boolean"},
                                "issues": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/IssueBean"},
                                },
                                "names": {"type": "object", "additionalProperties": {"type": "string"}},
                                "nextPageToken": {"type": "string"},
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": {"$ref": "#/components/schemas/JsonTypeBean"},
                                },
                            },
                        }
                    }
                },
            },
            "400": {"description": "Returned if the JQL query is invalid."},
            "401": {"description": "Returned if the authentication credentials are incorrect or missing."},
        },
    }
}


class ContractError(AssertionError):
    """A request or an answer that the tracker's published contract does not allow."""


def documents_present() -> bool:
    return PLATFORM.is_file() and SOFTWARE.is_file()


@cache
def _apis() -> tuple[OpenAPI, OpenAPI]:
    """The two documents, loaded and checked as OpenAPI 3.0 once per test run."""
    platform = json.loads(PLATFORM.read_text(encoding="utf-8"))
    assert "/rest/api/3/search/jql" not in platform["paths"], (
        "the stored document describes it now: drop SEARCH_JQL"
    )
    platform = copy.deepcopy(platform)
    platform["paths"]["/rest/api/3/search/jql"] = SEARCH_JQL
    software = json.loads(SOFTWARE.read_text(encoding="utf-8"))
    return OpenAPI.from_dict(platform), OpenAPI.from_dict(software)


class _Request:
    """An httpx request as openapi-core reads one, at the document's server address."""

    def __init__(self, request: httpx.Request, path: str, server: str) -> None:
        self.host_url = server
        self.path = path
        self.method = request.method.lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(request.url.params.multi_items()),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict(),
        )
        self.body = request.content or None
        self.content_type = request.headers.get("content-type", "")


class _Response:
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "")
        self.headers = Headers(dict(response.headers))
        self.data = response.content or None


def _judge(request: httpx.Request, base_url: str) -> tuple[OpenAPI, _Request]:
    """The document that describes the request, and the request as that document sees it."""
    base_path = urlsplit(base_url).path.rstrip("/")
    path = request.url.path
    if base_path:
        if not path.startswith(base_path + "/"):
            raise ContractError(f"{request.method} {request.url} is outside the Jira at {base_url}")
        path = path[len(base_path) :]
    platform, software = _apis()
    if path.startswith("/rest/api/2/"):
        path = "/rest/api/3/" + path[len("/rest/api/2/") :]  # Data Center: see the module's docstring
    api = software if path.startswith("/rest/agile/") else platform
    server = (api.spec / "servers" / 0 / "url").read_str()
    return api, _Request(request, path, server)


def _declared(item: SchemaPath, where: str) -> set[str]:
    """The names of the parameters `in` where that a path item or an operation declares."""
    if "parameters" not in item:
        return set()
    return {(p / "name").read_str() for p in item / "parameters" if (p / "in").read_str() == where}


def check_request(request: httpx.Request, base_url: str) -> None:
    """ContractError unless the request is one the documents allow."""
    api, seen = _judge(request, base_url)
    parameters = V30RequestParametersValidator(api.spec)
    try:
        found = parameters._find_path(seen)
    except PathError as error:
        raise ContractError(f"{request.method} {request.url}: {error}") from error
    # openapi-core checks the declared parameters; one the operation does not declare at all is
    # this check's.
    declared = _declared(found.path, "query") | _declared(found.operation, "query")
    undeclared = set(seen.parameters.query) - declared
    if undeclared:
        raise ContractError(
            f"{request.method} {request.url}: undeclared query parameters {sorted(undeclared)}"
        )
    for validator in (parameters, V30RequestBodyValidator(api.spec)):
        for refusal in validator.iter_errors(seen):
            cause = getattr(refusal, "__cause__", None)
            raise ContractError(
                f"{request.method} {request.url}: {refusal}" + (f" ({cause})" if cause else "")
            )


def check_response(request: httpx.Request, response: httpx.Response, base_url: str) -> None:
    """ContractError unless the answer is one the operation declares, of its schema."""
    api, seen = _judge(request, base_url)
    if response.status_code == 204 and not response.content:
        # HTTP allows no body with 204 (RFC 9110, 15.3.5), whatever `content` the document lists
        # beside it (Atlassian's `PUT /issue` lists an empty schema): the status must be declared.
        operation = V30RequestParametersValidator(api.spec)._find_path(seen).operation
        if "204" not in operation / "responses":
            raise ContractError(f"answer 204 to {request.method} {request.url}: not a status it declares")
        return
    for error in V30ResponseValidator(api.spec).iter_errors(seen, _Response(response)):
        details = "; ".join(str(e.message) for e in getattr(error, "schema_errors", ()) or ())
        raise ContractError(
            f"answer {response.status_code} to {request.method} {request.url}: {error} {details}"
        )


Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class Jira:
    """A mock Jira that holds every request and answer to the documents, and keeps the requests."""

    handler: Handler
    base_url: str = "https://jira.example.com"
    #: False for the tests of answers no Jira should give (not JSON, a 500): those are the point.
    answers_conform: bool = True
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        check_request(request, self.base_url)
        self.requests.append(request)
        response = self.handler(request)
        response.request = request
        if self.answers_conform:
            check_response(request, response, self.base_url)
        return response

    def client(self) -> httpx.Client:
        """A client as the app would hand the connector one, on this mock's transport."""
        return httpx.Client(transport=httpx.MockTransport(self), base_url=self.base_url)
