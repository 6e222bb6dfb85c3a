"""Secret estimates, the anonymous reveal, final estimates and re-votes."""

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from estimator import sealing
from estimator.extensions import db
from estimator.models import Ballot, Group, Issue, IssueState, Round, Tally
from estimator.sealing import ballot_keys, unseal
from tests.conftest import add_issue, create_group, join, members_vote, vote
from tests.helpers import text, visible, wait_until
from tests.test_outage import writes


def ballots(app) -> list[tuple[int, str | None]]:
    """Every ballot's voter and card, opened with its round's key as the app holds it (None: unreadable)."""
    with app.app_context():
        rows = db.session.execute(
            sa.select(Ballot.user_id, Ballot.round_id, Ballot.sealed, Round.key_id)
            .join(Round)
            .order_by(Ballot.id)
        ).all()
        opened: list[tuple[int, str | None]] = []
        for user_id, round_id, sealed, key_id in rows:
            key = ballot_keys.store.get(key_id) if key_id else None
            card = None
            if key and sealed and key_id:
                card = unseal(key, sealed, round_id=round_id, user_id=user_id, key_id=key_id)
            opened.append((user_id, card))
        return opened


def card_group(app, owner, new_client, deck: str):
    """A group with the given deck, members Bob, Carol and Dave (enough for a reveal by default),
    and one issue."""
    group_id = create_group(owner, f"{deck} team", deck)
    members = [new_client(name) for name in ("Bob", "Carol", "Dave")]
    for member in members:
        join(app, member, group_id)
    return add_issue(app, owner, group_id), members


def test_estimate_page_shows_the_deck(app, owner, new_client):
    issue, (bob, *_) = card_group(app, owner, new_client, "tshirt")
    page = text(bob.get(f"/issues/{issue}/estimate"))
    for size in ("XS", "S", "M", "L", "XL", "XXL", "?"):
        assert f'name="value" value="{size}"' in page


def test_range_estimate_page_has_a_number_field_and_a_question_mark(team):
    page = text(team["bob"].get(f"/issues/{team['issue']}/estimate"))
    assert 'type="number" min="1" max="100"' in page and 'value="?"' in page


def test_status_shows_who_voted_never_what(app, team):
    issue = team["issue"]
    assert vote(team["bob"], issue, "42").status_code == 302
    for viewer in (team["owner"], team["carol"]):
        page = text(viewer.get(f"/issues/{issue}"))
        assert "1 of 3" in page
        assert re.search(r"Bob</span>\s*<span class=\"text-success\"", page)
        # nowhere in what a person reads (ids in links and attributes may contain the digits)
        assert not re.search(r"\b42\b", visible(viewer.get(f"/issues/{issue}")))
        assert not re.search(r">\s*42\s*<|value=\"42\"", page)
    # the voter sees their own card
    assert "Your card: 42" in visible(team["bob"].get(f"/issues/{issue}"))


def test_voting_again_replaces_the_vote(app, team):
    issue = team["issue"]
    vote(team["bob"], issue, "3")
    vote(team["bob"], issue, "?")
    assert [card for _, card in ballots(app)] == ["?"]
    assert "1 of 3" in text(team["owner"].get(f"/issues/{issue}"))


@pytest.mark.parametrize("value", ["0", "101", "-1", "abc", "5.5", "", "1e1", "<b>5</b>", "9" * 5000])
def test_bad_range_estimates_are_refused(app, team, value):
    response = vote(team["bob"], team["issue"], value)
    assert response.status_code == 422
    assert "whole number from 1 to 100" in text(response)
    assert ballots(app) == []


@pytest.mark.parametrize(
    "deck, value",
    [("fibonacci", "4"), ("tshirt", "XXXL"), ("powers", "3"), ("modified", "21"), ("fibonacci", "100")],
)
def test_cards_not_in_the_deck_are_refused(app, owner, new_client, deck, value):
    issue, (bob, *_) = card_group(app, owner, new_client, deck)
    response = vote(bob, issue, value)
    assert response.status_code == 422 and "Choose one of the cards" in text(response)
    assert ballots(app) == []


