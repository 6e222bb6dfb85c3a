"""Sessions, security headers and running behind a TLS proxy (OWASP ASVS L1 V3, V14)."""

import re
import time
from types import SimpleNamespace

import itsdangerous.timed
import pytest

from tests.conftest import add_issue, create_group, login, vote


def test_security_headers_on_every_kind_of_response(app, team):
    client = team["bob"]
    responses = [
        client.get("/"),
        client.get(f"/issues/{team['issue']}"),
        client.get("/static/app.js"),
        client.get(f"/api/groups/{team['group']}"),
        client.get("/nowhere"),
        client.post("/groups", data={}),
        app.test_client().get("/account"),
    ]
    for response in responses:
        headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp and headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert "Strict-Transport-Security" not in headers  # plain HTTP: no HSTS
        response.close()


def test_pages_have_no_inline_script_or_style(app, team):
    owner, issue, group = team["owner"], team["issue"], team["group"]
    vote(team["bob"], issue, "3")
    paths = ["/", "/account", "/logout", f"/groups/{group}", f"/issues/{issue}", f"/issues/{issue}/estimate"]
    pages = [owner.get(path).get_data(as_text=True) for path in paths]
    owner.post(f"/issues/{issue}/reveal")
    pages.append(owner.get(f"/issues/{issue}").get_data(as_text=True))
    pages.append(app.test_client().get("/login").get_data(as_text=True))
    for page in pages:
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == []
        assert " style=" not in page and "<style" not in page
        assert not re.search(r"\son[a-z]+=", page)  # no inline event handlers


def test_login_starts_a_new_session(app, client):
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    login(client, "Fresh")
    with client.session_transaction() as session:
        assert "planted" not in session and "_user_id" in session


def test_a_copied_session_cookie_is_useless_after_logout(app, client):
    login(client, "Victim")
    stolen = client.get_cookie("session").value
    thief = app.test_client()
    thief.set_cookie("session", stolen)
    assert thief.get("/account").status_code == 200  # the copy works while logged in
    client.post("/logout")
    assert thief.get("/account").status_code == 302  # and not after logout
    assert thief.get("/api/groups/1").status_code == 401


def test_setting_a_password_signs_out_other_sessions(app, client):
    login(client, "Twice")
    other_device = app.test_client()
    login(other_device, "Twice")
    client.post("/account", data={"new_password": "long enough", "confirm": "long enough"})
    assert client.get("/account").status_code == 200
    assert other_device.get("/account").status_code == 302


def test_a_session_cookie_checked_before_holds_only_while_its_signature_would(app, client, monkeypatch):
    """A process checks a cookie's signature once and then knows it by its text: a new secret key,
    a session changed in one request, and a logout are all still seen."""
    login(client, "Checked")
    cookie = client.get_cookie("session").value
    assert client.get("/account").status_code == 200
    assert client.get("/account").status_code == 200  # known by now
    # What one request adds to its session (a message to show) is not in another's with the cookie.
    first = client.post("/groups", data={"name": "First"})
    pending = client.get_cookie("session").value  # holds the message "Group “First” created"
    copy = app.test_client()
    copy.set_cookie("session", pending)
    assert copy.get("/healthz").status_code == 200  # the cookie is known from here on
    assert client.post("/groups", data={"name": "Second"}).status_code == 302  # adds another
    shown = copy.get(first.location).get_data(as_text=True)
    assert "Group “First” created" in shown and "Group “Second” created" not in shown
    # Another secret key: the same cookie is no login any more.
    monkeypatch.setitem(app.config, "SECRET_KEY", "another key, as after a rotation")
    copy.set_cookie("session", cookie)
    assert copy.get("/account").status_code == 302
    monkeypatch.undo()
    assert copy.get("/account").status_code == 200
    client.post("/logout")
    assert copy.get("/account").status_code == 302


