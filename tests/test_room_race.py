"""Auto-reveal under a race: the two last votes of a round arrive at the same instant, on
different gunicorn workers, on SQLite and PostgreSQL."""

from dataclasses import dataclass
from functools import partial

import pytest
import sqlalchemy as sa

from estimator.extensions import db
from estimator.models import Ballot, Group, Round, Tally
from tests.helpers import at_once, report
from tests.http import Person

pytestmark = pytest.mark.server
TRIALS = 8


@dataclass
class Trial:
    """What one race left behind: the two voters' statuses, and the issue as it ended up."""

    statuses: list[int]
    state: str
    votes: int
    #: (number, revealed, key destroyed) of each of the issue's rounds
    rounds: list[tuple[int, bool, bool]]
    tallies: list[tuple[str, int]]
    #: ballots that still hold a sealed card
    sealed: int


@pytest.fixture(autouse=True)
def app_context(app):
    """The test reads the database the served app writes (emptied first by `app`)."""
    with app.app_context():
        yield
        db.session.remove()


def auto_reveal_group(server: str, members: int) -> tuple[Person, int, list[Person]]:
    """Over HTTP: an owner whose group reveals automatically, and `members` who joined it."""
    owner = Person(server)
    assert owner.login("Facilitator") == 302
    assert owner.post("/groups", {"name": "Auto", "deck": "range"}, owner.token("/")) == 302
    db.session.remove()
    group = db.session.scalar(sa.select(Group).order_by(Group.id.desc()))
    assert group is not None, "no group was created"
    group_id, invite = group.id, f"/join/{group.invite_token}"
    settings = {"auto_reveal": "y", "facilitator_votes": "y", "min_votes": "3"}
    assert owner.post(f"/groups/{group_id}/settings", settings, owner.token(f"/groups/{group_id}")) == 302
    assert owner.api(f"/api/groups/{group_id}")["settings"]["auto_reveal"] is True
    people = []
    for n in range(members):
        person = Person(server)
        assert person.login(f"Voter {n}") == 302
        assert person.post(invite, {"role": "member"}, person.token(invite)) == 302
        people.append(person)
    return owner, group_id, people


def test_the_two_last_votes_racing_reveal_once_and_count_both(server, capsys):
    owner, group_id, (first, last, other_last) = auto_reveal_group(server, 3)
    trials: list[Trial] = []
    for trial in range(TRIALS):
        key = f"AUTO-{trial}"
        owner.post(f"/groups/{group_id}/issues", {"key": key}, owner.token(f"/groups/{group_id}"))
        issue_id = next(i["id"] for i in owner.api(f"/api/groups/{group_id}")["issues"] if i["key"] == key)
        assert owner.post(f"/issues/{issue_id}/start", {}, owner.token(f"/groups/{group_id}")) == 302
        path = f"/issues/{issue_id}/estimate"
        for person, card in ((owner, "3"), (first, "5")):
            assert person.post(path, {"value": card}, person.token(path)) == 302
        tokens = last.token(path), other_last.token(path)
        statuses = at_once(
            [
                partial(last.post, path, {"value": "8"}, tokens[0]),
                partial(other_last.post, path, {"value": "13"}, tokens[1]),
            ]
        )
        state = owner.api(f"/api/issues/{issue_id}")
        db.session.remove()
        rounds = db.session.scalars(sa.select(Round).where(Round.issue_id == issue_id)).all()
        tallies = db.session.execute(
            sa.select(Tally.card, Tally.count).join(Round).where(Round.issue_id == issue_id)
        ).all()
        sealed = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Ballot)
            .join(Round)
            .where(Round.issue_id == issue_id, Ballot.sealed.is_not(None))
        )
        trials.append(
            Trial(
                statuses=statuses,
                state=state["state"],
                votes=state["result"]["votes"] if state["result"] else 0,
                rounds=[(r.number, r.revealed_at is not None, r.key_id is None) for r in rounds],
                tallies=sorted((card, count) for card, count in tallies),
                sealed=sealed or 0,
            )
        )
    revealed = sum(t.state == "revealed" and t.rounds == [(1, True, True)] for t in trials)
    counted = sum(t.votes for t in trials)
    errors = sum(status >= 500 for t in trials for status in t.statuses)
    report(
        capsys,
        f"auto-reveal, the two last votes racing, {TRIALS} trials: {revealed}/{TRIALS} revealed once, "
        f"{counted}/{4 * TRIALS} votes counted, {errors} errors",
    )
    for t in trials:
        # both voters were told their vote is recorded; the completing vote revealed the round,
        # exactly once (one round, one tally of all four cards), and no card stays tied to a voter
        assert t.statuses == [302, 302], t
        assert t.state == "revealed" and t.rounds == [(1, True, True)], t
        assert t.tallies == [("13", 1), ("3", 1), ("5", 1), ("8", 1)] and t.votes == 4, t
        assert t.sealed == 0, t
