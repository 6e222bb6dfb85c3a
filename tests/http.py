"""A person talking to the served app over real HTTP: own cookies, CSRF tokens from the pages."""

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from http.cookiejar import CookieJar
from typing import Any


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # let the test see the 302 itself


class Person:
    """One browser's worth of state: a cookie jar and the server's address."""

    def __init__(self, base_url: str, cookies: CookieJar | None = None):
        self.base_url = base_url
        self.cookies = cookies if cookies is not None else CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect
        )

    def request(
        self, path: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, Message]:
        """(status, body, headers) of one request; a POST when data is given."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base_url + path, data=body, headers=headers or {})
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, response.read().decode(), response.headers
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read().decode(), error.headers

    def token(self, path: str) -> str:
        """The CSRF token of the form on a page."""
        status, page, _ = self.request(path)
        assert status == 200, (path, status)
        match = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', page)
        assert match is not None, f"no form with a CSRF token on {path}"
        return match.group(1)

    def post(self, path: str, data: dict[str, str], token: str) -> int:
        """Submit a form with a token taken earlier; returns the status."""
        return self.request(path, {**data, "csrf_token": token})[0]

    def login(self, nickname: str) -> int:
        return self.post("/login", {"nickname": nickname}, self.token("/login"))

    def join(self, invite: str) -> int:
        """Join a group as a member through its invite link (an address or a path); the status."""
        path = invite.removeprefix(self.base_url)
        return self.post(path, {"role": "member"}, self.token(path))

    def api(self, path: str) -> dict[str, Any]:
        status, body, _ = self.request(path, headers={"Accept": "application/json"})
        assert status == 200, (path, status, body)
        state = json.loads(body)
        assert isinstance(state, dict), (path, body)
        return state


def started_meeting(base_url: str, names: list[str]) -> tuple[Person, int, int, list[Person]]:
    """Over HTTP only: a facilitator whose new group has one issue the room is on, and the people
    named, logged in (under names of their own in this run) and joined; (facilitator, group id,
    issue id, people)."""
    run = time.time_ns() % 10**9
    owner = Person(base_url)
    assert owner.login(f"Olivia {run}") == 302
    assert owner.post("/groups", {"name": "Meeting", "deck": "fibonacci"}, owner.token("/")) == 302
    group_id = max(int(x) for x in re.findall(r'href="/groups/(\d+)"', owner.request("/")[1]))
    assert owner.post(f"/groups/{group_id}/issues", {"key": "M-1"}, owner.token(f"/groups/{group_id}")) == 302
    issue_id = owner.api(f"/api/groups/{group_id}")["issues"][0]["id"]
    assert owner.post(f"/issues/{issue_id}/start", {}, owner.token(f"/groups/{group_id}")) == 302
    invite = re.search(r"/join/[A-Za-z0-9_-]+", owner.request(f"/groups/{group_id}")[1])
    assert invite is not None, "the facilitator sees the invite link"
    people = []
    for name in names:
        person = Person(base_url)
        assert person.login(f"{name} {run}") == 302
        assert person.join(invite.group(0)) == 302
        people.append(person)
    return owner, group_id, issue_id, people


def room_of_a_new_group(url: str) -> tuple[Person, int, str]:
    """Olivia's new group with two issues, made over HTTP: her, the group id and its invite link."""
    owner = Person(url)
    assert owner.login("Olivia") == 302
    status, _, headers = owner.request(
        "/groups", {"name": "Workers", "deck": "fibonacci", "csrf_token": owner.token("/")}
    )
    assert status == 302, status
    group_id = int(headers["Location"].rstrip("/").rsplit("/", 1)[-1])
    for key in ("ROOM-1", "ROOM-2"):
        token = owner.token(f"/groups/{group_id}")
        assert (
            owner.post(f"/groups/{group_id}/issues", {"key": key, "description": f"About {key}"}, token)
            == 302
        )
    invite = re.search(r'id="invite-link"[^>]*value="([^"]+)"', owner.request(f"/groups/{group_id}")[1])
    assert invite is not None
    return owner, group_id, invite.group(1)