def test_reveal_shows_the_anonymous_result(app, team):
    issue = team["issue"]
    team["owner"].post(f"/groups/{team['group']}/settings", data={"min_votes": "2"})
    vote(team["bob"], issue, "3")
    vote(team["carol"], issue, "8")
    vote(team["owner"], issue, "?")
    assert team["owner"].post(f"/issues/{issue}/reveal").status_code == 302
    page = text(team["carol"].get(f"/issues/{issue}"))
    assert "revealed" in page
    assert "5.5" in page  # average
    assert ">6<" in page  # nearest whole number (5.5 rounds up)
    assert "1 not sure" in page
    assert "Suggestion" in page
    # nowhere is a name next to a value
    assert not re.search(r"(Bob|Carol|Olivia)[^<]*</span>\s*<span[^>]*>\s*(3|8|\?)\s*<", page)


def test_reveal_unlinks_every_value_from_its_voter_in_the_database(app, team, dave):
    issue = team["issue"]
    members_vote(team, issue, ("13", "13", "2"))
    assert [card for _, card in ballots(app)] == ["13", "13", "2"]
    with app.app_context():
        key_id = db.session.scalar(sa.select(Round.key_id))
        assert key_id is not None
    team["owner"].post(f"/issues/{issue}/reveal")
    # no ballot keeps a value and the round's key is gone for good; the values survive only as
    # counts per card, with no voter
    assert [card for _, card in ballots(app)] == [None, None, None]
    with app.app_context():
        assert db.session.scalars(sa.select(Ballot.sealed)).all() == [None, None, None]
        assert db.session.scalar(sa.select(Round.key_id)) is None
        assert ballot_keys.store.get(key_id) is None
    with app.app_context():
        tallies = db.session.execute(sa.select(Tally.card, Tally.count).order_by(Tally.card)).all()
        assert sorted(tallies) == [("13", 2), ("2", 1)]
        assert "user_id" not in Tally.__table__.columns
        # and no other table holds a card
        for table in db.metadata.sorted_tables:
            if table.name not in {"ballots", "tallies"}:
                assert not {"card", "value"} & set(table.columns.keys()), table.name


def test_reveal_needs_three_votes_besides_the_facilitator_s_and_says_how_many_are_missing(app, team, dave):
    owner, issue = team["owner"], team["issue"]
    page = visible(owner.get(f"/issues/{issue}"))
    assert "0 of 4 voted — 4 missing" in page and "3 more needed" in page
    assert "/reveal" not in text(owner.get(f"/issues/{issue}"))  # no reveal to press
    response = owner.post(f"/issues/{issue}/reveal", follow_redirects=True)
    refused = visible(response)
    assert "at least 3 people other than the facilitator" in refused and "3 more votes are needed" in refused
    vote(team["bob"], issue, "5")
    assert "1 of 4 voted — 3 missing" in visible(owner.get(f"/issues/{issue}"))
    # one vote alone is never revealed, by default
    assert "2 more votes are needed" in visible(owner.post(f"/issues/{issue}/reveal", follow_redirects=True))
    vote(owner, issue, "8")
    # the facilitator's own card does not count towards the threshold
    assert "2 more votes are needed" in visible(owner.post(f"/issues/{issue}/reveal", follow_redirects=True))
    assert "2 more needed" in visible(owner.get(f"/issues/{issue}"))
    vote(team["carol"], issue, "?")
    # "?" does
    assert "1 more vote is needed" in visible(owner.post(f"/issues/{issue}/reveal", follow_redirects=True))
    assert "voting" in text(owner.get(f"/issues/{issue}"))
    vote(dave, issue, "3")
    assert f'action="/issues/{issue}/reveal"' in text(owner.get(f"/issues/{issue}"))
    assert owner.post(f"/issues/{issue}/reveal").status_code == 302
    assert "revealed" in text(owner.get(f"/issues/{issue}"))