def test_the_session_cookie_is_sent_again_only_when_it_changes(app, client, monkeypatch):
    login(client, "Regular")
    group_id = create_group(client)
    issue_id = add_issue(app, client, group_id)
    client.get(f"/groups/{group_id}")  # shows (and so takes out of the session) the pending messages
    # A cookie signed a moment ago: pages and the page's votes keep it, they do not sign it again.
    assert "Set-Cookie" not in client.get(f"/groups/{group_id}").headers
    by_script = client.post(
        f"/issues/{issue_id}/estimate", data={"value": "5"}, headers={"Accept": "application/json"}
    )
    assert by_script.status_code == 200 and "Set-Cookie" not in by_script.headers
    # The API's answers never sign it again either.
    assert "Set-Cookie" not in client.get(f"/api/groups/{group_id}").headers
    before = client.get_cookie("session").value
    # A cookie older than a login lasts is no login either.
    later = time.time() + app.permanent_session_lifetime.total_seconds() + 60
    monkeypatch.setattr(itsdangerous.timed, "time", SimpleNamespace(time=lambda: later))
    assert client.get("/account").status_code == 302
    monkeypatch.undo()
    # A cookie with a bad signature is no login, old or new.
    client.set_cookie("session", before[:-2] + ("AA" if not before.endswith("AA") else "BB"))
    assert client.get("/account").status_code == 302


@pytest.fixture
def https_app(make_app):
    return make_app(HTTPS=True)


def test_behind_a_tls_proxy_cookies_are_secure_and_hsts_is_sent(https_app):
    client = https_app.test_client()
    # as the proxy would send them with every request
    client.environ_base.update(HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_FOR="203.0.113.7")
    response = client.post("/login", data={"nickname": "Secure"})
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    group_id = create_group(client)
    page = client.get(f"/groups/{group_id}").get_data(as_text=True)
    assert 'value="https://localhost/join/' in page  # X-Forwarded-Proto believed


def test_one_proxy_hop_decides_the_client_address_for_rate_limits(https_app):
    https_app.config["LOGIN_RATE_LIMIT"] = "2 per minute"
    client = https_app.test_client()

    def attempt(chain: str):
        return client.post(
            "/login",
            data={"nickname": "Hop"},
            headers={"X-Forwarded-For": chain, "X-Forwarded-Proto": "https"},
        ).status_code

    # A client cannot dodge the limit by prepending addresses: only the proxy's entry counts.
    assert [attempt(f"10.0.0.{n}, 198.51.100.1") for n in range(3)] == [302, 302, 429]
    assert attempt("198.51.100.2") == 302  # another real client is not affected


def test_without_a_proxy_forwarded_for_is_ignored(app):
    app.config["LOGIN_RATE_LIMIT"] = "2 per minute"
    client = app.test_client()
    codes = [
        client.post(
            "/login", data={"nickname": "Spoof"}, headers={"X-Forwarded-For": f"192.0.2.{n}"}
        ).status_code
        for n in range(3)
    ]
    assert codes == [302, 302, 429]


def test_invite_tokens_carry_at_least_128_bits(app, owner):
    tokens = set()
    for n in range(5):
        group_id = create_group(owner, f"G{n}")
        page = owner.get(f"/groups/{group_id}").get_data(as_text=True)
        match = re.search(r"/join/([A-Za-z0-9_-]+)", page)
        assert match is not None, f"no invite link on the page of group {group_id}"
        tokens.add(match.group(1))
    assert len(tokens) == 5
    assert all(len(token) * 6 >= 128 for token in tokens)  # URL-safe base64: 6 bits a character


def test_user_text_is_always_escaped(app, team):
    payload = "<img src=x onerror=alert(1)>{{7*7}}\"'"
    team["owner"].post("/groups", data={"name": payload, "deck": "range"})
    add_issue(app, team["owner"], team["group"], "K<b>", payload)
    for path in ("/", f"/groups/{team['group']}"):
        page = team["owner"].get(path).get_data(as_text=True)
        assert "<img src=x" not in page and "K<b>" not in page
        assert "{{7*7}}" in page and ">49<" not in page  # shown, not evaluated


def test_login_limit_defaults_to_300_a_minute_and_the_environment_overrides_it():
    import subprocess
    import sys

    read = "import config; print(config.Config.LOGIN_RATE_LIMIT)"
    default = subprocess.run(
        [sys.executable, "-c", read],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    )
    override = subprocess.run(
        [sys.executable, "-c", read],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "LOGIN_RATE_LIMIT": "5 per hour"},
        check=True,
    )
    assert (default.stdout.strip(), override.stdout.strip()) == ("300 per minute", "5 per hour")


