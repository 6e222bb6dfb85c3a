"""A Redis that stops answering (its process stopped, its socket still open) costs a request at most
a moment: a vote gets its 503 at once, and what does not need Redis answers as usual."""

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import add_issue, create_group, join, login, vote
from tests.helpers import start_redis, stop_redis, visible, wait_until
from tests.http import Person, started_meeting
from tests.server import free_port, start_gunicorn, stop

#: What a request may take while Redis is frozen, in seconds: its timeout once, and a busy machine.
QUICK = 1.0


@pytest.fixture
def frozen_redis(tmp_path) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A Redis of this test's own: (url, freeze, thaw). Freezing stops its process (SIGSTOP): the
    socket stays open and takes connections, and nothing answers."""
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is needed to freeze a Redis"
    port = free_port()
    server = start_redis(binary, port, tmp_path)
    try:
        yield (
            f"redis://127.0.0.1:{port}",
            lambda: os.kill(server.pid, signal.SIGSTOP),
            lambda: os.kill(server.pid, signal.SIGCONT),
        )
    finally:
        os.kill(server.pid, signal.SIGCONT)
        stop_redis(server)


def timed(action: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """What action(*args) returns, and how many seconds it took."""
    began = time.monotonic()
    result = action(*args)
    return result, time.monotonic() - began


@pytest.mark.quiet
def test_a_frozen_redis_refuses_votes_at_once_and_pages_polls_and_logins_still_answer(make_app, frozen_redis):
    url, freeze, thaw = frozen_redis
    app = make_app(BALLOT_KEY_STORE_URI=f"{url}/0", RATELIMIT_STORAGE_URI=f"{url}/1")
    owner = app.test_client()
    assert login(owner, "Olivia").status_code == 302
    group_id = create_group(owner)
    bob, carol = app.test_client(), app.test_client()
    for client, name in ((bob, "Bob"), (carol, "Carol")):
        assert login(client, name).status_code == 302
        assert join(app, client, group_id).status_code == 302
    issue_id = add_issue(app, owner, group_id)
    assert owner.post(f"/issues/{issue_id}/start").status_code == 302
    assert vote(bob, issue_id, "3").status_code == 302  # the round's key is in Redis now

    freeze()
    for card in ("5", "8", "13"):
        refused, seconds = timed(vote, carol, issue_id, card)
        assert refused.status_code == 503, refused.status_code
        assert "cannot reach the store" in visible(refused)
        assert seconds < QUICK, f"a vote waited {seconds:.2f} s for its 503"
    for _ in range(3):
        for client, path in (
            (owner, f"/groups/{group_id}/room"),
            (bob, f"/api/groups/{group_id}"),
            (bob, f"/api/issues/{issue_id}"),
            (carol, f"/groups/{group_id}"),
        ):
            page, seconds = timed(client.get, path)
            assert page.status_code == 200, (path, page.status_code)
            assert seconds < QUICK, f"{path} took {seconds:.2f} s"
    for name in ("Dana", "Erin"):
        logged_in, seconds = timed(login, app.test_client(), name)
        assert logged_in.status_code == 302
        assert seconds < QUICK, f"a login took {seconds:.2f} s"

    thaw()
    began = time.monotonic()
    wait_until(lambda: vote(carol, issue_id, "5").status_code == 302, 10, "a vote after the thaw")
    assert time.monotonic() - began < 2.0
    assert bob.get(f"/api/issues/{issue_id}").json["votes_cast"] == 2


@pytest.mark.server
@pytest.mark.quiet
def test_served_by_gevent_workers_a_frozen_redis_costs_each_request_at_most_a_moment(
    schema, frozen_redis, tmp_path
):
    url, freeze, thaw = frozen_redis
    log = tmp_path / "gunicorn.log"
    process, server = start_gunicorn(
        schema, log, BALLOT_KEY_STORE_URI=f"{url}/0", RATELIMIT_STORAGE_URI=f"{url}/1"
    )
    try:
        owner, group_id, issue_id, (bob, carol) = started_meeting(server, ["Bob", "Carol"])
        room = f"/groups/{group_id}/room"
        token = carol.token(room)
        assert bob.post(f"/issues/{issue_id}/estimate", {"value": "3"}, bob.token(room)) == 302

        freeze()
        # Enough requests of each kind that every worker meets the frozen Redis at least once.
        for card in ("5", "8", "13", "5", "8", "13"):
            status, seconds = timed(carol.post, f"/issues/{issue_id}/estimate", {"value": card}, token)
            assert status == 503 and seconds < QUICK, f"a vote got {status} after {seconds:.2f} s"
        for _ in range(3):
            for person, path in (
                (owner, room),
                (bob, f"/api/groups/{group_id}"),
                (carol, f"/groups/{group_id}"),
            ):
                (status, _, _), seconds = timed(person.request, path)
                assert status == 200 and seconds < QUICK, f"{path} got {status} after {seconds:.2f} s"
            status, seconds = timed(Person(server).login, f"Dana {time.time_ns()}")
            assert status == 302 and seconds < QUICK, f"a login got {status} after {seconds:.2f} s"

        thaw()
        began = time.monotonic()
        wait_until(
            lambda: carol.post(f"/issues/{issue_id}/estimate", {"value": "5"}, token) == 302,
            10,
            "a vote after the thaw",
        )
        assert time.monotonic() - began < 2.0
        assert bob.api(f"/api/issues/{issue_id}")["votes_cast"] == 2
    finally:
        thaw()
        stop(process)
    assert "Traceback" not in log.read_text()
