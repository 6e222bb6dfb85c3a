"""Races against the app served by gunicorn with several workers, on SQLite and PostgreSQL."""

import uuid
from collections import Counter
from functools import partial

import pytest
import redis
import sqlalchemy as sa

from estimator.extensions import db
from estimator.models import Ballot, Group, Membership, Round, Tally, User
from tests.helpers import at_once, report
from tests.http import Person
from tests.server import start_gunicorn, stop

pytestmark = pytest.mark.server
REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture(autouse=True)
def app_context(app):
    """The test reads the database the served app writes (emptied first by `app`)."""
    with app.app_context():
        yield
        db.session.remove()


def group_with_issue(server, members: int) -> tuple[Person, int, int, str, list[Person]]:
    """Over HTTP: an owner, a group with one issue, and `members` who joined it."""
    owner = Person(server)
    owner.login("Owner")
    owner.post("/groups", {"name": "Race", "deck": "range"}, owner.token("/"))
    group_id = _latest_group_id()
    owner.post(f"/groups/{group_id}/issues", {"key": "R-1"}, owner.token(f"/groups/{group_id}"))
    invite = _invite(group_id)
    people = []
    for n in range(members):
        person = Person(server)
        person.login(f"Member {n}")
        assert person.post(invite, {"role": "member"}, person.token(invite)) == 302
        people.append(person)
    issue_id = owner.api(f"/api/groups/{group_id}")["issues"][0]["id"]
    return owner, group_id, issue_id, invite, people


def _latest_group_id() -> int:
    db.session.remove()
    group_id: int | None = db.session.scalar(sa.select(sa.func.max(Group.id)))
    assert group_id is not None, "no group was created"
    return group_id


def _invite(group_id: int) -> str:
    db.session.remove()
    group = db.session.get(Group, group_id)
    assert group is not None, group_id
    return "/join/" + group.invite_token


def test_twenty_simultaneous_first_logins_make_one_user(server, capsys):
    nickname = f"Swarm {uuid.uuid4().hex[:8]}"
    people = [Person(server) for _ in range(20)]
    tokens = [person.token("/login") for person in people]
    statuses = at_once(
        [
            lambda p=p, t=t: p.post("/login", {"nickname": nickname}, t)
            for p, t in zip(people, tokens, strict=True)
        ]
    )
    db.session.remove()
    users = db.session.scalar(sa.select(sa.func.count()).select_from(User).where(User.nickname == nickname))
    report(
        capsys,
        f"20 simultaneous first logins: {statuses.count(302)}/20 logged in, "
        f"{statuses.count(422)} told it is taken, {users} user, {sum(s >= 500 for s in statuses)} errors",
    )
    # the nickname belongs to the one browser that got it first; the others are told it is taken
    assert sorted(statuses) == [302] + [422] * 19 and users == 1
    winner = people[statuses.index(302)]
    assert winner.request("/account")[0] == 200
    for person in people:
        if person is not winner:
            assert person.request("/account")[0] == 302  # not logged in
            assert person.login(nickname) == 422  # and still not, on a second try


def test_twenty_members_voting_at_the_same_instant_are_all_counted(server, capsys):
    owner, group_id, issue_id, _, people = group_with_issue(server, 20)
    path = f"/issues/{issue_id}/estimate"
    tokens = [person.token(path) for person in people]
    statuses = at_once(
        [
            lambda p=p, t=t, n=n: p.post(path, {"value": str(n + 1)}, t)
            for n, (p, t) in enumerate(zip(people, tokens, strict=True))
        ]
    )
    state = owner.api(f"/api/issues/{issue_id}")
    db.session.remove()
    ballots = db.session.scalar(sa.select(sa.func.count()).select_from(Ballot))
    report(
        capsys,
        f"20 simultaneous votes: {state['votes_cast']}/20 counted, {sum(s >= 500 for s in statuses)} errors",
    )
    assert statuses == [302] * 20
    assert state["votes_cast"] == 20 and ballots == 20


def test_ten_parallel_joins_by_one_person_make_one_membership(server, capsys):
    owner, group_id, _, invite, _ = group_with_issue(server, 0)
    joiner = Person(server)
    joiner.login("Joiner")
    token = joiner.token(invite)
    tabs = [Person(server, joiner.cookies) for _ in range(10)]
    statuses = at_once([lambda t=t: t.post(invite, {"role": "member"}, token) for t in tabs])
    db.session.remove()
    memberships = db.session.execute(
        sa.select(sa.func.count()).select_from(Membership).where(Membership.group_id == group_id)
    ).scalar_one()
    report(capsys, f"10 parallel joins: {Counter(statuses)}, {memberships - 1} membership")
    assert sorted(statuses) == [302] + [409] * 9
    assert memberships == 2  # the owner and the joiner, once


