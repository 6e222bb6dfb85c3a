"""Live updates at scale: the group's event stream, the 304 answered before Flask, JSON built once
per version, and what a poll or a page costs in SQL."""

import logging
import re
import socket
import sys
import threading
import time
import urllib.parse

import pytest
import sqlalchemy as sa
from sqlalchemy import event

import estimator.live
from estimator.extensions import db
from estimator.groups import rules as group_rules
from estimator.models import Group, Membership, Role, User
from tests.conftest import login, vote
from tests.helpers import wait_until
from tests.http import Person


def read_stream(client, path: str, **headers: str) -> tuple[int, str, dict[str, str]]:
    """Status, body and headers of a whole (short, in tests) event stream."""
    response = client.get(path, headers=headers)
    return response.status_code, response.get_data(as_text=True), dict(response.headers)


def versions_in(body: str) -> list[int]:
    """The versions an event stream announced, in order, checking each event's three fields."""
    found = []
    for block in body.split("\n\n"):
        lines = block.strip().splitlines()
        if any(line.startswith("id: ") for line in lines):
            fields = dict(line.split(": ", 1) for line in lines)
            assert fields["event"] == "version"
            assert fields["data"] == f'{{"version": {fields["id"]}}}'
            found.append(int(fields["id"]))
    return found


def group_version(app, group_id: int) -> int:
    with app.app_context():
        return int(db.session.scalar(sa.select(Group.version).where(Group.id == group_id)) or 0)


class Statements:
    """The SQL statements run while the block runs."""

    def __init__(self, app):
        with app.app_context():
            self.engine = db.engine
        self.seen: list[str] = []

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self.listen)
        return self.seen

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self.listen)

    def listen(self, _conn, _cursor, statement, *args):
        self.seen.append(statement)


# --- the event stream, in-process ------------------------------------------------------------------


def test_a_member_gets_the_current_version_at_once(app, team, streams_held):
    status, body, headers = read_stream(team["bob"], f"/api/groups/{team['group']}/events")
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in headers
    assert body.startswith("retry: ")
    assert versions_in(body) == [group_version(app, team["group"])]


def test_last_event_id_resumes_where_the_page_stopped(app, team, streams_held):
    path = f"/api/groups/{team['group']}/events"
    current = group_version(app, team["group"])
    _, up_to_date, _ = read_stream(team["bob"], path, **{"Last-Event-ID": str(current)})
    assert versions_in(up_to_date) == []  # nothing new: nothing sent
    _, behind, _ = read_stream(team["bob"], path, **{"Last-Event-ID": str(current - 1)})
    assert versions_in(behind) == [current]
    for nonsense in ("", "abc", "-1", "9" * 40, "\u00b2", "1\u00b2"):
        status, body, _ = read_stream(team["bob"], path, **{"Last-Event-ID": nonsense})
        assert status == 200 and versions_in(body) == [current]


def test_the_stream_is_for_members_only(app, team, outsider):
    path = f"/api/groups/{team['group']}/events"
    anonymous = app.test_client().get(path)
    assert anonymous.status_code == 401 and anonymous.is_json and "error" in anonymous.json
    refused = outsider.get(path)
    assert refused.status_code == 404 and refused.is_json
    assert team["bob"].get("/api/groups/999999/events").status_code == 404


def test_a_removed_member_cannot_open_the_stream(app, team):
    owner, group_id = team["owner"], team["group"]
    with app.app_context():
        bob_id = db.session.scalar(sa.select(User.id).where(User.nickname == "Bob"))
    assert owner.post(f"/groups/{group_id}/members/{bob_id}/remove").status_code == 302
    assert team["bob"].get(f"/api/groups/{group_id}/events").status_code == 404


def test_a_worker_that_cannot_hold_streams_answers_204_at_once_and_says_so(app, team, caplog, monkeypatch):
    """Outside gevent (gunicorn's sync or gthread workers, another WSGI server) a stream would hold
    a worker while its page is open: 204 ends it at once (EventSource stops; the page polls)."""
    monkeypatch.setattr(estimator.live, "_said_in_process", None)  # as in a process that has not said it yet
    caplog.set_level(logging.INFO, logger="estimator")
    path = f"/api/groups/{team['group']}/events"
    for _ in range(3):
        started = time.monotonic()
        response = team["bob"].get(path, headers={"Accept": "text/event-stream"})
        assert response.status_code == 204 and response.data == b"", response.data
        assert time.monotonic() - started < 1
        assert response.headers["Cache-Control"] == "no-store" and "Set-Cookie" not in response.headers
    said = [record for record in caplog.records if "event streams" in record.getMessage()]
    assert [(record.levelno, record.getMessage()) for record in said] == [
        (
            logging.WARNING,
            "Live updates: this worker cannot hold event streams (this WSGI server, without gevent); "
            "pages poll instead. Run gevent workers (gunicorn.conf.py does) to push changes.",
        )
    ]
    # Who may not listen is still told so, before and after the process said it.
    assert app.test_client().get(path).status_code == 401
    assert team["bob"].get("/api/groups/999999/events").status_code == 404


