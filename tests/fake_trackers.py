"""A Jira and a GitLab that answer over real HTTP on loopback, for tests that go through the app.

Each fake is a small threaded HTTP server on 127.0.0.1 that keeps every request it receives (the
tests read them: what was written, and that nothing of the meeting crossed) and holds issues that
the app's writes change. `hostile` makes every answer from then on a refusal (401), a redirect to
another host, an answer of 10 MiB or a stall, as a tracker that misbehaves would.

The fake Jira holds each request to Atlassian's OpenAPI documents with `tests.jira_contract`, and
its own recorded answers too: what the documents would reject is kept in `violations`, answered
400, and fails the test that used it.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from tests.jira_contract import ContractError, check_request, check_response

#: How long a stalling tracker waits before it answers: longer than the tests let the app wait.
STALL_SECONDS = 1.5


@dataclass
class Received:
    """One request as the tracker received it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def params(self) -> dict[str, str]:
        return {name: values[-1] for name, values in parse_qs(urlsplit(self.target).query).items()}

    def json(self) -> Any:
        return json.loads(self.body)

    def everything(self) -> str:
        """All the request carries, as text: to look for what must never cross."""
        return (
            unquote(self.target) + json.dumps(self.headers) + self.body.decode("utf-8", "replace")
        ).casefold()


Answer = tuple[int, Any]


class FakeTracker:
    """A tracker on a free loopback port; `answer` is each kind's."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.hostile: str | None = None
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                """Quiet."""

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Received(self.command, self.path, dict(self.headers.items()), body)
                with fake.lock:
                    fake.received.append(seen)
                fake.respond(self, seen)

            do_GET = do_PUT = do_POST = do_DELETE = handle_any  # noqa: N815  (the names http.server calls)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # Answers.

    def answer(self, seen: Received) -> Answer:  # pragma: no cover (each kind has its own)
        raise NotImplementedError

    def refusal(self) -> Any:
        """The body of the tracker's 401."""
        return {}

    def respond(self, handler: BaseHTTPRequestHandler, seen: Received) -> None:
        how = self.hostile
        if how == "refused":
            self.send(handler, 401, json.dumps(self.refusal()).encode())
        elif how == "redirect":
            handler.send_response(302)
            handler.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        elif how == "huge":  # 10 MiB, its length not announced
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.close_connection = True
            try:
                for _ in range(160):
                    handler.wfile.write(b" " * 65536)
            except OSError:
                pass  # the app gave up, as it should
        elif how == "stall":
            time.sleep(STALL_SECONDS)
            self.send(handler, 200, b"{}")
        else:
            status, body = self.answer(seen)
            self.send(handler, status, b"" if body is None else json.dumps(body).encode())

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        handler.send_response(status)
        if body:
            handler.send_header("Content-Type", "application/json;charset=UTF-8")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        try:
            handler.wfile.write(body)
        except OSError:
            pass

    # What the tests read.

    def writes(self) -> list[Received]:
        """The requests that asked to change something."""
        return [seen for seen in self.received if seen.method != "GET"]


@contextmanager
def running(tracker: FakeTracker) -> Iterator[FakeTracker]:
    """The tracker serving until the block ends."""
    tracker.start()
    try:
        yield tracker
    finally:
        tracker.stop()


# Jira -------------------------------------------------------------------------------------------


@dataclass
class JiraAccount:
    """Who may sign in: Cloud by e-mail and API token (Basic), Data Center by a personal access
    token (Bearer)."""

    email: str = "mia@example.com"
    api_token: str = "ATATT3xFfGF0-cloud-token"
    personal_token: str = "NjM3OTc2-pat"


@dataclass
class JiraIssue:
    id: str
    key: str
    summary: str
    description: Any
    fields: dict[str, Any] = field(default_factory=dict)


