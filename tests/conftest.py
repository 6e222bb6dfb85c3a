"""Fixtures: a fresh database per test (SQLite by default, DATABASE_URL for PostgreSQL)."""

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import jinja2
import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade

from config import TestConfig, database_url
from estimator import create_app
from estimator.extensions import db
from tests.server import POSTGRES_BIN, ThrowawayPostgres, start_gunicorn, stop


class TemplateCodeOfTheRun(jinja2.BytecodeCache):
    """Every app of a test process shares its templates' compiled code, as one production app does
    over its life: the tests make an app each, and compiling the same templates again for each of
    them took about half the time of a test that renders pages. A template whose source changed is
    compiled again (the code is kept with a checksum of the source it came from)."""

    def __init__(self) -> None:
        self.codes: dict[str, tuple[str, Any]] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        checksum, code = self.codes.get(bucket.key, (None, None))
        if checksum == bucket.checksum:
            bucket.code = code

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.codes[bucket.key] = (bucket.checksum, bucket.code)


Flask.jinja_options = {**Flask.jinja_options, "bytecode_cache": TemplateCodeOfTheRun()}


@pytest.fixture(autouse=True)
def _push_request_context():
    """Replace pytest-flask's request context around each test.

    Every request must get its own app context and database session, as it does in production;
    a context pushed around the whole test would make all requests of a test share one session.
    """
    yield


@pytest.fixture
def client(app):
    """A test client that, unlike pytest-flask's, keeps no request context after a request."""
    return app.test_client()


@pytest.fixture(scope="session")
def key_store_uri() -> Iterator[str]:
    """The ballot key store of this run: a memory-backed folder, as on one production machine."""
    root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    folder = tempfile.mkdtemp(prefix="estimator-test-keys-", dir=root)
    yield f"shm://{folder}"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def database_uri(tmp_path_factory) -> Iterator[str]:
    """The test database: DATABASE_URL when set, else a SQLite file of this run.

    Under pytest-xdist every worker has a database of its own, as every test empties the tables:
    on PostgreSQL `<name>_<worker>` is made beside the given database and dropped at the end; the
    SQLite file lies in the worker's own temporary folder."""
    url = database_url(os.environ.get("DATABASE_URL"))
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if url is None:
        yield "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.sqlite")
    elif worker is None:
        yield url
    else:
        with database_of_its_own(url, worker) as own:
            yield own


