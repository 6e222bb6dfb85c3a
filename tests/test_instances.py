"""Several machines on one database: one secret key and one ballot key store for all, or refused.

Each test runs on a database of its own: the servers it starts must meet no other test's servers.
"""

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from estimator import create_app
from estimator.extensions import db
from estimator.instances import InstanceRefused
from estimator.models import Instance, Issue, Round, utcnow
from estimator.sealing import filesystem_of
from tests.conftest import add_issue, create_group, invite_path, login, make_config
from tests.helpers import start_redis, stop_redis
from tests.server import ROOT, free_port, start_gunicorn, stop

JSON = {"Accept": "application/json"}


@pytest.fixture
def other_store() -> Iterator[str]:
    """A second memory-backed key folder: another machine's own store."""
    folder = tempfile.mkdtemp(prefix="estimator-test-other-keys-", dir="/dev/shm")
    yield f"shm://{folder}"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def machine(own_database, key_store_uri) -> Iterator[Callable[..., Flask]]:
    """A factory of apps on the test's own database, as machines would build them (serving,
    unless told not to); their heartbeats stop and their rows go at the end."""
    made: list[Flask] = []

    def build(**settings) -> Flask:
        settings = {"BALLOT_KEY_STORE_URI": key_store_uri, "SERVING": True, **settings}
        app = create_app(make_config(own_database, **settings))
        made.append(app)
        return app

    yield build
    for app in made:
        app.extensions["instances"].stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


# --- 1. one secret and one key store, or refused at start -------------------------------------------


def test_a_machine_with_another_secret_key_is_refused_at_start(machine):
    machine(SECRET_KEY="the-one-secret")
    machine(SECRET_KEY="the-one-secret")  # the same settings: welcome
    with pytest.raises(InstanceRefused) as refused:
        machine(SECRET_KEY="another-secret")
    message = str(refused.value)
    assert "SECRET_KEY differs" in message and "set the same SECRET_KEY on every machine" in message
    assert "the-one-secret" not in message and "another-secret" not in message


def test_machines_without_a_secret_key_each_make_their_own_and_are_refused(machine, tmp_path, monkeypatch):
    folders = iter([tmp_path / "first-machine", tmp_path / "second-machine"])
    monkeypatch.setattr(Flask, "auto_find_instance_path", lambda self: str(next(folders)))
    machine(SECRET_KEY=None)
    with pytest.raises(InstanceRefused, match="SECRET_KEY differs"):
        machine(SECRET_KEY=None)


def test_a_machine_with_a_key_store_of_its_own_is_refused_at_start(machine, other_store):
    machine()
    with pytest.raises(InstanceRefused) as refused:
        machine(BALLOT_KEY_STORE_URI=other_store)
    message = str(refused.value)
    assert other_store in message and "set BALLOT_KEY_STORE_URI to one shared Redis" in message
    assert "SECRET_KEY" not in message


def test_a_changed_setting_is_accepted_once_no_machine_with_the_old_one_runs(machine, other_store):
    first = machine(SECRET_KEY="old-secret")
    first.extensions["instances"].stop()  # stopped: its row is gone at once
    second = machine(SECRET_KEY="new-secret", BALLOT_KEY_STORE_URI=other_store)
    with pytest.raises(InstanceRefused):
        machine(SECRET_KEY="newer-secret")
    # The second machine was killed: its row stays, and counts until 8 heartbeats old (2 minutes).
    alive = second.extensions["instances"].alive_seconds
    assert alive == 120
    with second.app_context():
        db.session.execute(sa.update(Instance).values(seen_at=utcnow() - timedelta(seconds=alive + 1)))
        db.session.commit()
    machine(SECRET_KEY="newer-secret")


def test_commands_are_not_refused(machine, own_database):
    machine(SECRET_KEY="the-served-secret")
    environment = {**os.environ, "DATABASE_URL": own_database, "SECRET_KEY": "a-command-secret"}
    command = [sys.executable, "-m", "flask", "--app", "estimator", "db", "upgrade"]
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def started_together(machine, first: dict[str, Any], second: dict[str, Any]) -> tuple[Flask, Flask]:
    """Two machines started at the same moment, so that neither saw the other at start: the second
    had not recorded itself yet when the first looked, and does so at its next heartbeat."""
    late = machine(**second)
    registry = late.extensions["instances"]
    with late.app_context():
        db.session.execute(sa.delete(Instance).where(Instance.id == registry.id))
        db.session.commit()
    early = machine(**first)
    registry.beat()
    return early, late