def test_reveal_racing_a_late_vote_never_loses_or_leaks_it(server, capsys):
    owner, group_id, _, _, people = group_with_issue(server, 4)
    late, early = people[0], people[1:]
    outcomes: Counter[str] = Counter()
    for trial in range(8):
        key = f"RACE-{trial}"
        owner.post(f"/groups/{group_id}/issues", {"key": key}, owner.token(f"/groups/{group_id}"))
        issue_id = next(i["id"] for i in owner.api(f"/api/groups/{group_id}")["issues"] if i["key"] == key)
        path = f"/issues/{issue_id}/estimate"
        for person in early:
            assert person.post(path, {"value": "5"}, person.token(path)) == 302
        reveal_token, vote_token = owner.token(f"/issues/{issue_id}"), late.token(path)
        reveal_status, vote_status = at_once(
            [
                partial(owner.post, f"/issues/{issue_id}/reveal", {}, reveal_token),
                partial(late.post, path, {"value": "13"}, vote_token),
            ]
        )
        assert reveal_status == 302 and vote_status in (302, 409), (reveal_status, vote_status)
        result = owner.api(f"/api/issues/{issue_id}")["result"]
        counted = result["distribution"].get("13", 0)
        # the late vote is in the result exactly when the voter was told it was taken
        assert counted == (1 if vote_status == 302 else 0)
        assert result["votes"] == 3 + counted
        outcomes["counted" if counted else "refused"] += 1
        db.session.remove()
        sealed_after_reveal = db.session.scalars(
            sa.select(Ballot.sealed)
            .join(Round)
            .where(Round.revealed_at.is_not(None), Ballot.sealed.is_not(None))
        ).all()
        keys_after_reveal = db.session.scalars(
            sa.select(Round.key_id).where(Round.revealed_at.is_not(None), Round.key_id.is_not(None))
        ).all()
        # no value stays tied to a voter after any reveal, and no round key survives it
        assert sealed_after_reveal == [] and keys_after_reveal == []
    tallies = db.session.scalar(sa.select(sa.func.sum(Tally.count)))
    report(
        capsys, f"reveal vs late vote, 8 trials: {dict(outcomes)}, 0 lost, 0 leaked, {tallies} tallied votes"
    )


@pytest.fixture
def shared_redis():
    """The machine's Redis, or a skip saying it is not there; the test touches only its own keys."""
    store = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        store.ping()
    except redis.ConnectionError:
        pytest.skip(f"no Redis answers at {REDIS_URL}: the shared-counter test needs one")
    yield store
    store.close()


def test_login_rate_limit_is_shared_by_all_workers_through_redis(
    schema, key_store_uri, shared_redis, tmp_path, capsys
):
    prefix = f"estimator-test-{uuid.uuid4().hex}"
    process, url = start_gunicorn(
        schema,
        tmp_path / "limited.log",
        BALLOT_KEY_STORE_URI=key_store_uri,  # the one the other servers of the test database use
        RATELIMIT_STORAGE_URI=REDIS_URL,
        RATELIMIT_KEY_PREFIX=prefix,
        LOGIN_RATE_LIMIT="5 per minute",
    )
    try:
        people = [Person(url) for _ in range(12)]
        tokens = [person.token("/login") for person in people]  # pages are not limited
        statuses = [
            person.post("/login", {"nickname": f"Limited {n}"}, token)
            for n, (person, token) in enumerate(zip(people, tokens, strict=True))
        ]
        status, page, _ = people[-1].request("/login", {"nickname": "x", "csrf_token": tokens[-1]})
    finally:
        stop(process)
        ours = list(shared_redis.scan_iter(f"*{prefix}*"))
        if ours:
            shared_redis.delete(*ours)
        keys = len(ours)
    report(capsys, f"login limit 5/min over 3 workers with Redis: {Counter(statuses)}")
    assert statuses == [302] * 5 + [429] * 7
    assert status == 429 and "Too many attempts" in page
    assert keys > 0  # the counters lived in Redis
