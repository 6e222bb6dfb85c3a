"""The database going away: friendly 503s with Retry-After, one log line per failed request, health
checks, recovery by itself, and no acknowledged vote lost; JSON votes get JSON CSRF errors."""

import logging
import os
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from flask_migrate import upgrade

from estimator import create_app, errors
from estimator.database import read_rows
from estimator.extensions import db
from tests.conftest import make_config, vote
from tests.helpers import report, wait_until
from tests.http import Person
from tests.server import WORKERS, free_port, start_gunicorn, stop

DOWN_MESSAGE = "Estimator cannot reach its database right now."
CSRF_MESSAGE = "The form expired, please try again."


@pytest.fixture
def down_app(key_store_uri, tmp_path):
    """The app pointed at a port where no database listens, with the same secret as `app`."""
    uri = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"
    app = create_app(make_config(uri, BALLOT_KEY_STORE_URI=key_store_uri))
    app.instance_path = str(tmp_path)
    return app


@pytest.fixture
def fresh_throttle(monkeypatch) -> errors.TracebackThrottle:
    """A traceback throttle that has logged nothing yet, whatever earlier tests did."""
    throttle = errors.TracebackThrottle(errors.TRACEBACK_INTERVAL)
    monkeypatch.setattr(errors, "tracebacks", throttle)
    return throttle


def logged_in_while_down(down_app, logged_in):
    """A client of the database-less app carrying a real login cookie from the working app."""
    cookie = logged_in.get_cookie("session")
    assert cookie is not None
    client = down_app.test_client()
    client.set_cookie("session", cookie.value)
    return client


@pytest.mark.parametrize("path", ["/", "/account", "/groups/1", "/issues/1", "/issues/1/estimate"])
def test_pages_of_a_logged_in_person_answer_a_friendly_503(down_app, owner, path):
    client = logged_in_while_down(down_app, owner)
    response = client.get(path)
    page = response.get_data(as_text=True)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.mimetype == "text/html"
    assert DOWN_MESSAGE in page and "Try again" in page and "Estimator" in page
    assert "Internal Server Error" not in page


def test_a_form_vote_while_down_gets_the_page_and_a_script_vote_gets_json(down_app, owner):
    client = logged_in_while_down(down_app, owner)
    form = client.post("/issues/1/estimate", data={"value": "5"})
    assert form.status_code == 503 and form.mimetype == "text/html"
    assert DOWN_MESSAGE in form.get_data(as_text=True)
    script = client.post("/issues/1/estimate", data={"value": "5"}, headers={"Accept": "application/json"})
    assert script.status_code == 503 and script.headers["Retry-After"] == "5"
    assert DOWN_MESSAGE in script.get_json()["error"]


@pytest.mark.parametrize("path", ["/api/groups/1", "/api/issues/1"])
def test_the_json_api_answers_503_json_while_down(down_app, owner, path):
    response = logged_in_while_down(down_app, owner).get(path)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert set(response.get_json()) == {"error"}
    assert DOWN_MESSAGE in response.get_json()["error"]


def test_healthz_answers_without_the_database_and_sets_no_cookie(down_app):
    response = down_app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert "Set-Cookie" not in response.headers


def test_readyz_says_whether_the_database_answers(app, down_app):
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 200 and ready.get_json() == {"status": "ok"}
    assert "Set-Cookie" not in ready.headers
    not_ready = down_app.test_client().get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.headers["Retry-After"] == "5"
    assert not_ready.get_json()["status"] == "unavailable"
    assert "Set-Cookie" not in not_ready.headers


def test_each_failed_request_logs_one_line_and_a_traceback_at_most_once_a_minute(
    down_app, owner, caplog, fresh_throttle
):
    client = logged_in_while_down(down_app, owner)
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            assert client.get("/").status_code == 503
            assert client.get("/api/groups/1").status_code == 503
    lines = [record for record in caplog.records if "database unavailable" in record.getMessage()]
    assert len(lines) == 10
    assert all("\n" not in record.getMessage() for record in lines)
    assert sum(record.exc_info is not None for record in lines) == 1
    # A minute later the same cause gets its traceback again, once.
    fresh_throttle.last = {cause: at - 61 for cause, at in fresh_throttle.last.items()}
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert client.get("/").status_code == 503
    assert sum(record.exc_info is not None for record in caplog.records) == 1


def writes(statement: str, *verbs: str) -> bool:
    """Whether a statement is one of these writes (any write by default), maybe after WITH clauses
    (which may write too)."""
    verbs = verbs or ("INSERT", "UPDATE", "DELETE")
    return re.match(rf"\s*(WITH\b.*\b)?({'|'.join(verbs)})\b", statement, re.S | re.I) is not None


