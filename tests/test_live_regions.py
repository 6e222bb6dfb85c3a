"""A change reaches every open page as its changed regions, rendered once per version and variant
and shared, while everything personal stays each viewer's own and no card is in any shared byte."""

import json
import re
import threading
import time
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
from jinja2 import DictLoader, Environment

from estimator.extensions import db
from estimator.live.regions import seat_free
from estimator.models import Round
from estimator.sealing import ballot_keys
from tests.conftest import join, vote

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
GERMAN = {"Accept-Language": "de-DE,de;q=0.9"}


def events(client, group_id: int, view: str, since: int | None = None, headers=None) -> list[tuple[str, Any]]:
    """The (event, data) pairs a page's stream sends in its short test lifetime."""
    query = f"?view={view}" + (f"&since={since}" if since is not None else "")
    response = client.get(f"/api/groups/{group_id}/events{query}", headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)
    found = []
    for message in response.get_data(as_text=True).split("\n\n"):
        fields = dict(line.split(": ", 1) for line in message.splitlines() if ": " in line and line[0] != ":")
        if "event" in fields:
            found.append((fields["event"], json.loads(fields["data"])))
    return found


def version_of(client, path: str) -> int:
    page = client.get(path).get_data(as_text=True)
    return int(re.search(r'data-live-version="(\d+)"', page)[1])  # type: ignore[index]


@pytest.fixture(autouse=True)
def _streams(streams_held, no_presence):
    """Streams are served in-process as a gevent worker serves them; what these tests count of a
    change is not mixed with the pages' own arrivals."""


def test_a_vote_reaches_the_room_as_its_changed_regions_only(app, team, monkeypatch):
    team["owner"].post(f"/issues/{team['issue']}/start")
    room = f"/groups/{team['group']}/room"
    shown = version_of(team["carol"], room)
    monkeypatch.setitem(app.config, "LIVE_STREAM_SECONDS", 3.0)
    sent: list[tuple[str, Any]] = []
    listening = threading.Thread(
        target=lambda: sent.extend(events(team["carol"], team["group"], "room", shown))
    )
    listening.start()
    time.sleep(0.5)  # the stream is open (the page shows `shown`) when Bob votes
    assert vote(team["bob"], team["issue"], "8").status_code in (200, 302)
    listening.join()
    assert [name for name, _ in sent] == ["regions", "version"]
    update = sent[0][1]
    assert update["version"] == sent[1][1]["version"] > shown
    assert set(update["regions"]) == {"voters"}  # the heading, the deck and the rest are as shown
    assert "1 of 3" in update["regions"]["voters"]
    # Carol's own token in what she is sent (the voters list has no form; her deck has).
    carol_token = TOKEN.search(team["carol"].get(room).get_data(as_text=True))[1]  # type: ignore[index]
    full = events(team["carol"], team["group"], "room")[0][1]
    assert set(TOKEN.findall(json.dumps(full))) <= {carol_token}


def test_ten_screens_of_one_variant_cost_one_render(app, team, new_client, renders):
    members = [team["bob"], team["carol"]]
    for n in range(3):
        client = new_client(f"Member{n}")
        assert join(app, client, team["group"]).status_code == 302
        members.append(client)
    team["owner"].post(f"/issues/{team['issue']}/start")
    shown = version_of(team["bob"], f"/groups/{team['group']}/room")
    assert vote(team["bob"], team["issue"], "5").status_code in (200, 302)
    renders.clear()
    for client in members:
        assert events(client, team["group"], "room", since=shown)[0][0] == "regions"
    events(team["owner"], team["group"], "room", since=shown)
    # One load for the members' five screens; the facilitator's variant, first asked for at this
    # version, is rendered once more. At the next version both come from one load.
    assert renders == ["room:member", "room:owner"]
    assert vote(team["carol"], team["issue"], "5").status_code in (200, 302)
    renders.clear()
    for client in [*members, team["owner"]]:
        assert events(client, team["group"], "room", since=shown)[0][0] == "regions"
    assert renders == ["room:member+owner"]