def test_readiness_says_when_another_running_machine_has_other_settings(machine, other_store):
    early, late = started_together(
        machine,
        {"SECRET_KEY": "the-one-secret"},
        {"SECRET_KEY": "another-secret", "BALLOT_KEY_STORE_URI": other_store},
    )
    for app in (early, late):
        answer = app.test_client().get("/readyz")
        assert answer.status_code == 503
        error = answer.get_json()["error"]
        assert "SECRET_KEY differs" in error and "BALLOT_KEY_STORE_URI" in error
    late.extensions["instances"].stop()
    assert early.test_client().get("/readyz").status_code == 200  # as soon as the other stopped


@pytest.mark.server
def test_gunicorn_refuses_to_serve_beside_machines_with_other_settings(
    own_database, key_store_uri, other_store, tmp_path
):
    first, _ = start_gunicorn(own_database, tmp_path / "first.log", BALLOT_KEY_STORE_URI=key_store_uri)
    try:
        for name, env in (
            ("secret", {"SECRET_KEY": "another-served-secret", "BALLOT_KEY_STORE_URI": key_store_uri}),
            ("store", {"BALLOT_KEY_STORE_URI": other_store}),
        ):
            with pytest.raises(RuntimeError) as refused:
                start_gunicorn(own_database, tmp_path / f"{name}.log", **env)
            log = str(refused.value)
            assert "Worker failed to boot" in log
            assert ("SECRET_KEY differs" if name == "secret" else "set BALLOT_KEY_STORE_URI to one") in log
    finally:
        stop(first)


# --- 3. a key store that writes to disk is refused unless the operator accepts it ------------------


@pytest.fixture
def redis_with(tmp_path) -> Iterator[Callable[..., str]]:
    """A factory of throwaway Redis servers started with some options; stopped at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    started = []

    def start(*options: str) -> str:
        port = free_port()
        started.append(start_redis(binary, port, tmp_path, *options))
        return f"redis://127.0.0.1:{port}/0"

    yield start
    for process in started:
        stop_redis(process)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (("--save", "3600 1"), "save is '3600 1'"),
        (("--appendonly", "yes"), "appendonly is yes"),
    ],
)
def test_a_redis_that_writes_keys_to_disk_is_refused_unless_accepted(machine, redis_with, options, named):
    uri = redis_with(*options)
    with pytest.raises(InstanceRefused) as refused:
        machine(BALLOT_KEY_STORE_URI=uri)
    message = str(refused.value)
    assert named in message and "BALLOT_KEY_STORE_ALLOW_PERSISTENCE=1" in message
    assert 'save ""' in message and "appendonly no" in message
    machine(BALLOT_KEY_STORE_URI=uri, BALLOT_KEY_STORE_ALLOW_PERSISTENCE=True)


def test_a_redis_that_hides_its_configuration_cannot_be_verified_and_is_refused(machine, redis_with):
    uri = redis_with("--rename-command", "CONFIG", "")
    with pytest.raises(InstanceRefused) as refused:
        machine(BALLOT_KEY_STORE_URI=uri)
    message = str(refused.value)
    assert "cannot be verified" in message and "BALLOT_KEY_STORE_ALLOW_PERSISTENCE=1" in message
    machine(BALLOT_KEY_STORE_URI=uri, BALLOT_KEY_STORE_ALLOW_PERSISTENCE=True)


def test_a_memory_only_redis_and_the_default_folder_are_accepted(machine, redis_with):
    machine(BALLOT_KEY_STORE_URI=redis_with()).extensions["instances"].stop()
    default = machine(BALLOT_KEY_STORE_URI=None)
    assert default.extensions["ballot_keys"].directory.startswith("/dev/shm/estimator-keys-")


def test_a_key_folder_on_a_disk_is_refused_unless_accepted(machine, tmp_path):
    if filesystem_of(str(tmp_path)) in (None, "tmpfs", "ramfs"):
        pytest.skip("the temporary folder is not on a disk here")
    folder = tmp_path / "keys"
    with pytest.raises(InstanceRefused, match="lies on a .* file system, not in memory"):
        machine(BALLOT_KEY_STORE_URI=f"shm://{folder}")
    machine(BALLOT_KEY_STORE_URI=f"shm://{folder}", BALLOT_KEY_STORE_ALLOW_PERSISTENCE=True)


# --- 2. a round keyed by another machine's store is never touched ----------------------------------


def voting_round(app: Flask) -> tuple[FlaskClient, int, dict[str, FlaskClient]]:
    """A group with three members who voted through `app`; its owner's client, issue and members."""
    owner = app.test_client()
    login(owner, "Olivia")
    group_id = create_group(owner)
    issue_id = add_issue(app, owner, group_id)
    members = {}
    for name, card in (("Bob", "3"), ("Carol", "5"), ("Dave", "8")):
        member = app.test_client()
        login(member, name)
        assert member.post(invite_path(app, group_id), data={"role": "member"}).status_code == 302
        assert member.post(f"/issues/{issue_id}/estimate", data={"value": card}).status_code == 302
        members[name] = member
    return owner, issue_id, members