def test_no_vote_after_the_reveal(app, team, dave):
    issue = team["issue"]
    for voter in (team["bob"], team["carol"], dave):
        vote(voter, issue, "5")
    assert team["owner"].post(f"/issues/{issue}/reveal").status_code == 302
    response = vote(team["owner"], issue, "8")
    assert response.status_code == 409 and "already revealed" in text(response)
    assert len(ballots(app)) == 3


def test_accept_prefilled_with_suggestion_then_recorded(app, team, dave):
    owner, issue = team["owner"], team["issue"]
    members_vote(team, issue, ("3", "5", "4"))
    owner.post(f"/issues/{issue}/reveal")
    page = text(owner.get(f"/issues/{issue}"))
    assert re.search(r'name="estimate"[^>]*value="5"', page)  # 4 → nearest Fibonacci 5
    assert owner.post(f"/issues/{issue}/accept", data={"estimate": "4"}).status_code == 302
    group_page = text(team["bob"].get(f"/groups/{team['group']}"))
    assert "estimated" in group_page and "<strong>4</strong>" in group_page


@pytest.mark.parametrize("estimate", ["", "?", "0", "abc", "101"])
def test_bad_final_estimates_are_refused(app, team, dave, estimate):
    owner, issue = team["owner"], team["issue"]
    members_vote(team, issue, ("3", "3", "3"))
    owner.post(f"/issues/{issue}/reveal")
    response = owner.post(f"/issues/{issue}/accept", data={"estimate": estimate})
    assert response.status_code == 422 and "whole number from 1 to 100" in text(response)
    assert "revealed" in text(owner.get(f"/issues/{issue}"))


def test_accept_before_reveal_is_refused(app, team):
    owner, issue = team["owner"], team["issue"]
    response = owner.post(f"/issues/{issue}/accept", data={"estimate": "5"}, follow_redirects=True)
    assert "Reveal the votes before" in text(response)
    assert "voting" in text(owner.get(f"/issues/{issue}"))


def test_revote_opens_a_new_round_and_keeps_history(app, team):
    owner, issue = team["owner"], team["issue"]
    owner.post(f"/groups/{team['group']}/settings", data={"min_votes": "2"})
    vote(team["bob"], issue, "2")
    vote(team["carol"], issue, "21")
    vote(owner, issue, "?")
    owner.post(f"/issues/{issue}/reveal")
    assert owner.post(f"/issues/{issue}/revote").status_code == 302
    page = text(team["bob"].get(f"/issues/{issue}"))
    assert "round 2" in page and "Earlier rounds" in page and "Round 1" in page
    assert "11.5" in page  # the first round's average stays visible
    assert "0 of 3" in page
    for voter in (team["bob"], team["carol"], owner):
        vote(voter, issue, "8")
    owner.post(f"/issues/{issue}/reveal")
    owner.post(f"/issues/{issue}/accept", data={"estimate": "8"})
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Round)) == 2


def test_revote_while_voting_is_refused(app, team):
    response = team["owner"].post(f"/issues/{team['issue']}/revote", follow_redirects=True)
    assert "still open" in text(response)


def test_vote_by_script_gets_json(app, team):
    response = team["bob"].post(
        f"/issues/{team['issue']}/estimate", data={"value": "13"}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 200 and "vote is recorded" in response.json["message"]
    assert "13" not in response.get_data(as_text=True)
    bad = team["bob"].post(
        f"/issues/{team['issue']}/estimate", data={"value": "0"}, headers={"Accept": "application/json"}
    )
    assert bad.status_code == 422 and "whole number" in bad.json["error"]


def test_a_late_vote_and_a_vote_on_no_issue_are_refused_as_json(app, team, dave):
    script = {"Accept": "application/json"}
    url = f"/issues/{team['issue']}/estimate"
    for member, card in ((dave, "3"), (team["bob"], "5"), (team["carol"], "8")):
        assert member.post(url, data={"value": card}, headers=script).status_code == 200
    assert team["owner"].post(f"/issues/{team['issue']}/reveal").status_code == 302
    late = team["bob"].post(url, data={"value": "13"}, headers=script)
    assert late.status_code == 409 and "already revealed" in late.json["error"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Tally)) == 3  # 3, 5, 8: counted once
    for missing in (team["issue"] + 1000, 2**31 - 1):
        refused = team["bob"].post(f"/issues/{missing}/estimate", data={"value": "5"}, headers=script)
        assert refused.status_code == 404