class FakeJira(FakeTracker):
    """Jira Cloud (REST API v3) or Data Center (v2, under a context path) with Jira Software."""

    def __init__(
        self,
        me: dict[str, Any],
        fields: list[dict[str, Any]],
        boards: dict[str, Any],
        board_configuration: dict[str, Any],
        issues: list[JiraIssue],
        *,
        cloud: bool,
        context: str = "",
    ) -> None:
        super().__init__()
        self.me, self.fields, self.boards = me, fields, boards
        self.board_configuration = board_configuration
        self.issues = issues
        self.cloud = cloud
        self.context = context.rstrip("/")
        self.base_url = self.origin + self.context
        self.account = JiraAccount()
        self.api = "/rest/api/3" if cloud else "/rest/api/2"
        self.page_size = 2
        self.violations: list[str] = []

    def refusal(self) -> Any:
        return {
            "errorMessages": ["You are not authenticated. Authentication required to perform this operation."]
        }

    def signed_in(self, seen: Received) -> bool:
        given = seen.headers.get("Authorization", "")
        if self.cloud:
            pair = f"{self.account.email}:{self.account.api_token}".encode()
            return given == "Basic " + base64.b64encode(pair).decode()
        return given == f"Bearer {self.account.personal_token}"

    def as_httpx(self, seen: Received) -> httpx.Request:
        return httpx.Request(seen.method, self.origin + seen.target, headers=seen.headers, content=seen.body)

    def respond(self, handler: BaseHTTPRequestHandler, seen: Received) -> None:
        """Every request is held to the documents first, whatever the answer is to be."""
        try:
            check_request(self.as_httpx(seen), self.base_url)
        except ContractError as error:
            self.violations.append(str(error))
            refusal = {"errorMessages": [f"The documents do not allow this request: {error}"]}
            self.send(handler, 400, json.dumps(refusal).encode())
            return
        super().respond(handler, seen)

    def answer(self, seen: Received) -> Answer:
        request = self.as_httpx(seen)
        if not self.signed_in(seen):
            return 401, self.refusal()
        status, body = self.route(seen)
        response = httpx.Response(status, json=body) if body is not None else httpx.Response(status)
        try:
            check_response(request, response, self.base_url)
        except ContractError as error:
            self.violations.append(str(error))
        return status, body

    def route(self, seen: Received) -> Answer:
        path = seen.path[len(self.context) :]
        by_ref = {issue.id: issue for issue in self.issues} | {issue.key: issue for issue in self.issues}
        if seen.method == "GET" and path == f"{self.api}/myself":
            return 200, self.me
        if seen.method == "GET" and path == f"{self.api}/field":
            return 200, self.fields
        if seen.method == "GET" and path == "/rest/agile/1.0/board":
            return 200, self.boards
        if (
            seen.method == "GET"
            and path == f"/rest/agile/1.0/board/{self.board_configuration['id']}/configuration"
        ):
            return 200, self.board_configuration
        if seen.method == "GET" and path == "/rest/api/3/search/jql" and self.cloud:
            return 200, self.search_page(seen, by_token=True)
        if seen.method == "GET" and path == "/rest/api/2/search" and not self.cloud:
            return 200, self.search_page(seen, by_token=False)
        if seen.method == "PUT" and path.startswith(f"{self.api}/issue/"):
            issue = by_ref.get(path.rsplit("/", 1)[1])
            if issue is None:
                return 404, {
                    "errorMessages": ["Issue does not exist or you do not have permission to see it."]
                }
            issue.fields.update(seen.json()["fields"])
            return 204, None
        if (
            seen.method == "PUT"
            and path.startswith("/rest/agile/1.0/issue/")
            and path.endswith("/estimation")
        ):
            issue = by_ref.get(path.split("/")[-2])
            if issue is None:
                return 404, {
                    "errorMessages": ["Issue does not exist or you do not have permission to see it."]
                }
            estimated = self.board_configuration["estimation"]["field"]["fieldId"]
            value = seen.json()["value"]
            issue.fields[estimated] = float(value)
            return 200, {"fieldId": estimated, "value": value}
        return 404, {"errorMessages": [f"No such resource: {seen.method} {path}"]}

    def search_page(self, seen: Received, *, by_token: bool) -> dict[str, Any]:
        """The issues, all of them whatever the JQL (kept in `received` for the test to read),
        `page_size` to a page; only the fields asked for."""
        params = seen.params
        start = int(params.get("nextPageToken", "0") if by_token else params.get("startAt", "0"))
        size = min(self.page_size, int(params.get("maxResults", "50")))
        wanted = params.get("fields", "").split(",")
        chosen = self.issues[start : start + size]
        listed = []
        for issue in chosen:
            everything = {"summary": issue.summary, "description": issue.description, **issue.fields}
            listed.append(
                {
                    "expand": "renderedFields,names,schema,operations,editmeta,changelog",
                    "id": issue.id,
                    "self": f"{self.base_url}{self.api}/issue/{issue.id}",
                    "key": issue.key,
                    "fields": {name: copy.deepcopy(everything.get(name)) for name in wanted if name},
                }
            )
        end = start + len(chosen)
        if by_token:
            page: dict[str, Any] = {"issues": listed, "isLast": end >= len(self.issues)}
            if end < len(self.issues):
                page["nextPageToken"] = str(end)
            return page
        return {
            "expand": "schema,names",
            "startAt": start,
            "maxResults": size,
            "total": len(self.issues),
            "issues": listed,
        }


# GitLab -----------------------------------------------------------------------------------------


class FakeGitLab(FakeTracker):
    """GitLab's REST API v4: the current user, a project's issues, an issue's weight."""

    def __init__(
        self, me: dict[str, Any], project: str, project_id: int, issues: list[dict[str, Any]]
    ) -> None:
        super().__init__()
        self.me, self.project, self.project_id, self.issues = me, project, project_id, issues
        self.token = "glpat-Xq3cW8zN2vB7mK1pL9aT"
        self.base_url = self.origin

    def refusal(self) -> Any:
        return {"message": "401 Unauthorized"}

    def answer(self, seen: Received) -> Answer:
        if seen.headers.get("PRIVATE-TOKEN") != self.token:
            return 401, self.refusal()
        path = seen.path
        project_paths = {
            f"/api/v4/projects/{self.project.replace('/', '%2F')}",
            f"/api/v4/projects/{self.project_id}",
        }
        if seen.method == "GET" and path == "/api/v4/user":
            return 200, self.me
        if seen.method == "GET" and path.endswith("/issues") and path[: -len("/issues")] in project_paths:
            params = seen.params
            page, per_page = int(params.get("page", "1")), int(params.get("per_page", "20"))
            labels = [label for label in params.get("labels", "").split(",") if label]
            chosen = [issue for issue in self.issues if all(label in issue["labels"] for label in labels)]
            return 200, chosen[(page - 1) * per_page : page * per_page]
        if seen.method == "GET" and path.startswith("/api/v4/projects/"):
            return 404, {"message": "404 Project Not Found"}
        if seen.method == "PUT" and path.startswith(f"/api/v4/projects/{self.project_id}/issues/"):
            iid = int(path.rsplit("/", 1)[1])
            for issue in self.issues:
                if issue["iid"] == iid:
                    issue.update(seen.json())
                    return 200, issue
            return 404, {"message": "404 Issue Not Found"}
        return 404, {"error": "404 Not Found"}