def on_machine(app, client):
    """The same person (the same cookies) served by another machine."""
    moved = app.test_client()
    for name in ("session", "remember_token"):
        if cookie := client.get_cookie(name):
            moved.set_cookie(name, cookie.value)
    return moved


def votes_cast(client, issue_id: int) -> int:
    return int(client.get(f"/api/issues/{issue_id}").get_json()["votes_cast"])


def test_a_machine_that_cannot_open_a_round_keyed_elsewhere_changes_nothing(machine, other_store, caplog):
    # A machine that started with its own store at the same moment: it cannot read the round's key.
    served, stray = started_together(machine, {}, {"BALLOT_KEY_STORE_URI": other_store})
    owner, issue_id, members = voting_round(served)
    erin = stray.test_client()
    login(erin, "Erin")
    with served.app_context():
        group_id = db.session.scalar(sa.select(Issue.group_id).where(Issue.id == issue_id))
    assert group_id is not None
    assert erin.post(invite_path(served, group_id), data={"role": "member"}).status_code == 302

    with caplog.at_level(logging.ERROR):
        form = erin.post(f"/issues/{issue_id}/estimate", data={"value": "13"})
    assert form.status_code == 503
    assert "does not share the ballot key store" in form.get_data(as_text=True)
    assert any("BALLOT_KEY_STORE_URI" in record.getMessage() for record in caplog.records)
    api = erin.post(f"/issues/{issue_id}/estimate", data={"value": "13"}, headers=JSON)
    assert api.status_code == 503 and "Nothing was changed" in api.get_json()["error"]

    ready = stray.test_client().get("/readyz")
    assert ready.status_code == 503 and "BALLOT_KEY_STORE_URI" in ready.get_json()["error"]
    # The others' votes are all there, and the round reveals on the machine that keyed it.
    assert votes_cast(owner, issue_id) == 3
    assert owner.post(f"/issues/{issue_id}/reveal").status_code == 302
    assert owner.get(f"/api/issues/{issue_id}").get_json()["result"]["votes"] == 3


def test_a_key_lost_with_a_store_that_no_longer_runs_still_starts_the_round_afresh(machine, other_store):
    served = machine()
    owner, issue_id, members = voting_round(served)
    served.extensions["instances"].stop()  # that machine, and its store, are gone
    moved = machine(BALLOT_KEY_STORE_URI=other_store)
    bob = on_machine(moved, members["Bob"])
    assert bob.post(f"/issues/{issue_id}/estimate", data={"value": "13"}).status_code == 302
    assert votes_cast(bob, issue_id) == 1  # the others are asked to vote again, as after a restart
    with moved.app_context():
        store = db.session.scalar(sa.select(Round.key_store).where(Round.issue_id == issue_id))
        assert store == moved.extensions["instances"].identity()


def test_a_restart_of_the_shared_redis_is_a_lost_key_not_a_second_store(machine, tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    shared = f"redis://127.0.0.1:{port}/0"
    server = start_redis(binary, port, tmp_path)
    try:
        first = machine(BALLOT_KEY_STORE_URI=shared)
        second = machine(BALLOT_KEY_STORE_URI=shared)
        owner, issue_id, members = voting_round(first)
        stop_redis(server)
        server = start_redis(binary, port, tmp_path)  # empty: every key is lost, and its identity
        second.extensions["instances"].beat()  # the second machine has had a heartbeat since, not the first
        for app in (first, second):
            assert app.test_client().get("/readyz").status_code == 200
        bob = on_machine(second, members["Bob"])
        assert bob.post(f"/issues/{issue_id}/estimate", data={"value": "13"}).status_code == 302
        assert votes_cast(owner, issue_id) == 1  # the others are asked to vote again
    finally:
        stop_redis(server)


def test_a_redis_that_could_not_be_asked_at_start_is_checked_at_the_heartbeat(machine, tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    app = machine(BALLOT_KEY_STORE_URI=f"redis://127.0.0.1:{port}/0")  # down: it starts, unverified
    server = start_redis(binary, port, tmp_path, "--save", "3600 1")
    try:
        app.extensions["instances"].beat()
        answer = app.test_client().get("/readyz")
        assert answer.status_code == 503
        assert "writes keys to disk" in answer.get_json()["error"]
        assert "BALLOT_KEY_STORE_ALLOW_PERSISTENCE=1" in answer.get_json()["error"]
    finally:
        stop_redis(server)