def test_a_copy_of_a_login_cookie_cannot_vote_once_its_owner_logged_out(app, team):
    """The vote checks the login it is sent with itself (it loads no user): a cookie copied before
    its owner logged out everywhere is no login, for a form, a script and an issue that is not there."""
    copied = app.test_client()
    copied.set_cookie("session", team["bob"].get_cookie("session").value)
    assert team["bob"].post("/logout").status_code == 302
    url = f"/issues/{team['issue']}/estimate"
    for headers in ({}, {"Accept": "application/json"}):
        refused = copied.post(url, data={"value": "5"}, headers=headers)
        assert refused.status_code == 302 and refused.location.startswith("/login")
    missing = copied.post(f"/issues/{team['issue'] + 1000}/estimate", data={"value": "5"})
    assert missing.status_code == 302 and missing.location.startswith("/login")
    assert ballots(app) == []
    assert team["carol"].post(url, data={"value": "5"}).status_code == 302  # the group is not held
    assert [card for _, card in ballots(app)] == ["5"]


def test_a_vote_reads_the_login_with_what_it_checks_and_writes_in_one_statement(app, team):
    """A vote is one read (the login among what it checks) and its writes: no query of its own for
    the user, whom nothing else in a vote asks for. On PostgreSQL the round's first ballot, the
    round's new key and the version bump are one statement, which takes the group's lock itself."""
    seen: list[str] = []

    def listen(_connection, _cursor, statement, *_args):
        seen.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", listen)
    try:
        answer = team["bob"].post(
            f"/issues/{team['issue']}/estimate", data={"value": "5"}, headers={"Accept": "application/json"}
        )
    finally:
        sa.event.remove(engine, "before_cursor_execute", listen)
    assert answer.status_code == 200
    reads = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) <= 2, "\n".join(reads)  # the lock (PostgreSQL only) and the booth
    assert not any(re.match(r"\s*SELECT users\.", s) for s in reads), "\n".join(reads)  # a user load
    written = [s for s in seen if writes(s)]
    assert len(written) == (1 if engine.dialect.name == "postgresql" else 3), "\n".join(written)
    assert [card for _, card in ballots(app)] == ["5"]
    assert team["owner"].get(f"/api/issues/{team['issue']}").get_json()["votes_cast"] == 1