def test_the_line_names_what_serves_the_page():
    gunicorn = {"SERVER_SOFTWARE": "gunicorn/27.0.1", "wsgi.multithread": False}
    assert estimator.live.server_kind(gunicorn) == "sync worker"
    assert estimator.live.server_kind({**gunicorn, "wsgi.multithread": True}) == "gthread worker"
    assert (
        estimator.live.server_kind({"SERVER_SOFTWARE": "Werkzeug/3.1.9"}) == "Werkzeug/3.1.9, without gevent"
    )


# --- the 304 before Flask, and JSON per version -----------------------------------------------------


def test_a_tag_is_bound_to_the_login_it_was_served_to(app, team):
    path = f"/api/groups/{team['group']}"
    bobs = team["bob"].get(path).headers["ETag"]
    carols = team["carol"].get(path).headers["ETag"]
    assert bobs != carols
    assert team["carol"].get(path, headers={"If-None-Match": bobs}).status_code == 200
    assert team["carol"].get(path, headers={"If-None-Match": carols}).status_code == 304


def test_a_logged_out_cookie_gets_no_state(app, team):
    bob, path = team["bob"], f"/api/groups/{team['group']}"
    tag = bob.get(path).headers["ETag"]
    old_cookie = bob.get_cookie("session").value
    assert bob.post("/logout").status_code == 302
    thief = app.test_client()
    thief.set_cookie("session", old_cookie)
    assert thief.get(path).status_code == 401
    assert thief.get(f"/api/groups/{team['group']}/events").status_code == 401
    vote(team["carol"], team["issue"], "5")  # something changes: the old tag is no longer current
    assert thief.get(path, headers={"If-None-Match": tag}).status_code == 401


@pytest.mark.parametrize("path", ["/api/groups/{group}", "/api/groups/{group}/regions?view=room"])
def test_a_tag_from_before_a_logout_everywhere_never_matches(app, team, path, no_presence):
    bob, path = team["bob"], path.format(group=team["group"])
    tag = bob.get(path).headers["ETag"]
    assert bob.get(path, headers={"If-None-Match": tag}).status_code == 304
    old_cookie = bob.get_cookie("session").value
    assert bob.post("/logout").status_code == 302  # nothing else changes in the group
    copy = app.test_client()
    copy.set_cookie("session", old_cookie)
    stale = copy.get(path, headers={"If-None-Match": tag})
    assert stale.status_code == 401 and stale.json == {"error": "Please log in first."}
    assert login(bob, "Bob").status_code == 302
    again = bob.get(path, headers={"If-None-Match": tag})
    assert again.status_code == 200 and again.headers["ETag"] != tag


def test_a_removed_member_cannot_use_an_old_tag(app, team):
    owner, group_id, path = team["owner"], team["group"], f"/api/groups/{team['group']}"
    tag = team["bob"].get(path).headers["ETag"]
    with app.app_context():
        bob_id = db.session.scalar(sa.select(User.id).where(User.nickname == "Bob"))
    assert owner.post(f"/groups/{group_id}/members/{bob_id}/remove").status_code == 302
    assert team["bob"].get(path, headers={"If-None-Match": tag}).status_code == 404


def test_the_json_is_built_once_per_version(app, team, monkeypatch):
    from estimator.groups.state import group_state

    built = []

    def counted(group):
        built.append(group.id)
        return group_state(group)

    monkeypatch.setattr("estimator.api.routes.group_state", counted)
    path = f"/api/groups/{team['group']}"
    answers = [member.get(path).json for member in (team["bob"], team["carol"], team["owner"])]
    assert answers[0] == answers[1] == answers[2] and len(built) == 1
    vote(team["carol"], team["issue"], "5")
    changed = team["bob"].get(path).json
    assert len(built) == 2 and changed["issues"][0]["votes_cast"] == 1