def test_what_no_seat_changes_is_rendered_once_for_every_role(app, team, renders, monkeypatch):
    """Who has voted reads the same for the facilitator and the members: one rendering of it per
    change serves both; the controls, hers alone, are rendered for each seat."""
    template = app.jinja_env.get_template("voting/room.html")
    calls: Counter[str] = Counter()
    for name in ("voters", "controls"):
        real = template.blocks[name]
        monkeypatch.setitem(
            template.blocks, name, lambda ctx, real=real, name=name: calls.update([name]) or real(ctx)
        )
    team["owner"].post(f"/issues/{team['issue']}/start")
    shown = version_of(team["bob"], f"/groups/{team['group']}/room")
    for client in (team["bob"], team["owner"]):  # this process learns both seats
        events(client, team["group"], "room", since=shown)
    assert vote(team["carol"], team["issue"], "5").status_code in (200, 302)
    renders.clear()
    calls.clear()
    bobs = dict(events(team["bob"], team["group"], "room", since=shown))["regions"]["regions"]
    hers = dict(events(team["owner"], team["group"], "room", since=shown))["regions"]["regions"]
    assert renders == ["room:member+owner"]
    assert calls == {"voters": 1, "controls": 2}
    assert "1 of 3" in bobs["voters"] and hers["voters"] == bobs["voters"]
    assert "Facilitator" in hers["controls"] and "Facilitator" not in bobs.get("controls", "")


def test_a_block_that_could_see_the_seat_is_rendered_for_each_seat():
    macros = "{% macro shown() %}{{ membership.role }}{% endmacro %}{% macro plain(x) %}{{ x }}{% endmacro %}"
    page = (
        "{% macro own() %}{{ membership.role }}{% endmacro %}"
        "{% from 'macros.html' import shown with context %}{% from 'macros.html' import plain %}"
        "{% block named %}{{ membership.role }}{% endblock %}"
        "{% block via_own_macro %}{{ own() }}{% endblock %}"
        "{% block via_import_with_context %}{{ shown() }}{% endblock %}"
        "{% block via_include %}{% include 'macros.html' %}{% endblock %}"
        "{% block via_self %}{{ self.named() }}{% endblock %}"
        "{% block free %}{{ plain(group) }}{% endblock %}"
    )
    environment = Environment(loader=DictLoader({"page.html": page, "macros.html": macros}))
    assert seat_free(environment, "page.html") == {"free"}
    # What the rule guards against: a macro imported with the context does see the seat.
    rendered = environment.get_template("page.html").render(membership={"role": "owner"}, group="G")
    assert rendered.count("owner") == 4


def test_personal_parts_never_enter_what_is_shared(app, team):
    """Tokens and "(you)" are each viewer's own; the shared stencils hold no card and no token."""
    team["owner"].post(f"/issues/{team['issue']}/start")
    assert vote(team["bob"], team["issue"], "13").status_code in (200, 302)
    assert vote(team["carol"], team["issue"], "21").status_code in (200, 302)
    group = f"/groups/{team['group']}"
    for client, nickname in ((team["bob"], "Bob"), (team["carol"], "Carol")):
        token = TOKEN.search(client.get(group).get_data(as_text=True))[1]  # type: ignore[index]
        for view in ("room", "group", f"issue-{team['issue']}"):
            data = client.get(f"/api/groups/{team['group']}/regions?view={view}").get_json()
            text = json.dumps(data)
            assert set(TOKEN.findall(text)) <= {token}
            assert ">13<" not in text and ">21<" not in text.replace('value=\\"21\\">21<', "")
        members = client.get(f"/api/groups/{team['group']}/regions?view=group").get_json()["regions"][
            "members"
        ]
        assert re.findall(r">([^<>]+) <span[^>]*>\(you\)", members) == [nickname]
    for variants, _size, _subject in app.extensions["live_regions"]._items.values():
        stencils = [s for built in variants.values() for s in (built.title, *built.regions.values())]
        stencil_text = "".join(p for s in stencils for p in s.pieces)
        assert not TOKEN.search(stencil_text.replace('value=""', ""))
        assert "my-card" not in stencil_text


def test_each_language_and_role_gets_its_own_regions(app, team, new_client):
    oscar = new_client("Oscar")
    assert join(app, oscar, team["group"], role="observer").status_code == 302
    team["owner"].post(f"/issues/{team['issue']}/start")
    url = f"/api/groups/{team['group']}/regions?view=room"
    owner = team["owner"].get(url).get_json()["regions"]
    member = team["bob"].get(url).get_json()["regions"]
    observer = oscar.get(url).get_json()["regions"]
    german = team["bob"].get(url, headers=GERMAN).get_json()["regions"]
    assert "Start timer" in owner["controls"] and "Start timer" not in member["controls"]
    assert "Facilitator" in owner["controls"] and "Facilitator" not in member["controls"]
    assert "vote-form" in member["vote"] and "observing" in observer["vote"]
    assert "Deine Schätzung" in german["vote"] and "Your estimate" in member["vote"]