@pytest.fixture
def lose_connection_on_write(app) -> Iterator[threading.Event]:
    """While the event is set, every write to the database fails as if the connection died."""
    armed = threading.Event()

    def fail(_connection, _cursor, statement: str, *_args: object) -> None:
        if armed.is_set() and writes(statement):
            # As SQLAlchemy raises it when the server went away mid-statement.
            lost = Exception("server closed the connection unexpectedly")
            raise sa_exc.OperationalError(statement, {}, lost, connection_invalidated=True)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", fail)
    yield armed
    sa.event.remove(engine, "before_cursor_execute", fail)


def test_a_vote_whose_write_fails_saves_nothing_and_the_next_one_works(
    team, lose_connection_on_write, fresh_throttle
):
    issue_path = f"/api/issues/{team['issue']}"
    lose_connection_on_write.set()
    failed = vote(team["bob"], team["issue"], "8")
    lose_connection_on_write.clear()
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "5"
    assert team["owner"].get(issue_path).get_json()["votes_cast"] == 0
    assert vote(team["bob"], team["issue"], "8").status_code == 302
    assert team["owner"].get(issue_path).get_json()["votes_cast"] == 1


def test_a_server_shutting_down_mid_statement_is_an_outage(team, fresh_throttle):
    """PostgreSQL says it is going away (57P01) before the driver notices the connection is lost."""
    from psycopg.errors import AdminShutdown

    failing = threading.Event()

    def fail(_connection, _cursor, statement: str, *_args: object) -> None:
        if failing.is_set():
            shutdown = AdminShutdown("terminating connection due to administrator command")
            raise sa_exc.OperationalError(statement, {}, shutdown)

    with team["owner"].application.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", fail)
    failing.set()
    try:
        response = team["bob"].get(f"/api/issues/{team['issue']}")
    finally:
        failing.clear()
        sa.event.remove(engine, "before_cursor_execute", fail)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"


def test_any_other_database_error_is_still_a_500_not_an_outage(make_app, team, fresh_throttle):
    served = make_app(PROPAGATE_EXCEPTIONS=False)
    client = logged_in_while_down(served, team["bob"])

    def fail(_connection, _cursor, statement: str, *_args: object) -> None:
        if writes(statement, "INSERT"):
            raise sa_exc.IntegrityError(statement, {}, Exception("duplicate key value"))

    with served.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", fail)
    try:
        response = client.post(f"/issues/{team['issue']}/estimate", data={"value": "5"})
    finally:
        sa.event.remove(engine, "before_cursor_execute", fail)
    assert response.status_code == 500 and "Retry-After" not in response.headers
    assert "Something went wrong on our side." in response.get_data(as_text=True)


def test_a_gevent_worker_keeps_its_postgresql_connections_within_its_pool(monkeypatch, key_store_uri):
    """Under gevent many requests wait on the database at once; past DATABASE_POOL_SIZE they wait
    for a connection rather than open more, which PostgreSQL would pay a process for each."""
    import estimator

    monkeypatch.setattr(estimator, "cooperative", lambda: True)
    uri = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"
    app = create_app(make_config(uri, BALLOT_KEY_STORE_URI=key_store_uri, DATABASE_POOL_SIZE=7))
    with app.app_context():
        pool = db.engine.pool
    assert isinstance(pool, sa.pool.QueuePool)
    assert (pool.size(), pool._max_overflow) == (7, 0)


def test_a_worker_whose_connections_are_all_busy_answers_503_and_saves_nothing(make_app, team):
    """A gevent worker opens no connection past its pool: a request that waits too long for one
    is told the site is busy, in its own format, and may try again."""
    served = make_app(
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.2},
        PROPAGATE_EXCEPTIONS=False,
    )
    client = logged_in_while_down(served, team["bob"])
    with served.app_context():
        held = db.engine.connect()  # the pool's only connection, busy elsewhere
    try:
        page = client.post(f"/issues/{team['issue']}/estimate", data={"value": "5"})
        script = client.post(
            f"/issues/{team['issue']}/estimate", data={"value": "5"}, headers={"Accept": "application/json"}
        )
        api = client.get(f"/api/issues/{team['issue']}")
    finally:
        held.close()
    busy = "Estimator is very busy right now. Nothing was saved; please try again in a moment."
    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
    assert busy in page.get_data(as_text=True)
    assert (script.status_code, script.get_json()) == (503, {"error": busy})
    assert (api.status_code, api.get_json()) == (503, {"error": busy})
    assert team["owner"].get(f"/api/issues/{team['issue']}").get_json()["votes_cast"] == 0
    assert client.post(f"/issues/{team['issue']}/estimate", data={"value": "5"}).status_code == 302