@contextmanager
def waiting_for_a_lock(engine: sa.Engine, thread: threading.Thread) -> Iterator[Callable[[], bool]]:
    """A question to ask while a test holds a lock: is thread waiting for a lock of the database?
    PostgreSQL tells which of this database's connections wait for a lock; on SQLite the thread is
    known to have started its BEGIN IMMEDIATE, which waits while the test holds the write lock."""
    if engine.dialect.name == "postgresql":
        onlooker = sa.create_engine(engine.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        waiting = sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        with onlooker.connect() as connection:
            yield lambda: bool(connection.scalar(waiting))
        onlooker.dispose()
        return
    begun = threading.Event()

    def trace(statement: str) -> None:
        if threading.current_thread() is thread and statement.startswith("BEGIN IMMEDIATE"):
            begun.set()

    def checkout(dbapi_connection, _record, _proxy) -> None:
        dbapi_connection.set_trace_callback(trace)

    def checkin(dbapi_connection, _record) -> None:
        dbapi_connection.set_trace_callback(None)

    sa.event.listen(engine, "checkout", checkout)
    sa.event.listen(engine, "checkin", checkin)
    try:
        yield begun.is_set
    finally:
        sa.event.remove(engine, "checkout", checkout)
        sa.event.remove(engine, "checkin", checkin)


def test_a_vote_that_waits_for_the_group_s_lock_sees_what_was_done_meanwhile(app, team):
    """A change holds the group's lock (here: the round is revealed) when a vote comes in. The vote
    waits, then finds the round revealed: it is refused, and nothing of it is kept."""
    with app.app_context():
        engine = db.engine
    answers = []
    voting = threading.Thread(
        target=lambda: answers.append(
            team["bob"].post(
                f"/issues/{team['issue']}/estimate",
                data={"value": "5"},
                headers={"Accept": "application/json"},
            )
        )
    )
    with waiting_for_a_lock(engine, voting) as waiting, engine.connect() as other:
        other.execute(sa.update(Group).where(Group.id == team["group"]).values(version=Group.version + 1))
        other.execute(sa.update(Issue).where(Issue.id == team["issue"]).values(state=IssueState.REVEALED))
        voting.start()
        wait_until(waiting, 10, "the vote waiting for the lock")
        assert voting.is_alive()
        other.commit()
        voting.join(timeout=30)
    assert answers[0].status_code == 409 and "already revealed" in answers[0].json["error"]
    assert ballots(app) == []


def test_a_vote_whose_group_changed_since_it_read_is_cast_again_from_what_is_there_now(
    app, team, monkeypatch
):
    """Between a vote's read and its write another change to the group commits (here: the
    facilitator raises the reveal threshold). The vote writes nothing from what it read; it is
    cast from the group as it is now, once, under the threshold of the moment of its write."""
    from estimator.voting import rules

    with app.app_context():
        engine = db.engine
        before = db.session.scalar(sa.select(Group.min_votes).where(Group.id == team["group"])) or 0
    if engine.dialect.name != "postgresql":
        pytest.skip("on SQLite a vote holds the database's write lock from before its read")
    reads_of_the_key = []
    real_round_key = rules.round_key

    def meanwhile(booth):
        reads_of_the_key.append(booth)
        if len(reads_of_the_key) == 1:
            with engine.begin() as other:
                other.execute(
                    sa.update(Group)
                    .where(Group.id == team["group"])
                    .values(version=Group.version + 1, min_votes=before + 2)
                )
        return real_round_key(booth)

    made: list[str] = []

    def new_key_id() -> str:
        made.append(sealing.new_key_id())
        return made[-1]

    monkeypatch.setattr(rules, "round_key", meanwhile)
    monkeypatch.setattr(rules, "new_key_id", new_key_id)
    answer = team["bob"].post(
        f"/issues/{team['issue']}/estimate", data={"value": "5"}, headers={"Accept": "application/json"}
    )
    assert answer.status_code == 200
    assert [card for _, card in ballots(app)] == ["5"]
    with app.app_context():
        promise = db.session.scalar(sa.select(Round.min_votes).where(Round.issue_id == team["issue"]))
        keys = db.session.scalars(sa.select(Round.key_id).where(Round.issue_id == team["issue"])).all()
        kept = [ballot_keys.store.get(key_id) is not None for key_id in made]
    glance, locked = reads_of_the_key  # read at a glance first, then again under the lock
    assert glance.glanced and glance.group_min_votes == before
    assert not locked.glanced and locked.group_min_votes == before + 2
    assert promise == before + 2
    # The key made for the first try sealed nothing and is gone; the ballot's own is kept.
    assert len(made) == 2 and keys == made[1:] and kept == [False, True]
    assert team["owner"].get(f"/api/issues/{team['issue']}").get_json()["votes_cast"] == 1


def test_card_deck_flow_with_half_card(app, owner, new_client):
    issue, (bob, carol, dave) = card_group(app, owner, new_client, "modified")
    vote(bob, issue, "½")
    vote(carol, issue, "0.5")
    vote(dave, issue, "1/2")
    assert owner.post(f"/issues/{issue}/reveal").status_code == 302
    page = text(bob.get(f"/issues/{issue}"))
    assert "consensus" in page and "½" in page