def test_regions_are_for_members_only_and_name_a_real_view(app, team, outsider):
    client = app.test_client()
    group = team["group"]
    assert client.get(f"/api/groups/{group}/regions?view=room").status_code == 401
    assert outsider.get(f"/api/groups/{group}/regions?view=room").status_code == 404
    for view in ("", "nothing", "issue-x", "room-", "issue-99999999999", "<script>"):
        response = team["bob"].get(f"/api/groups/{group}/regions", query_string={"view": view})
        assert response.status_code == 400 and "view" in response.get_json()["error"]
        assert team["bob"].get(f"/api/groups/{group}/events", query_string={"view": view}).status_code == 400
    assert team["bob"].get(f"/api/groups/{group}/regions?view=issue-987654").status_code == 404


def test_an_unchanged_page_polls_for_a_304_and_a_logout_everywhere_changes_the_tag(app, team):
    url = f"/api/groups/{team['group']}/regions?view=room"
    first = team["bob"].get(url)
    tag = first.headers["ETag"]
    assert team["bob"].get(url, headers={"If-None-Match": tag}).status_code == 304
    assert vote(team["bob"], team["issue"], "3").status_code in (200, 302)
    assert team["bob"].get(url, headers={"If-None-Match": tag}).status_code == 200


def test_a_lost_key_reaches_the_open_pages_within_two_seconds_without_anyone_voting(app, team, monkeypatch):
    """The key store loses the open round's key (it restarted, the key expired or was deleted):
    nothing changes in the database, yet the streams already open tell their pages within 2 s,
    with the voters as they now read: the lost votes no longer count."""
    group_id, issue_id = team["group"], team["issue"]
    team["owner"].post(f"/issues/{issue_id}/start")
    for name in ("bob", "carol"):
        assert vote(team[name], issue_id, "8").status_code in (200, 302)
    shown = version_of(team["owner"], f"/groups/{group_id}/room")
    monkeypatch.setitem(app.config, "LIVE_STREAM_SECONDS", 10.0)
    monkeypatch.setitem(app.config, "LIVE_HEARTBEAT_SECONDS", 0.1)  # a chunk at least every 0.1 s
    response = team["owner"].get(f"/api/groups/{group_id}/events?view=room&since={shown}", buffered=False)
    received: list[tuple[float, str, Any]] = []
    opened, lost_at = time.monotonic(), 0.0
    try:
        for chunk in response.response:
            now = time.monotonic()
            for message in chunk.decode().split("\n\n"):
                fields = dict(line.split(": ", 1) for line in message.splitlines() if ": " in line)
                if "event" in fields:
                    received.append((now, fields["event"], json.loads(fields["data"])))
            if not lost_at and now - opened > 1.5:  # the page is open, the watcher has looked
                assert received == []  # nothing changed: nothing sent
                with app.app_context():
                    key_id = db.session.scalar(sa.select(Round.key_id).where(Round.issue_id == issue_id))
                    assert key_id is not None
                    ballot_keys.store.destroy(key_id)
                lost_at = time.monotonic()
            if lost_at and (any(name == "version" for _, name, _ in received) or now - lost_at > 5):
                break
    finally:
        response.close()
    assert lost_at, "the stream ended before the key was lost"
    assert [name for _, name, _ in received] == ["regions", "version"]
    assert received[-1][0] - lost_at < 2.0, "the pages learnt it too late"
    assert "0 of 3" in received[0][2]["regions"]["voters"]
    assert team["owner"].get(f"/api/issues/{issue_id}").get_json()["votes_cast"] == 0


def test_an_edit_of_the_issue_reaches_its_status_page_with_its_details(app, team, monkeypatch):
    """The facilitator rewrites the issue's long description and the group's small-votes setting:
    a member's open status page gets both, as it gets the heading."""
    status = f"/issues/{team['issue']}"
    shown = version_of(team["carol"], status)
    monkeypatch.setitem(app.config, "LIVE_STREAM_SECONDS", 3.0)
    sent: list[tuple[str, Any]] = []
    listening = threading.Thread(
        target=lambda: sent.extend(events(team["carol"], team["group"], f"issue-{team['issue']}", shown))
    )
    listening.start()
    time.sleep(0.5)  # the stream is open (the page shows `shown`) when Olivia edits
    edit = f"/issues/{team['issue']}/edit"
    token = TOKEN.search(team["owner"].get(edit).get_data(as_text=True))[1]  # type: ignore[index]
    answer = team["owner"].post(
        edit,
        data={"csrf_token": token, "key": "PROJ-1", "description": "Short", "details": "Steps: <b>one</b>"},
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)
    listening.join()
    regions = {name for name, data in sent if name == "regions" for name in data["regions"]}
    assert {"heading", "details"} <= regions
    details = next(
        data["regions"]["details"]
        for name, data in sent
        if name == "regions" and "details" in data["regions"]
    )
    assert "Steps: &lt;b&gt;one&lt;/b&gt;" in details
    assert "Steps: &lt;b&gt;one&lt;/b&gt;" in team["carol"].get(status).get_data(as_text=True)