def test_the_key_store_and_the_database_going_away_read_alike(down_app, owner):
    client = logged_in_while_down(down_app, owner)
    database = client.get("/issues/1")
    assert database.headers["Retry-After"] == "5"
    page = database.get_data(as_text=True)
    key_store = errors.MESSAGES[503]
    assert key_store not in page and DOWN_MESSAGE in page


def test_a_script_vote_without_a_valid_token_gets_json(make_app, team):
    guarded = make_app(WTF_CSRF_ENABLED=True)
    client = logged_in_while_down(guarded, team["bob"])
    path = f"/issues/{team['issue']}/estimate"
    for headers in ({}, {"X-CSRFToken": "not-a-token"}):
        response = client.post(path, data={"value": "3"}, headers={"Accept": "application/json", **headers})
        assert response.status_code == 400
        assert response.get_json() == {"error": CSRF_MESSAGE}
    form = client.post(path, data={"value": "3"})
    assert form.status_code == 400 and form.mimetype == "text/html"
    assert CSRF_MESSAGE in form.get_data(as_text=True)
    assert team["owner"].get(f"/api/issues/{team['issue']}").get_json()["votes_cast"] == 0


# --- A real outage: a PostgreSQL of the test's own, stopped and started under load ----------------


@dataclass
class Outcome:
    """One request of a client: what it was, when it started, and how it was answered."""

    kind: str
    started: float
    finished: float
    status: int
    retry_after: str | None
    value: str = ""


def keep_busy(
    person: Person, issue_id: int, token: str, stop_at: threading.Event, log: list[Outcome]
) -> None:
    """Vote, poll the JSON and load the page in turn, as an open page does, until told to stop."""
    vote_path, page_path, api_path = (
        f"/issues/{issue_id}/estimate",
        f"/issues/{issue_id}",
        f"/api/issues/{issue_id}",
    )
    step = 0
    while not stop_at.is_set():
        started = time.monotonic()
        if step % 3 == 0:
            value = str(random.randint(1, 100))
            status, _, headers = person.request(vote_path, {"value": value, "csrf_token": token})
            log.append(Outcome("vote", started, time.monotonic(), status, headers.get("Retry-After"), value))
        else:
            path = api_path if step % 3 == 1 else page_path
            accept = "application/json" if path == api_path else "text/html"
            status, body, headers = person.request(path, headers={"Accept": accept})
            log.append(Outcome(path, started, time.monotonic(), status, headers.get("Retry-After")))
            if status == 503:
                assert DOWN_MESSAGE in body, body[:300]
        step += 1
        time.sleep(0.05)


