"""The workers of one machine share their builds: a change is rendered once, not once per worker,
and what they share holds nothing of any viewer."""

import json
import os
import re
import stat
import threading
import time
from typing import Any

import pytest

from estimator.live import regions as live_regions
from estimator.live.shelf import Shelf
from tests.conftest import vote
from tests.helpers import wait_until

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def _quiet(no_presence):
    """What these tests count of a change is not mixed with the pages' own arrivals."""


@pytest.fixture
def second_worker(make_app, team):
    """Another worker of the same machine: an app on the same database and instance folder, with
    Bob's and Carol's browsers (their session cookies) pointed at it."""
    worker = make_app()
    clients = {}
    for name in ("bob", "carol"):
        client = worker.test_client()
        client.set_cookie("session", team[name].get_cookie("session").value)
        clients[name] = client
    return worker, clients


def regions(client, group_id: int, view: str) -> dict[str, Any]:
    response = client.get(f"/api/groups/{group_id}/regions?view={view}")
    assert response.status_code == 200, response.get_data(as_text=True)
    found: dict[str, Any] = response.get_json()
    return found


def without_tokens(found: dict[str, Any]) -> dict[str, Any]:
    return {**found, "regions": {name: TOKEN.sub("", html) for name, html in found["regions"].items()}}


def shelved(app, group_id: int) -> dict[str, bytes]:
    folder = app.extensions["live_shelf"].root / str(group_id)
    if not folder.exists():
        return {}
    return {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if not entry.name.endswith(".claim") and not entry.name.startswith("mark-")
    }


def test_the_second_worker_reads_the_first_ones_build_instead_of_rendering(app, team, second_worker, renders):
    worker, on_second = second_worker
    team["owner"].post(f"/issues/{team['issue']}/start")
    group = team["group"]

    first = regions(team["bob"], group, "room")
    assert renders == ["room:member"]
    again = regions(on_second["bob"], group, "room")
    assert renders == ["room:member"]  # read from the shelf: no load, no render
    assert without_tokens(again) == without_tokens(first)
    regions(on_second["carol"], group, "room")
    assert renders == ["room:member"]

    # A vote is a new version: rendered once more, by whichever worker is asked first, and the
    # group's older version leaves the shelf.
    before = set(shelved(app, group))
    assert vote(team["carol"], team["issue"], "5").status_code in (200, 302)
    after_vote = regions(on_second["bob"], group, "room")
    assert renders == ["room:member", "room:member"]
    assert "1 of 3" in after_vote["regions"]["voters"]
    assert regions(team["bob"], group, "room")["regions"]["voters"] == after_vote["regions"]["voters"]
    assert renders == ["room:member", "room:member"]
    now = set(shelved(app, group))
    assert now and not now & before
    assert {name.split("-")[0] for name in now} == {str(after_vote["version"])}


def test_a_change_is_loaded_once_per_machine_whoever_each_worker_serves(app, team, second_worker, renders):
    """Bob's page is on one worker, the facilitator's on the other: whichever wakes first for a
    change renders it for both roles from one load, and the other reads both from the shelf."""
    worker, on_second = second_worker
    owner = worker.test_client()
    owner.set_cookie("session", team["owner"].get_cookie("session").value)
    team["owner"].post(f"/issues/{team['issue']}/start")
    group = team["group"]
    regions(team["bob"], group, "room")
    regions(owner, group, "room")
    assert renders == ["room:member", "room:owner"]  # each worker learns the other's role

    assert vote(team["carol"], team["issue"], "5").status_code in (200, 302)
    bobs = regions(team["bob"], group, "room")
    assert renders[2:] == ["room:member+owner"]
    facilitators = regions(owner, group, "room")
    assert renders[3:] == []  # read from the shelf: no second load of the room
    assert "1 of 3" in bobs["regions"]["voters"] and "1 of 3" in facilitators["regions"]["voters"]
    assert facilitators["regions"]["controls"] != bobs["regions"]["controls"]  # her own buttons