def test_json_built_already_is_never_served_to_a_removed_member_or_a_logged_out_cookie(app, team):
    owner, group_id, path = team["owner"], team["group"], f"/api/groups/{team['group']}"
    with app.app_context():
        bob_id = db.session.scalar(sa.select(User.id).where(User.nickname == "Bob"))
    assert owner.post(f"/groups/{group_id}/members/{bob_id}/remove").status_code == 302
    assert team["carol"].get(path).status_code == 200  # this version's JSON is built
    for ask in (team["bob"].get, team["bob"].head):
        assert ask(path).status_code == 404
    carols_cookie = team["carol"].get_cookie("session").value
    assert team["carol"].post("/logout").status_code == 302
    thief = app.test_client()
    thief.set_cookie("session", carols_cookie)
    assert owner.get(path).status_code == 200  # still built, for the same version
    for ask in (thief.get, thief.head):
        assert ask(path).status_code == 401


def test_a_login_ended_by_another_process_gets_no_state_at_once(app, team):
    bob, path = team["bob"], f"/api/issues/{team['issue']}"
    assert bob.get(path).status_code == 200 and bob.get(path).status_code == 200  # built, and known
    with app.app_context():  # as another process would: nothing here hears of it
        with db.engine.begin() as connection:
            connection.execute(sa.update(User).where(User.nickname == "Bob").values(session_token="x" * 43))
    assert bob.get(path).status_code == 401
    assert bob.head(path).status_code == 401


# --- SQL at the limits ------------------------------------------------------------------------------


def fill_to_the_limits(app, group_id: int, issues: int = 1000, members: int = 200) -> None:
    """The group with `issues` issues and `members` members in all, added through the rules."""
    with app.app_context():
        group = db.session.get(Group, group_id)
        assert group is not None
        group_rules.add_issues(
            group, [group_rules.NewIssue(f"BIG-{n}", f"Issue number {n}") for n in range(issues)]
        )
        have = db.session.scalar(sa.select(sa.func.count()).where(Membership.group_id == group_id)) or 0
        for n in range(members - have):
            user = User(
                nickname=f"Member{n}", nickname_key=f"member{n}", nickname_skeleton=f"member{n}-skeleton"
            )
            db.session.add(user)
            db.session.flush()
            db.session.add(Membership(group_id=group_id, user_id=user.id, role=Role.MEMBER))
        db.session.commit()


@pytest.mark.parametrize("who", ["owner", "bob"])
def test_the_group_page_at_the_limits_takes_few_queries(app, team, who):
    group_id = team["group"]
    fill_to_the_limits(app, group_id, issues=999)
    vote(team["bob"], team["issue"], "5")
    with Statements(app) as statements:
        page = team[who].get(f"/groups/{group_id}")
    assert page.status_code == 200
    shown = page.get_data(as_text=True)
    assert "BIG-98<" in shown and "BIG-99<" not in shown, "the first 100 issues are shown"
    assert shown.count("Member") >= 197, "every member is listed"
    assert len(statements) <= 10, "\n".join(statements)
    assert len(page.data) < 500_000, len(page.data)
    last = team[who].get(f"/groups/{group_id}?page=10").get_data(as_text=True)
    assert "BIG-998<" in last and "BIG-898<" not in last and "Issues 901–1000 of 1000" in last
    with Statements(app) as statements:
        state = team[who].get(f"/api/groups/{group_id}")
    assert len(state.json["issues"]) == 1000 and len(state.json["members"]) == 200
    assert len(statements) <= 10, "\n".join(statements)


# --- across gunicorn workers ------------------------------------------------------------------------


#: What urllib sends, as the Person's other requests do: the login is bound to its browser.
USER_AGENT = f"Python-urllib/{sys.version_info.major}.{sys.version_info.minor}"


def open_stream(url: str, person: Person, group_id: int, last_event_id: str | None = None) -> socket.socket:
    """A raw event-stream connection (so the test sees each line as it arrives)."""
    parsed = urllib.parse.urlsplit(url)
    cookie = "; ".join(f"{c.name}={c.value}" for c in person.cookies)
    extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
    connection = socket.create_connection((parsed.hostname, parsed.port), timeout=10)
    connection.sendall(
        f"GET /api/groups/{group_id}/events HTTP/1.1\r\nHost: {parsed.netloc}\r\nCookie: {cookie}\r\n"
        f"Accept: text/event-stream\r\nUser-Agent: {USER_AGENT}\r\n{extra}\r\n".encode()
    )
    return connection


