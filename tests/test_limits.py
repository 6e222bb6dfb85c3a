"""Limits that fit a team behind one address, a Redis that goes away, and small hardening items."""

import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import time

import pytest
import redis
from limits import parse

from estimator import instance_secret_key
from estimator.extensions import db
from tests.conftest import create_group, empty_tables, invite_path, login
from tests.helpers import start_redis, stop_redis, visible
from tests.server import ROOT, free_port, start_gunicorn, stop

LIMIT_SETTINGS = ("LOGIN_RATE_LIMIT", "JOIN_RATE_LIMIT", "INVITE_GUESS_LIMIT", "PASSWORD_FAILURE_LIMIT")


def config_read_with(**env: str) -> dict[str, str]:
    """The limit settings config.py reads in a fresh process with exactly these of them set."""
    environment = {k: v for k, v in os.environ.items() if k not in LIMIT_SETTINGS} | env
    script = "import json, config; print(json.dumps({n: getattr(config.Config, n) for n in %r}))"
    done = subprocess.run(
        [sys.executable, "-c", script % (LIMIT_SETTINGS,)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    settings: dict[str, str] = json.loads(done.stdout)
    return settings


@pytest.fixture(scope="module")
def defaults() -> dict[str, str]:
    """The limits a deployment gets when it sets none of them."""
    return config_read_with()


@pytest.fixture
def settings(defaults):
    """Every test here runs with the production defaults, not the test suite's generous ones."""
    return dict(defaults)


def login_from(app, address: str, nickname: str, password: str = ""):
    """Log in through the form from a browser at another client address; returns the response."""
    data = {"nickname": nickname, "password": password}
    return app.test_client().post("/login", data=data, environ_base={"REMOTE_ADDR": address})


def unknown_token() -> str:
    """A well-formed invite token that no group has."""
    return secrets.token_urlsafe(32)


# --- a team behind one address ------------------------------------------------------------------


def test_the_defaults_are_generous_per_address_and_strict_per_guess(defaults):
    assert defaults["LOGIN_RATE_LIMIT"] == "300 per minute"
    assert parse(defaults["JOIN_RATE_LIMIT"]).amount >= 200
    assert parse(defaults["INVITE_GUESS_LIMIT"]).amount <= 30
    assert parse(defaults["PASSWORD_FAILURE_LIMIT"]).amount <= 10


def test_a_team_of_100_logs_in_and_joins_from_one_office_address_within_a_minute(app, owner):
    group_id = create_group(owner)
    path = invite_path(app, group_id)
    began = time.monotonic()
    statuses = []
    for n in range(100):
        member = app.test_client()  # every browser comes from 127.0.0.1, as behind one NAT
        statuses.append(login(member, f"Member {n:03}").status_code)
        statuses.append(member.get(path).status_code)
        statuses.append(member.post(path, data={"role": "member"}).status_code)
    assert time.monotonic() - began < 60
    assert 429 not in statuses
    assert statuses == [302, 200, 302] * 100
    page = visible(owner.get(f"/groups/{group_id}"))
    assert "Member 000" in page and "Member 099" in page


def test_guessing_invite_tokens_from_one_address_is_refused_at_the_limit(app, owner, defaults):
    limit = parse(defaults["INVITE_GUESS_LIMIT"]).amount
    group_id = create_group(owner)
    guesser = app.test_client()
    login(guesser, "Mallory")
    statuses = [guesser.get(f"/join/{unknown_token()}").status_code for _ in range(50)]
    assert statuses == [404] * limit + [429] * (50 - limit)
    # somebody elsewhere with the real link is not held up by Mallory's guessing
    elsewhere = app.test_client()
    login(elsewhere, "Dana")
    response = elsewhere.post(
        invite_path(app, group_id), data={"role": "member"}, environ_base={"REMOTE_ADDR": "192.0.2.7"}
    )
    assert response.status_code == 302


def test_wrong_invite_guesses_never_lock_a_team_behind_the_same_address_out_of_a_valid_link(
    app, owner, defaults
):
    limit = parse(defaults["INVITE_GUESS_LIMIT"]).amount
    group_id = create_group(owner)
    guesser = app.test_client()  # every browser here comes from 127.0.0.1, as behind one NAT
    login(guesser, "Mallory")
    statuses = [guesser.get(f"/join/{unknown_token()}").status_code for _ in range(limit + 5)]
    assert statuses == [404] * limit + [429] * 5
    path = invite_path(app, group_id)
    assert "Join" in visible(guesser.get(path))  # the guesser's own browser too: a hit teaches nothing
    for name in ("Bob", "Carol"):
        teammate = app.test_client()
        login(teammate, name)
        page = teammate.get(path)
        assert page.status_code == 200 and "Team Rocket" in visible(page)
        assert teammate.post(path, data={"role": "member"}).status_code == 302
    refused = guesser.get(f"/join/{unknown_token()}")
    assert refused.status_code == 429
    assert "Too many unknown invite links were tried from here" in visible(refused)
    assert 0 < int(refused.headers["Retry-After"]) <= 600
    members = visible(owner.get(f"/groups/{group_id}"))
    assert "Bob" in members and "Carol" in members


def test_one_unknown_token_tried_from_many_addresses_is_refused_at_the_limit(app, owner, defaults):
    limit = parse(defaults["INVITE_GUESS_LIMIT"]).amount
    guesser = app.test_client()
    login(guesser, "Mallory")
    token = unknown_token()
    statuses = [
        guesser.get(f"/join/{token}", environ_base={"REMOTE_ADDR": f"198.51.100.{n}"}).status_code
        for n in range(limit + 3)
    ]
    assert statuses == [404] * limit + [429] * 3


def test_the_limits_are_read_from_the_environment():
    chosen = {
        "LOGIN_RATE_LIMIT": "7 per minute",
        "JOIN_RATE_LIMIT": "8 per hour",
        "INVITE_GUESS_LIMIT": "9 per day",
        "PASSWORD_FAILURE_LIMIT": "3 per 5 minutes",
    }
    assert config_read_with(**chosen) == chosen


def test_each_limit_takes_effect(make_app):
    app = make_app(
        LOGIN_RATE_LIMIT="3 per minute",
        JOIN_RATE_LIMIT="2 per minute",
        INVITE_GUESS_LIMIT="2 per minute",
        PASSWORD_FAILURE_LIMIT="2 per minute",
    )
    with app.app_context():
        empty_tables()
    assert [login_from(app, "192.0.2.50", f"Visitor {n}").status_code for n in range(4)] == [
        302,
        302,
        302,
        429,
    ]
    owner = app.test_client()
    assert login(owner, "Olivia").status_code == 302
    group_ids = [create_group(owner, f"Team {n}") for n in range(3)]
    bob = app.test_client()
    assert login(bob, "Bob").status_code == 302
    joins = [bob.post(invite_path(app, g), data={"role": "member"}).status_code for g in group_ids]
    assert joins == [302, 302, 429]
    carol = app.test_client()
    assert login(carol, "Carol").status_code == 302
    guesses = [carol.get(f"/join/{unknown_token()}").status_code for _ in range(3)]
    assert guesses == [404, 404, 429]
    assert login_from(app, "192.0.2.3", "Erin", "right password").status_code == 302
    attempts = [
        login_from(app, f"192.0.2.{10 + n}", "Erin", f"guess number {n}").status_code for n in range(3)
    ]
    assert attempts == [422, 422, 429]


# --- Redis going away ---------------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path):
    """A Redis of this test's own on a free port (never the shared one): (url, stop, start again)."""
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is needed to test a shared store that goes away"
    port = free_port()
    servers = [start_redis(binary, port, tmp_path)]

    def restart() -> None:
        servers.append(start_redis(binary, port, tmp_path))

    yield f"redis://127.0.0.1:{port}/0", lambda: stop_redis(servers[-1]), restart
    for server in servers:
        if server.poll() is None:
            stop_redis(server)


def counters_in(url: str) -> list[bytes]:
    """The names of the keys in the Redis at url (one of this test's own: only counters)."""
    client = redis.Redis.from_url(url)
    try:
        return list(client.scan_iter())
    finally:
        client.close()


def logins_are_counted_in(app, url: str) -> None:
    """Log visitors in until their logins are counted in the Redis at url (within 15 seconds).

    Once its store has failed, Flask-Limiter counts in memory and looks at the store again only
    after a pause, longer after each look that failed.
    """
    deadline = time.monotonic() + 15
    while not counters_in(url):
        assert time.monotonic() < deadline, "the shared counters were not used"
        assert login(app.test_client(), f"Visitor {secrets.token_hex(4)}").status_code == 302
        time.sleep(0.5)


def test_login_account_and_join_work_while_redis_is_down_and_use_it_again_when_back(
    make_app, own_redis, defaults
):
    url, stop_own_redis, start_own_redis = own_redis
    app = make_app(RATELIMIT_STORAGE_URI=url, **defaults)
    with app.app_context():
        empty_tables()
    owner = app.test_client()
    assert login(owner, "Olivia").status_code == 302
    group_id = create_group(owner)
    logins_are_counted_in(app, url)
    stop_own_redis()

    member = app.test_client()
    assert login(member, "Bob", "bob's secret").status_code == 302
    response = member.post(
        "/account",
        data={"current_password": "bob's secret", "new_password": "new secret", "confirm": "new secret"},
    )
    assert response.status_code == 302
    assert member.get(f"/join/{unknown_token()}").status_code == 404
    assert member.post(invite_path(app, group_id), data={"role": "member"}).status_code == 302
    assert "Bob" in visible(owner.get(f"/groups/{group_id}"))
    assert login(app.test_client(), "Bob", "wrong").status_code == 422

    start_own_redis()
    assert counters_in(url) == []  # a new, empty Redis
    logins_are_counted_in(app, url)
    guesser = app.test_client()
    login(guesser, "Mallory")
    assert guesser.get(f"/join/{unknown_token()}").status_code == 404
    assert any(b"invite-guesses" in name for name in counters_in(url))


# --- flash messages -----------------------------------------------------------------------------


def test_unread_messages_do_not_grow_the_session_cookie(app, owner):
    group_id = create_group(owner)
    for n in range(200):  # acting without ever reading a page: every message waits unread
        key = f"{n:04}-{secrets.token_hex(13)}"  # 31 characters that do not compress
        response = owner.post(f"/groups/{group_id}/issues", data={"key": key, "description": "x" * 200})
        assert response.status_code == 302
        cookie = owner.get_cookie("session")
        assert cookie is not None and len(cookie.value) < 4000
    page = owner.get(f"/groups/{group_id}")
    assert page.status_code == 200
    shown = visible(page)
    assert f"Issue {key} added." in shown  # the newest are kept
    assert "Issue 0000-" not in shown and "Issue 0194-" not in shown and "Issue 0195-" in shown


# --- bodies over the limit ----------------------------------------------------------------------


def test_a_form_over_the_limit_gets_the_friendly_413_page(app, owner):
    group_id = create_group(owner)
    response = owner.post(f"/groups/{group_id}/issues", data={"key": "BIG-1", "description": "x" * 100_000})
    assert response.status_code == 413
    assert "more data than Estimator accepts" in visible(response)
    assert "BIG-1" not in visible(owner.get(f"/groups/{group_id}"))


def test_a_body_over_the_limit_under_api_gets_413_json(app, owner):
    group_id = create_group(owner)
    response = owner.post(
        f"/api/groups/{group_id}", data=b"{" + b" " * 100_000 + b"}", content_type="application/json"
    )
    assert response.status_code == 413
    assert response.json == {"error": "That was more data than Estimator accepts."}


def raw_post(url: str, path: str, body: bytes) -> bytes:
    """POST body over a fresh connection as a plain HTTP/1.1 client would; the status line read back.

    A small send buffer keeps the body arriving after the server has answered, as over a real
    network: a server that closed without reading it would make the client fail to send (a reset).
    """
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as connection:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        connection.settimeout(30)
        connection.connect((host, int(port)))
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        connection.sendall(head.encode() + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


def test_gunicorn_answers_413_to_bodies_over_the_limit_instead_of_resetting(schema, key_store_uri, tmp_path):
    process, url = start_gunicorn(schema, tmp_path / "gunicorn.log", BALLOT_KEY_STORE_URI=key_store_uri)
    try:
        answers = []
        for size in (100_000, 900_000, 3_000_000) * 4:  # over MAX_CONTENT_LENGTH, under DISCARD_LIMIT
            try:
                answers.append(raw_post(url, "/login", b"nickname=" + b"x" * size))
            except (BrokenPipeError, ConnectionResetError):
                answers.append(b"connection reset")
        assert answers == [b"HTTP/1.1 413 REQUEST ENTITY TOO LARGE"] * 12
    finally:
        stop(process)


# --- files readable by their owner only ---------------------------------------------------------


def test_sqlite_files_are_readable_by_their_owner_only(make_app, tmp_path):
    database = tmp_path / "private.sqlite"
    old_umask = os.umask(0o022)
    try:
        app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{database}")
        with app.app_context():
            with db.engine.begin() as connection:
                connection.exec_driver_sql("CREATE TABLE t (x TEXT)")
                connection.exec_driver_sql("INSERT INTO t VALUES ('card')")
                files = [database, tmp_path / "private.sqlite-wal", tmp_path / "private.sqlite-shm"]
                modes = [stat.S_IMODE(path.stat().st_mode) for path in files]
            db.engine.dispose()
    finally:
        os.umask(old_umask)
    assert modes == [0o600, 0o600, 0o600]


def test_an_existing_database_readable_by_others_is_made_private(make_app, tmp_path):
    database = tmp_path / "old.sqlite"
    database.touch()
    os.chmod(database, 0o644)
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{database}")
    with app.app_context():
        with db.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        db.engine.dispose()
    assert stat.S_IMODE(database.stat().st_mode) == 0o600


def test_the_generated_secret_key_is_readable_by_its_owner_only(tmp_path):
    old_umask = os.umask(0o022)
    try:
        key = instance_secret_key(str(tmp_path))
    finally:
        os.umask(old_umask)
    assert len(key) == 64
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
