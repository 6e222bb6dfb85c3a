"""Who is in the room, the setting that waits only for them, and the facilitator's nudge.

Each serving process keeps its own open pages in a PresenceBook and writes them to the database at
its watcher's turn; here two books stand for two processes (two workers, or two machines) over one
database, and their turns are taken by hand so that nothing waits on a clock.
"""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from estimator.extensions import db
from estimator.live import presence
from estimator.live.presence import PresenceBook
from estimator.models import Group, Presence, User, utcnow
from tests.conftest import join, vote
from tests.helpers import group_json, text, visible, wait_until

NUDGE = "The facilitator nudges you: the team is waiting for your vote."


@pytest.fixture
def settings(own_database):
    """Presence on a database of the test's own: the session's browser server shares the suite's
    database, and its open pages' presence is written again (as after an outage) whenever a test
    empties the tables, into whichever group has that id now."""
    return {"SQLALCHEMY_DATABASE_URI": own_database}


def user_id(app, nickname: str) -> int:
    with app.app_context():
        found = db.session.scalar(sa.select(User.id).where(User.nickname == nickname))
    assert found is not None, nickname
    return found


def version(app, group_id: int) -> int:
    with app.app_context():
        group = db.session.get(Group, group_id)
        assert group is not None
        return group.version


@pytest.fixture
def team(team):
    """The team's group with its issue in the room, where the meeting is."""
    assert team["owner"].post(f"/issues/{team['issue']}/start").status_code == 302
    return team


def turn(app, book: PresenceBook) -> set[int]:
    """One turn of a process's watcher: what it writes of its open pages."""
    with app.app_context():
        return book.turn(db.engine)


def test_the_room_and_the_api_show_who_has_the_group_open_on_any_process(app, team):
    group, owner = team["group"], team["owner"]
    first, second = PresenceBook(), PresenceBook()  # two processes
    first.opened(group, user_id(app, "Bob"))
    second.opened(group, user_id(app, "Carol"))
    before = version(app, group)
    assert turn(app, first) == {group} and turn(app, second) == {group}
    assert version(app, group) > before, "pages follow an arrival as any change"

    assert group_json(owner, group)["present"] == ["Bob", "Carol"]
    page = visible(owner.get(f"/issues/{team['issue']}"))
    assert "Here now: Bob, Carol" in page
    # Olivia votes but has no page open anywhere: she is marked away, the others are not.
    assert text(owner.get(f"/issues/{team['issue']}")).count("away</span>") == 1

    # Bob's page closes: after the grace of a reload he is gone, Carol stays.
    first.closed(group, user_id(app, "Bob"))
    assert turn(app, first) == set(), "a reload within the grace is no departure"
    first._closed = {pair: at - presence.GRACE_SECONDS - 1 for pair, at in first._closed.items()}
    assert turn(app, first) == {group}
    assert group_json(owner, group)["present"] == ["Carol"]


def test_a_second_page_on_another_process_changes_nobody_s_presence(app, team):
    """Bob opens the room on two machines: only his first arrival and his last departure are
    changes the group's pages are sent."""
    group, bob = team["group"], user_id(app, "Bob")
    first, second = PresenceBook(), PresenceBook()
    first.opened(group, bob)
    assert turn(app, first) == {group}
    before = version(app, group)
    second.opened(group, bob)
    assert turn(app, second) == set() and version(app, group) == before
    first.closed(group, bob)
    first._closed = {pair: at - presence.GRACE_SECONDS - 1 for pair, at in first._closed.items()}
    assert turn(app, first) == set() and version(app, group) == before, "still there on the other"
    second.closed(group, bob)
    second._closed = {pair: at - presence.GRACE_SECONDS - 1 for pair, at in second._closed.items()}
    assert turn(app, second) == {group} and version(app, group) > before
    assert group_json(team["owner"], group)["present"] == []


def test_a_process_that_died_leaves_nobody_present_for_long(app, team, monkeypatch):
    group, owner = team["group"], team["owner"]
    dead, alive = PresenceBook(), PresenceBook()
    dead.opened(group, user_id(app, "Bob"))
    alive.opened(group, user_id(app, "Carol"))
    turn(app, dead)
    turn(app, alive)
    assert group_json(owner, group)["present"] == ["Bob", "Carol"]
    # The process serving Bob dies: nobody refreshes his row any more. Once it is older than the
    # time to live, the next refresh of a process still serving pages removes it; pages follow.
    with app.app_context():
        db.session.execute(
            sa.update(Presence)
            .where(Presence.instance == dead.instance)
            .values(seen_at=utcnow() - timedelta(seconds=presence.TTL_SECONDS + 1))
        )
        db.session.commit()
    alive._refreshed = 0.0  # its next turn is a refresh
    before = version(app, group)
    assert group in turn(app, alive)
    assert version(app, group) > before
    assert group_json(owner, group)["present"] == ["Carol"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Presence)) == 1


def test_a_page_that_polls_counts_as_present(app, team):
    """A page on a server that cannot hold streams polls its regions: each poll keeps it present."""
    group, bob = team["group"], team["bob"]
    assert bob.get(f"/api/groups/{group}/regions?view=room").status_code == 200
    # This process's watcher writes it at its next turn, a quarter of a second away.
    wait_until(lambda: group_json(team["owner"], group)["present"] == ["Bob"], timeout=3)


