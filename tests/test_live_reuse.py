"""A vote's build takes what the last build loaded and reads the voted round again: the pages show
exactly what a fresh load shows, and any other change loads afresh."""

import logging
from typing import Any

import pytest
import sqlalchemy as sa

import estimator.voting.routes as voting_routes
from estimator.extensions import db
from estimator.live.regions import parse_view, render
from estimator.live.seen import member_sees
from estimator.models import Group, Membership, Round, User
from estimator.sealing import ballot_keys
from tests.conftest import vote


@pytest.fixture
def loads(monkeypatch) -> list[int]:
    """Each load of a room's issue and backlog from the database (the group ids)."""
    counted: list[int] = []
    real = voting_routes.load_room

    def counting(group_id: int):
        counted.append(group_id)
        return real(group_id)

    monkeypatch.setattr(voting_routes, "load_room", counting)
    return counted


def settled_version(app, group_id: int) -> int:
    with app.app_context():
        found = db.session.execute(
            sa.select(Group.version, Group.vote_versions).where(Group.id == group_id)
        ).one()
    return int(found.version - found.vote_versions)


def room(app, owner_id: int, group_id: int, settled: int | None) -> dict[str, Any]:
    """The room's regions for the facilitator and the members, as a stream's build makes them
    (`settled`: the group's settled version as the board read it), text by role and region."""
    with app.test_request_context("/"):
        seen = member_sees(owner_id, group_id)
        assert seen is not None
        asked = parse_view("room")
        assert asked is not None
        variants = render(asked, seen, frozenset({"owner", "member"}), settled)
    return {
        role: {"title": variant.title.pieces, **{n: s.pieces for n, s in variant.regions.items()}}
        for role, variant in variants.items()
    }


def owner_id(app, group_id: int) -> int:
    with app.app_context():
        return db.session.execute(sa.select(Group.owner_id).where(Group.id == group_id)).scalar_one()


@pytest.fixture
def room_of(app, team, dave):
    """The team's room with its issue in it: a function of the settled version given to the build."""
    team["owner"].post(f"/issues/{team['issue']}/start")
    owner = owner_id(app, team["group"])
    return lambda settled: room(app, owner, team["group"], settled)


def test_a_vote_is_built_from_the_kept_load_and_reads_as_a_fresh_load(app, team, room_of, loads):
    """The round's first ballot too (it gives the round its key, deck and threshold), and a vote
    after the round's key was lost (it forgets the cards sealed under it and makes a new key)."""
    group_id, issue_id = team["group"], team["issue"]
    room_of(settled_version(app, group_id))
    for count, name in enumerate(("bob", "carol", "dave"), start=1):
        if name == "carol":  # the facilitator starts a timer: a change of its own, loaded afresh
            settled = settled_version(app, group_id)
            assert team["owner"].post(f"/issues/{issue_id}/timer", data={"seconds": "60"}).status_code == 302
            assert settled_version(app, group_id) > settled
            room_of(settled_version(app, group_id))
        if name == "dave":  # the key store loses the round's key: Bob's and Carol's votes go
            with app.app_context():
                key_id = db.session.scalar(sa.select(Round.key_id).where(Round.issue_id == issue_id))
                assert key_id is not None
                ballot_keys.store.destroy(key_id)
            count = 1
        settled = settled_version(app, group_id)
        assert vote(team[name], issue_id, "5").status_code == 302
        assert settled_version(app, group_id) == settled, "a vote changes only its round"
        before = len(loads)
        kept = room_of(settled)
        assert len(loads) == before, "the vote's build loaded the room again"
        assert kept == room_of(None)  # loads afresh
        voters = "".join(str(piece) for piece in kept["member"]["voters"])
        assert f"{count} of 4" in voters


def test_any_other_change_loads_afresh_and_shows_it(app, team, room_of, loads):
    group_id, issue_id = team["group"], team["issue"]
    for name in ("bob", "carol", "dave"):
        assert vote(team[name], issue_id, "8").status_code == 302
    settled = settled_version(app, group_id)
    room_of(settled)
    before = len(loads)
    assert team["owner"].post(f"/issues/{issue_id}/reveal").status_code == 302
    assert settled_version(app, group_id) > settled
    after = room_of(settled_version(app, group_id))
    assert len(loads) == before + 1
    assert after == room_of(None)
    result = "".join(str(piece) for piece in after["member"]["result"])
    assert "8" in result


def test_a_kept_load_that_fails_a_build_is_dropped_and_the_build_done_afresh(
    app, team, room_of, loads, monkeypatch, caplog
):
    group_id, issue_id = team["group"], team["issue"]
    for name in ("bob", "carol"):
        assert vote(team[name], issue_id, "3").status_code == 302
    settled = settled_version(app, group_id)
    room_of(settled)
    assert vote(team["dave"], issue_id, "3").status_code == 302
    assert settled_version(app, group_id) == settled

    def failing(issue):
        raise sa.orm.exc.DetachedInstanceError("not loaded")

    monkeypatch.setattr(voting_routes, "read_round_again", failing)
    before = len(loads)
    with caplog.at_level(logging.WARNING, logger="estimator.live.regions"):
        built = room_of(settled)
    assert len(loads) == before + 1
    assert "did not serve" in caplog.text
    monkeypatch.undo()
    assert built == room_of(None)
    assert "3 of 4" in "".join(str(piece) for piece in built["member"]["voters"])


def test_the_vote_that_reveals_automatically_is_a_change_of_everything(app, team, room_of, loads):
    group_id, issue_id = team["group"], team["issue"]
    with app.app_context():
        db.session.execute(sa.update(Group).where(Group.id == group_id).values(auto_reveal=True))
        db.session.commit()
    for name in ("owner", "bob", "carol"):
        assert vote(team[name], issue_id, "13").status_code == 302
    settled = settled_version(app, group_id)
    room_of(settled)
    before = len(loads)
    assert vote(team["dave"], issue_id, "13").status_code == 302  # the last voter: revealed with it
    assert settled_version(app, group_id) > settled
    after = room_of(settled_version(app, group_id))
    assert len(loads) == before + 1
    assert after == room_of(None)
    assert "13" in "".join(str(piece) for piece in after["member"]["result"])


def test_who_opens_the_group_is_a_change_of_everything(app, team, room_of, loads):
    group_id, issue_id = team["group"], team["issue"]
    for name in ("bob", "carol"):
        assert vote(team[name], issue_id, "2").status_code == 302
    settled = settled_version(app, group_id)
    before = room_of(settled)
    loaded = len(loads)
    with app.app_context():
        bob = db.session.execute(
            sa.select(Membership.user_id).join(User).where(User.nickname == "Bob")
        ).scalar_one()
        board = app.extensions["live_board"]
        board.presence.opened(group_id, bob)
        assert board.presence.turn(db.engine) == {group_id}
    assert settled_version(app, group_id) > settled
    after = room_of(settled_version(app, group_id))
    assert len(loads) == loaded + 1
    assert after == room_of(None)
    assert after != before  # Bob is shown as here