@contextmanager
def database_of_its_own(url: str, suffix: str) -> Iterator[str]:
    """A fresh database `<name>_<suffix>` on the server of url, dropped afterwards (one left by a
    run that was killed is dropped first)."""
    given = sa.engine.make_url(url)
    name = f"{given.database}_{suffix}"
    admin = sa.create_engine(given, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    quoted = admin.dialect.identifier_preparer.quote(name)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
            connection.exec_driver_sql(f"CREATE DATABASE {quoted}")
        yield given.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        admin.dispose()


@pytest.fixture
def own_database(database_uri, tmp_path) -> Iterator[str]:
    """A fresh database of this test's own, at the schema's version: one that nothing else of the
    run writes to (the session's gunicorn server shares the test database)."""
    place: AbstractContextManager[str]
    if database_uri.startswith("sqlite"):
        place = nullcontext(f"sqlite:///{tmp_path / 'own.sqlite'}")
    else:
        place = database_of_its_own(database_uri, f"own_{os.getpid()}")
    with place as uri:
        app = create_app(make_config(uri))
        with app.app_context():
            upgrade()
            db.engine.dispose()
        yield uri


def make_config(uri: str, **settings) -> type:
    """A TestConfig subclass on the test database with some settings changed."""
    return type("Config", (TestConfig,), {"SQLALCHEMY_DATABASE_URI": uri, **settings})


@pytest.fixture(scope="session")
def schema(database_uri, tmp_path_factory):
    """The schema, built once per run by the migrations themselves."""
    app = create_app(make_config(database_uri))
    app.instance_path = str(tmp_path_factory.mktemp("instance"))
    with app.app_context():
        with db.engine.begin() as connection:
            if db.engine.dialect.name == "postgresql":
                connection.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        upgrade()
        db.engine.dispose()
    return database_uri


def empty_tables() -> None:
    """Delete every row, children first."""
    with db.engine.begin() as connection:
        for table in reversed(db.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture
def settings() -> dict[str, Any]:
    """Config overrides for one test; a test module can override this fixture."""
    return {}


@pytest.fixture
def make_app(schema, key_store_uri, tmp_path):
    """A factory of apps on the test database with some settings changed; closed afterwards.
    The test's first app on the test database finds it emptied (what earlier tests left is gone);
    an app given a database of its own finds it as it is."""
    made: list[Flask] = []
    emptied = False

    def make(**settings):
        nonlocal emptied
        app = create_app(make_config(schema, **({"BALLOT_KEY_STORE_URI": key_store_uri} | settings)))
        app.instance_path = str(tmp_path)
        if not emptied and "SQLALCHEMY_DATABASE_URI" not in settings:
            with app.app_context():
                empty_tables()
            emptied = True
        made.append(app)
        return app

    yield make
    shelf = tmp_path / "live_build_folder"  # the workers' shared builds, in memory: gone with the test
    if shelf.exists():
        shutil.rmtree(shelf.read_text().strip(), ignore_errors=True)
    for app in made:
        app.extensions["instances"].stop()  # a serving app's heartbeat ends with its test
        app.extensions["live_board"].stop()  # and its watcher, which writes who has pages open
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app, settings):
    """The app on a freshly emptied database."""
    return make_app(**settings)


def login(client, nickname: str, password: str = "", next_url: str | None = None):
    """Log in through the form, as a person would; returns the response."""
    url = "/login" if next_url is None else f"/login?next={next_url}"
    return client.post(url, data={"nickname": nickname, "password": password})


@pytest.fixture
def owner(client):
    """A logged-in client named Olivia."""
    login(client, "Olivia")
    return client


@pytest.fixture
def new_client(app):
    """A factory of further logged-in clients, one per person."""

    def make(nickname: str):
        other = app.test_client()
        assert login(other, nickname).status_code == 302
        return other

    return make


def create_group(client, name: str = "Team Rocket", deck: str = "range") -> int:
    """Create a group through the form; returns its id."""
    response = client.post("/groups", data={"name": name, "deck": deck})
    assert response.status_code == 302, response.get_data(as_text=True)
    match = re.fullmatch(r"/groups/(\d+)", response.headers["Location"])
    assert match is not None, response.headers["Location"]
    return int(match.group(1))


def invite_path(app, group_id: int) -> str:
    """The group's current invite path, read from the database."""
    from estimator.models import Group

    with app.app_context():
        group = db.session.get(Group, group_id)
        assert group is not None, group_id
        return f"/join/{group.invite_token}"


def join(app, client, group_id: int, role: str = "member"):
    """Join a group through its invite link."""
    return client.post(invite_path(app, group_id), data={"role": role})


def add_issue(app, client, group_id: int, key: str = "PROJ-1", description: str = "") -> int:
    """Add an issue as the owner; returns its id."""
    from estimator.models import Issue

    response = client.post(f"/groups/{group_id}/issues", data={"key": key, "description": description})
    assert response.status_code == 302, response.get_data(as_text=True)
    with app.app_context():
        issue_id = db.session.scalar(sa.select(Issue.id).where(Issue.group_id == group_id, Issue.key == key))
    assert issue_id is not None, key
    return issue_id


def vote(client, issue_id: int, value: str):
    """Cast a vote through the form."""
    return client.post(f"/issues/{issue_id}/estimate", data={"value": value})


@pytest.fixture
def team(app, owner, new_client):
    """Olivia's range-deck group with members Bob and Carol and one issue. Their two votes stay
    below the default reveal threshold of 3, as the facilitator's own card never counts: add the
    `dave` fixture (and `members_vote`) for a round that can be revealed."""
    group_id = create_group(owner)
    bob, carol = new_client("Bob"), new_client("Carol")
    for member in (bob, carol):
        assert join(app, member, group_id).status_code == 302
    issue_id = add_issue(app, owner, group_id)
    return {"group": group_id, "issue": issue_id, "owner": owner, "bob": bob, "carol": carol}


@pytest.fixture
def streams_held(monkeypatch):
    """Event streams served in-process as a gevent worker serves them, rather than the 204 of a
    worker that cannot hold them (the test client reads each short test stream to its end)."""
    import estimator.live

    monkeypatch.setattr(estimator.live, "cooperative_worker", lambda: True)


@pytest.fixture
def voters(app, new_client):
    """A factory of Olivia's groups (Fibonacci unless told) with three members who vote: the
    group's id and the members' clients."""

    def make(owner, deck: str = "fibonacci"):
        group_id = create_group(owner, deck=deck)
        members = [new_client(name) for name in ("Bob", "Carol", "Dave")]
        for member in members:
            assert join(app, member, group_id).status_code == 302
        return group_id, members

    return make


def estimate(owner, members, issue_id: int, cards: list[str], final: str):
    """The members vote, the facilitator reveals and records the final estimate."""
    for member, card in zip(members, cards, strict=True):
        assert vote(member, issue_id, card).status_code == 302
    assert owner.post(f"/issues/{issue_id}/reveal").status_code == 302
    return owner.post(f"/issues/{issue_id}/accept", data={"estimate": final}, follow_redirects=True)


@pytest.fixture
def renders(monkeypatch):
    """Each render of a live view's variants, in any app of this process: `view:roles`."""
    from estimator.live import regions as live_regions

    counted: list[str] = []
    real = live_regions.render

    def counting(asked, seen, roles, settled=None):
        counted.append(f"{asked.name}:{'+'.join(sorted(roles))}")
        return real(asked, seen, roles, settled)

    monkeypatch.setattr(live_regions, "render", counting)
    return counted


@pytest.fixture
def no_presence(monkeypatch):
    """Pages whose arrival is not written as presence (tests/test_presence.py tests it): in a test
    that counts a page's events or entity tags, its own arrival would be one more change."""
    from estimator.live.presence import PresenceBook

    monkeypatch.setattr(PresenceBook, "opened", lambda *_args: None)
    monkeypatch.setattr(PresenceBook, "closed", lambda *_args: None)
    monkeypatch.setattr(PresenceBook, "polled", lambda *_args: None)


@pytest.fixture(scope="session")
def server(schema, key_store_uri, tmp_path_factory):
    """The URL of the app served by gunicorn with several workers on the test database."""
    log = tmp_path_factory.mktemp("gunicorn") / "server.log"
    process, url = start_gunicorn(schema, log, BALLOT_KEY_STORE_URI=key_store_uri)
    yield url
    stop(process)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
def contexts() -> Iterator[list[Any]]:
    """Browser contexts a test opens (playwright's BrowserContext), closed after it."""
    made: list[Any] = []
    yield made
    for context in made:
        context.close()


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright, one for the whole run (Playwright's own download
    of a browser is not used)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def dave(app, team, new_client):
    """A third member of the team's group (also `team["dave"]`), so that the members alone reach the
    default threshold of 3: the facilitator's own card never counts towards it."""
    client = new_client("Dave")
    assert join(app, client, team["group"]).status_code == 302
    team["dave"] = client
    return client


def members_vote(team, issue_id: int, cards: tuple[str, str, str]) -> None:
    """Bob, Carol and Dave (the `dave` fixture) vote these cards in turn: the three votes besides
    the facilitator's that a reveal needs by default."""
    for name, card in zip(("bob", "carol", "dave"), cards, strict=True):
        assert vote(team[name], issue_id, card).status_code == 302, name


@pytest.fixture
def outsider(new_client):
    """Somebody logged in who is in none of the team's groups."""
    return new_client("Mallory")


@pytest.fixture
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A running cluster of this test alone, stopped and removed afterwards."""
    if not (POSTGRES_BIN / "initdb").exists():
        pytest.skip(
            f"PostgreSQL's initdb is not installed ({POSTGRES_BIN}); a test of outages needs its own cluster"
        )
    root = Path(tempfile.mkdtemp(prefix="estimator-postgres-"))
    cluster = ThrowawayPostgres(root)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if (cluster.data / "postmaster.pid").exists():
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