def test_what_workers_share_holds_nobody_s_own_parts(app, team, second_worker, renders):
    """The group page marks the viewer "(you)", and the facilitator's forms carry her token: Bob's
    build, read by Carol's worker, shows Carol as herself, and the shelf holds no token or mark."""
    worker, on_second = second_worker
    group = team["group"]
    bobs = regions(team["bob"], group, "group")
    olivias = regions(team["owner"], group, "group")  # her forms carry her token
    carols = regions(on_second["carol"], group, "group")
    assert renders == ["group:member", "group:owner"]
    members = lambda found: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found["regions"]["members"]))  # noqa: E731
    assert "Bob (you)" in members(bobs) and "Carol (you)" not in members(bobs)
    assert "Carol (you)" in members(carols) and "Bob (you)" not in members(carols)

    files = shelved(app, group)
    assert files
    tokens = {token for html in olivias["regions"].values() for token in TOKEN.findall(html)}
    assert tokens
    for data in files.values():
        assert not any(token in data.decode() for token in tokens)
        for variant in json.loads(data).values():  # by role
            for pieces, _holes, _digest in [variant["title"], *variant["regions"].values()]:
                assert "(you)" not in "".join(pieces)  # only a hole for each member, filled per viewer
    # The machine's folder is this user's alone, as the key store's is.
    folder = app.extensions["live_shelf"].root.parent
    info = os.lstat(folder)
    assert info.st_uid == os.getuid() and not stat.S_IMODE(info.st_mode) & 0o077


def test_a_damaged_build_on_the_shelf_is_rendered_again(app, make_app, team, second_worker, renders):
    worker, on_second = second_worker
    group = team["group"]
    regions(team["bob"], group, "room")
    for name in shelved(app, group):
        (app.extensions["live_shelf"].root / str(group) / name).write_bytes(b'{"version": "half')
    found = regions(on_second["bob"], group, "room")
    assert renders == ["room:member", "room:member"]
    assert "Waiting for the facilitator" in found["regions"]["room-heading"]


def test_workers_share_nothing_when_told_not_to(make_app):
    worker = make_app(LIVE_SHARED_BUILDS=False)
    assert "live_shelf" not in worker.extensions


def test_two_workers_asked_at_once_render_once(app, team, second_worker, renders, monkeypatch):
    """Both workers wake for the same change at the same moment: the second waits for the first's
    rendering (slowed here) instead of rendering the same."""
    worker, on_second = second_worker
    counting = live_regions.render

    def slow(asked, seen, roles, settled=None):
        time.sleep(0.2)
        return counting(asked, seen, roles, settled)

    monkeypatch.setattr(live_regions, "render", slow)
    monkeypatch.setattr(live_regions, "SHELF_WAIT", 30.0)  # however slow this machine is now
    found: dict[str, dict[str, Any]] = {}
    first = threading.Thread(target=lambda: found.update(first=regions(team["bob"], team["group"], "room")))
    first.start()
    folder = app.extensions["live_shelf"].root / str(team["group"])
    wait_until(lambda: folder.exists() and any(folder.glob("*.claim")), 5, "the first worker's claim")
    found["second"] = regions(on_second["carol"], team["group"], "room")
    first.join()
    assert renders == ["room:member"]
    assert without_tokens(found["first"]) == without_tokens(found["second"])


def test_a_claim_nobody_fulfils_is_waited_for_a_moment_only(tmp_path):
    shelf = Shelf(lambda: str(tmp_path), "a database")
    assert shelf.claim(7, 3, "room") is True
    assert shelf.claim(7, 3, "room") is False  # another worker renders it
    started = time.monotonic()
    assert shelf.wait(7, 3, "room", 0.2) is None  # that worker died: render for yourself
    assert 0.2 <= time.monotonic() - started < 1
    later = threading.Timer(0.05, lambda: shelf.put(7, 3, "room", b"built"))
    later.start()
    assert shelf.wait(7, 3, "room", 2) == b"built"
    shelf.put(7, 4, "room", b"newer")
    assert shelf.get(7, 3, "room") is None and shelf.claim(7, 3, "room") is True  # older versions go