class Listener(threading.Thread):
    """Reads one stream in the background, noting when each version and comment arrived."""

    def __init__(self, connection: socket.socket):
        super().__init__(daemon=True)
        self.connection = connection
        self.events: list[tuple[float, int]] = []
        self.comments: list[float] = []
        self.head = ""  # the status line and headers
        self.in_head = True
        self.start()

    def run(self):
        pending = b""
        try:
            while chunk := self.connection.recv(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace").rstrip("\r")
                    if self.in_head:
                        self.head += line + "\n"
                        self.in_head = line != ""
                    elif line.startswith("id: "):
                        self.events.append((time.monotonic(), int(line[4:])))
                    elif line.startswith(": keep-alive"):
                        self.comments.append(time.monotonic())
        except OSError:
            pass

    def close(self):
        self.connection.close()


def facilitator_of_a_new_group(server: str, name: str) -> tuple[Person, int]:
    """A new person logged in on the served app, and the group they just created."""
    owner = Person(server)
    owner.login(f"{name} {time.time_ns() % 10**9}")
    owner.post("/groups", {"name": name, "deck": "fibonacci"}, owner.token("/"))
    return owner, max(int(x) for x in re.findall(r'href="/groups/(\d+)"', owner.request("/")[1]))


@pytest.mark.server
@pytest.mark.quiet
def test_an_event_reaches_streams_on_every_worker_within_a_second(server):
    owner, group_id = facilitator_of_a_new_group(server, "Streams")
    version = owner.api(f"/api/groups/{group_id}")
    assert version["name"] == "Streams"
    # Twelve streams over three workers: some are served by another worker than the change.
    listeners = [Listener(open_stream(server, owner, group_id)) for _ in range(12)]
    behind = current = None
    try:
        deadline = time.monotonic() + 5
        while any(not listener.events for listener in listeners) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(listener.events for listener in listeners), "every stream says the current version first"
        assert all(
            "200 OK" in listener.head and "text/event-stream" in listener.head for listener in listeners
        )
        assert all("Set-Cookie" not in listener.head for listener in listeners)
        first = listeners[0].events[0][1]
        for change in range(3):
            started = time.monotonic()
            token = owner.token(f"/groups/{group_id}")
            assert owner.post(f"/groups/{group_id}/issues", {"key": f"S-{change}"}, token) == 302
            expected = first + change + 1
            while time.monotonic() - started < 3 and not all(
                any(v >= expected for _, v in listener.events) for listener in listeners
            ):
                time.sleep(0.02)
            delays = [
                min(at for at, v in listener.events if v >= expected) - started
                for listener in listeners
                if any(v >= expected for _, v in listener.events)
            ]
            assert len(delays) == len(listeners), (
                f"{len(delays)} of {len(listeners)} streams heard change {change}"
            )
            assert max(delays) < 1.0, delays
        # Resuming with Last-Event-ID: an old version gets the current one at once, the current nothing.
        behind = Listener(open_stream(server, owner, group_id, str(first)))
        current = Listener(open_stream(server, owner, group_id, str(first + 3)))
        # A stream sends what it has to catch up on before its first heartbeat: once both have had a
        # heartbeat, all they were sent at the start is there.
        wait_until(lambda: behind.comments and current.comments, 10, "a heartbeat on both streams")
        assert [v for _, v in behind.events] == [first + 3]
        assert current.events == []
    finally:
        for listener in [*listeners, behind, current]:
            if listener is not None:
                listener.close()


@pytest.mark.server
def test_the_json_read_right_after_a_change_shows_it_whichever_worker_serves_it(server):
    owner, group_id = facilitator_of_a_new_group(server, "Reads")
    for change in range(10):
        for _ in range(6):  # every worker has built this version's JSON and read the version
            owner.api(f"/api/groups/{group_id}")
        assert owner.post(f"/groups/{group_id}/issues", {"key": f"R-{change}"}, owner.token("/")) == 302
        keys = [issue["key"] for issue in owner.api(f"/api/groups/{group_id}")["issues"]]
        assert f"R-{change}" in keys, (change, keys)


@pytest.mark.server
def test_a_quiet_stream_sends_heartbeats(server):
    owner, group_id = facilitator_of_a_new_group(server, "Quiet")
    listener = Listener(open_stream(server, owner, group_id))
    # Two heartbeats within 3.5 s: one every second here (LIVE_HEARTBEAT_SECONDS=1).
    wait_until(lambda: len(listener.comments) >= 2, 3.5, f"two heartbeats: {listener.comments}")
    listener.close()
    assert len(listener.events) == 1  # the current version, then nothing changed