@pytest.mark.server
def test_stopping_the_database_under_load_gives_503s_loses_no_vote_and_recovers(
    throwaway_postgres, key_store_uri, tmp_path, capsys
):
    cluster = throwaway_postgres
    admin = sa.create_engine(cluster.uri("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql("CREATE DATABASE estimator")
    admin.dispose()
    uri = cluster.uri("estimator")
    migrator = create_app(make_config(uri))
    migrator.instance_path = str(tmp_path)
    with migrator.app_context():
        upgrade()
        db.engine.dispose()

    log_path = tmp_path / "gunicorn.log"
    # The access log (a line a request, by gunicorn.conf.py) apart: the log lines counted are the app's.
    access = f"--access-logfile {tmp_path / 'access.log'}"
    process, url = start_gunicorn(uri, log_path, BALLOT_KEY_STORE_URI=key_store_uri, GUNICORN_CMD_ARGS=access)
    try:
        owner = Person(url)
        assert owner.login("Owner") == 302
        assert owner.post("/groups", {"name": "Outage", "deck": "range"}, owner.token("/")) == 302
        group_id = _only_group(owner)
        owner.post(f"/groups/{group_id}/issues", {"key": "DB-1"}, owner.token(f"/groups/{group_id}"))
        issue_id = owner.api(f"/api/groups/{group_id}")["issues"][0]["id"]
        invite = re.search(r"/join/[A-Za-z0-9_-]+", owner.request(f"/groups/{group_id}")[1])
        assert invite is not None
        people = []
        for n in range(20):
            person = Person(url)
            assert person.login(f"Voter {n}") == 302
            assert person.post(invite.group(0), {"role": "member"}, person.token(invite.group(0))) == 302
            people.append(person)
        tokens = [person.token(f"/issues/{issue_id}/estimate") for person in people]
        log_lines_before = len(log_path.read_text().splitlines())

        stop_at = threading.Event()
        outcomes: list[list[Outcome]] = [[] for _ in people]
        threads = [
            threading.Thread(target=keep_busy, args=(person, issue_id, token, stop_at, outcomes[n]))
            for n, (person, token) in enumerate(zip(people, tokens, strict=True))
        ]
        for thread in threads:
            thread.start()
        wait_until(lambda: all(outcomes), 30, "every client answered once before the outage")
        went_down = time.monotonic()
        cluster.stop()
        time.sleep(4)  # the outage under test: the database is down for 4 s
        cluster.start()
        came_back = time.monotonic()
        wait_until(
            lambda: all(any(o.started > came_back + 2 for o in person_log) for person_log in outcomes),
            30,
            "every client answered a request sent 2 s after the database came back",
        )
        stop_at.set()
        for thread in threads:
            thread.join(timeout=60)

        assert owner.post(f"/issues/{issue_id}/reveal", {}, owner.token(f"/issues/{issue_id}")) == 302
        result = owner.api(f"/api/issues/{issue_id}")["result"]
    finally:
        stop(process)

    everything = [outcome for person_log in outcomes for outcome in person_log]
    statuses = Counter(outcome.status for outcome in everything)
    unavailable = [outcome for outcome in everything if outcome.status == 503]
    log_text = log_path.read_text()
    log_lines = len(log_text.splitlines()) - log_lines_before
    tracebacks = log_text.count("Traceback (most recent call last)")
    late = [outcome for outcome in everything if outcome.started > came_back + 2]
    with migrator.app_context():
        report(
            capsys,
            f"database down 4 s under 20 clients: {dict(statuses)}, {log_lines} log lines, "
            f"{tracebacks} tracebacks, {len(late)} requests after recovery",
        )
    assert set(statuses) <= {200, 302, 503}, statuses
    assert unavailable, "the outage was not noticed at all"
    assert all(outcome.retry_after == "5" for outcome in unavailable)
    # Nobody is turned away while the database is up, and within 2 s of its return all is well.
    assert not [outcome for outcome in unavailable if outcome.finished < went_down]
    assert late and all(outcome.status in {200, 302} for outcome in late)
    # Every acknowledged vote counts: each voter's last acknowledged card is in the result.
    last_votes = Counter(
        [outcome.value for outcome in person_log if outcome.kind == "vote" and outcome.status == 302][-1]
        for person_log in outcomes
    )
    assert result is not None and result["votes"] == 20
    assert Counter(result["distribution"]) == last_votes
    # One line per failed request, and a traceback at most once per cause in each worker process.
    assert "Internal Server Error" not in log_text
    lines = log_text.splitlines()
    warned = [n for n, line in enumerate(lines) if "database unavailable" in line]
    with_traceback = [n for n in warned if n + 1 < len(lines) and lines[n + 1].startswith("Traceback")]
    causes = {re.sub(r"[0-9]+", "N", lines[n].rsplit("(", 1)[-1]) for n in warned}
    assert len(warned) <= len(unavailable) + WORKERS * 4  # and a few answers whose connection died later
    assert len(with_traceback) <= WORKERS * len(causes), (len(with_traceback), causes)
    assert log_lines <= len(unavailable) + tracebacks * 100, (log_lines, len(unavailable))


def _only_group(owner: Person) -> int:
    """The id of the one group the owner has, from the dashboard's link."""
    match = re.search(r'href="/groups/(\d+)"', owner.request("/")[1])
    assert match is not None, "no group on the dashboard"
    return int(match.group(1))


def test_a_read_through_the_driver_on_a_lost_connection_fails_as_sqlalchemy_would_and_the_next_reconnects(
    app,
):
    with app.app_context():
        engine = db.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite reads go through SQLAlchemy itself: there is no connection to lose")
    backend = sa.select(sa.func.pg_backend_pid())
    with engine.connect() as connection:
        (pid,) = read_rows(connection, backend, {})[0]
        # The connection is cut as a network failure would: no message from the server.
        driver: Any = connection.connection.driver_connection
        with socket.socket(fileno=os.dup(driver.pgconn.socket)) as cut:
            cut.shutdown(socket.SHUT_RDWR)
        with pytest.raises(sa_exc.DBAPIError) as raised:
            read_rows(connection, backend, {})
        assert errors.is_database_unreachable(raised.value)  # a 503, not a 500
        assert connection.invalidated  # not handed to the next request
    with engine.connect() as connection:
        (again,) = read_rows(connection, backend, {})[0]
    assert again != pid


def test_a_read_through_the_driver_refuses_parameters_sqlalchemy_spells_out_only_when_it_runs(app):
    with app.app_context():
        engine = db.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite reads go through SQLAlchemy itself, which spells them out")
    backend = sa.select(sa.func.pg_backend_pid())
    for spelt_when_run in (sa.literal(1).in_([1, 2]), sa.literal(2, literal_execute=True) == 2):
        with engine.connect() as connection, pytest.raises(ValueError, match="IN-list"):
            read_rows(connection, backend.where(spelt_when_run), {})