def test_presence_says_nothing_of_cards(app, team, dave):
    """Who is here is the same whatever anyone voted: no card changes it."""
    group, issue = team["group"], team["issue"]
    book = PresenceBook()
    for name in ("Bob", "Carol"):
        book.opened(group, user_id(app, name))
    turn(app, book)
    shown = []
    for card in ("3", "?"):
        vote(team["bob"], issue, card)
        shown.append(
            (
                group_json(team["owner"], group)["present"],
                text(team["owner"].get(f"/groups/{group}/room")).count("away</span>"),
            )
        )
    assert shown[0] == shown[1]


def test_present_only_lets_an_absent_member_not_block_the_cue_or_auto_reveal(app, team, dave, new_client):
    group, issue, owner = team["group"], team["issue"], team["owner"]
    erin = new_client("Erin")
    assert join(app, erin, group).status_code == 302  # Erin joined but is not here
    owner.post(f"/groups/{group}/settings", data={"facilitator_votes": "0"})
    book = PresenceBook()
    for name in ("Olivia", "Bob", "Carol", "Dave"):
        book.opened(group, user_id(app, name))
    turn(app, book)
    for member, card in ((team["bob"], "3"), (team["carol"], "5"), (dave, "8")):
        assert vote(member, issue, card).status_code == 302

    # Without the setting, absent Erin is waited for.
    room = owner.get(f"/groups/{group}/room")
    assert "You can reveal." not in visible(room)
    assert text(room).count("away</span>") == 1, "Erin is marked away"
    # With it, the voters present have all voted: the cue shows, and Erin can still vote.
    assert owner.post(f"/groups/{group}/settings", data={"present_only": ["0", "y"]}).status_code == 302
    assert group_json(owner, group)["settings"]["present_only"] is True
    room = visible(owner.get(f"/groups/{group}/room"))
    assert "Everybody has voted. You can reveal." in room


def test_present_only_auto_reveal_reveals_with_the_last_present_vote(app, team, dave, new_client):
    group, issue, owner = team["group"], team["issue"], team["owner"]
    erin = new_client("Erin")
    assert join(app, erin, group).status_code == 302
    owner.post(
        f"/groups/{group}/settings",
        data={"facilitator_votes": "0", "auto_reveal": ["0", "y"], "present_only": ["0", "y"]},
    )
    book = PresenceBook()
    for name in ("Bob", "Carol", "Dave"):
        book.opened(group, user_id(app, name))
    turn(app, book)
    vote(team["bob"], issue, "3")
    vote(team["carol"], issue, "5")
    assert group_json(owner, group)["issues"][0]["state"] == "voting"
    vote(dave, issue, "8")
    assert group_json(owner, group)["issues"][0]["state"] == "revealed", "absent Erin does not block it"


def test_the_nudge_reaches_only_those_who_have_not_voted(app, team, dave):
    group, issue, owner = team["group"], team["issue"], team["owner"]
    vote(team["carol"], issue, "5")
    response = owner.post(f"/issues/{issue}/nudge?back=room", follow_redirects=True)
    assert response.status_code == 200
    assert "Nudged Bob, Dave, Olivia" in visible(response)

    assert NUDGE in visible(team["bob"].get(f"/groups/{group}/room"))
    assert NUDGE in visible(dave.get(f"/issues/{issue}"))
    assert NUDGE not in visible(team["carol"].get(f"/groups/{group}/room")), "Carol has voted"
    # The live regions are shared by every member: the nudge is a hole each fills with their own.
    bob_regions = team["bob"].get(f"/api/groups/{group}/regions?view=room").get_data(as_text=True)
    carol_regions = team["carol"].get(f"/api/groups/{group}/regions?view=room").get_data(as_text=True)
    assert NUDGE in bob_regions and NUDGE not in carol_regions

    vote(team["bob"], issue, "8")  # Bob votes: his nudge is gone, Dave's stays
    assert NUDGE not in visible(team["bob"].get(f"/groups/{group}/room"))
    assert NUDGE in visible(dave.get(f"/groups/{group}/room"))


def test_a_nudge_is_refused_when_nobody_is_late_or_the_round_is_revealed(app, team, dave):
    group, issue, owner = team["group"], team["issue"], team["owner"]
    assert team["bob"].post(f"/issues/{issue}/nudge").status_code == 403
    for member, card in ((owner, "1"), (team["bob"], "3"), (team["carol"], "5"), (dave, "8")):
        vote(member, issue, card)
    before = version(app, group)
    page = visible(owner.post(f"/issues/{issue}/nudge", follow_redirects=True))
    assert "Everybody has voted: there is nobody to nudge." in page
    assert version(app, group) == before, "a refused nudge changes nothing"
    owner.post(f"/issues/{issue}/reveal")
    page = visible(owner.post(f"/issues/{issue}/nudge", follow_redirects=True))
    assert "already revealed" in page


@pytest.mark.parametrize("late", [True, False])
def test_the_nudge_button_shows_only_while_someone_is_missing(app, team, dave, late):
    issue, owner = team["issue"], team["owner"]
    voters = [owner, team["bob"], team["carol"]] + ([] if late else [dave])
    for member in voters:
        vote(member, issue, "3")
    has_button = f'action="/issues/{issue}/nudge"' in text(owner.get(f"/issues/{issue}"))
    assert has_button is late