def test_invite_joins_are_rate_limited(app, new_client):
    app.config["JOIN_RATE_LIMIT"] = "3 per minute"
    codes = []
    for n in range(4):
        person = new_client(f"Joiner {n}")
        codes.append(person.post(f"/join/{'x' * 43}", data={"role": "member"}).status_code)
    assert codes == [404, 404, 404, 429]  # guessing invite tokens is slow too


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(app):
    from estimator.extensions import db

    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("a SQLite setting; PostgreSQL has no journal mode")
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            busy_timeout = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
            assert busy_timeout is not None and busy_timeout >= 5000
            assert connection.exec_driver_sql("PRAGMA secure_delete").scalar() == 1


def test_a_writer_waits_for_another_process_s_lock_in_sleeps_that_let_others_run(tmp_path, monkeypatch):
    import sqlite3

    import sqlalchemy as sa

    from estimator import database

    path = tmp_path / "locked.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")  # another process is writing
    waiter = sqlite3.connect(path, isolation_level=None)
    waiter.execute("PRAGMA busy_timeout=30000")
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # gevent's sleep, in a worker: other greenlets run here
        sleeps.append(seconds)
        if len(sleeps) == 3:
            holder.execute("COMMIT")

    monkeypatch.setattr("time.sleep", sleep)
    database.begin_immediate(waiter)
    waiter.execute("INSERT INTO t VALUES (1)")
    waiter.execute("COMMIT")
    assert len(sleeps) == 3 and max(sleeps) <= 0.003
    assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == 30000  # restored for reads
    assert holder.execute("SELECT x FROM t").fetchall() == [(1,)]

    holder.execute("BEGIN IMMEDIATE")  # and this time it is never released
    monkeypatch.setattr(database.engine, "BUSY_TIMEOUT", 0.05)
    monkeypatch.setattr("time.sleep", lambda seconds: sleeps.append(seconds))
    with pytest.raises(sa.exc.OperationalError, match="locked"):
        database.begin_immediate(waiter)
    waiter.execute("PRAGMA busy_timeout=30000")


def test_postgresql_reads_in_autocommit_and_writes_in_one_transaction(app, team, dave):
    """GET requests, and the polls answered before Flask, skip BEGIN and ROLLBACK. A new voter's
    ballot is one guarded statement, its own transaction; a changed card and a reveal, which
    write more, run in one transaction on the same pooled connections afterwards."""
    import sqlalchemy as sa

    from estimator.extensions import db
    from tests.conftest import vote
    from tests.test_outage import writes

    with app.app_context():
        engine = db.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL setting; SQLite's transactions are set up in test_sqlite_*")
    seen: list[tuple[bool, str]] = []

    def record(connection, _cursor, statement, *_args):
        seen.append((connection.connection.driver_connection.autocommit, statement))

    def reads() -> None:
        seen.clear()
        assert team["bob"].get(f"/groups/{team['group']}").status_code == 200
        for _ in range(2):  # built by Flask once per version, then read before Flask
            assert team["bob"].get(f"/api/issues/{team['issue']}").status_code == 200
        assert seen and all(autocommit for autocommit, _ in seen)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        reads()
        seen.clear()
        vote(team["bob"], team["issue"], "5")  # a new voter: a glance, then one statement
        assert [autocommit for autocommit, _ in seen] == [True, True]
        assert len([statement for _, statement in seen if writes(statement)]) == 1
        reads()
        seen.clear()
        vote(team["bob"], team["issue"], "8")  # a changed card: read again under the lock
        assert seen[0][0] and len(seen) > 2 and not any(autocommit for autocommit, _ in seen[1:])
        reads()
        for card, member in (("3", dave), ("5", team["carol"])):
            vote(member, team["issue"], card)
        seen.clear()
        assert team["owner"].post(f"/issues/{team['issue']}/reveal").status_code == 302
        assert seen and not any(autocommit for autocommit, _ in seen)
        assert team["owner"].get(f"/api/issues/{team['issue']}").get_json()["state"] == "revealed"
        reads()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
