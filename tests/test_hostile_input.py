"""Every form and URL takes hostile input without a 5xx and without storing anything invalid."""

from urllib.parse import quote

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from estimator.auth.users import clean_nickname
from estimator.estimates import DECKS
from estimator.extensions import db
from estimator.models import Ballot, Group, Issue, Membership, User
from estimator.text import has_control_characters
from tests.conftest import add_issue, create_group, join, vote

NASTY = [
    "' OR 1=1 --",
    "'; DROP TABLE users; --",
    "{{ config }}",
    "{% for x in [] %}",
    "${7*7}",
    "<script>alert(1)</script>",
    "\x00",
    "\u202e",
    "\ufeff",
    "A" * 10_000,
    "../../etc/passwd",
    "%00",
    "\r\n\r\nSet-Cookie: x=1",
    "½",
    "?",
    "１２",
    "٣",
    "-0",
    "1e2",
    "0x10",
    " 5 ",
    "NaN",
    "∞",
]
hostile_text = st.one_of(
    st.sampled_from(NASTY),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=300),
    st.text(st.characters(codec="ascii"), min_size=0, max_size=40),
)
HOSTILE = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def assert_everything_stored_is_valid(app) -> None:
    with app.app_context():
        for user in db.session.scalars(sa.select(User)):
            assert clean_nickname(user.nickname) == user.nickname
        for group in db.session.scalars(sa.select(Group)):
            assert 1 <= len(group.name) <= 80 and not has_control_characters(group.name)
            assert group.deck in DECKS
        for issue in db.session.scalars(sa.select(Issue)):
            assert 1 <= len(issue.key) <= 32 and not has_control_characters(issue.key)
            assert len(issue.description) <= 500 and not has_control_characters(issue.description, "\n\r\t")
            deck = DECKS[issue.group.deck]
            assert (
                issue.final_estimate is None
                or deck.parse_estimate(issue.final_estimate) == issue.final_estimate
            )
        for ballot in db.session.scalars(sa.select(Ballot)):
            deck = DECKS[ballot.round.issue.group.deck]
            assert ballot.card is None or deck.parse(ballot.card) == ballot.card
        assert all(
            m.role in ("owner", "member", "observer") for m in db.session.scalars(sa.select(Membership))
        )


@HOSTILE
@given(nickname=hostile_text, password=hostile_text, next_url=hostile_text)
def test_login_form(app, nickname, password, next_url):
    response = app.test_client().post(
        "/login", query_string={"next": next_url}, data={"nickname": nickname, "password": password}
    )
    assert response.status_code < 500
    if response.status_code == 302:
        location = response.headers["Location"]
        assert location.startswith("/") and not location.startswith("//")
    assert_everything_stored_is_valid(app)


@HOSTILE
@given(name=hostile_text, deck=hostile_text, key=hostile_text, description=hostile_text)
def test_group_and_issue_forms(app, team, name, deck, key, description):
    owner = team["owner"]
    assert owner.post("/groups", data={"name": name, "deck": deck}).status_code < 500
    response = owner.post(f"/groups/{team['group']}/issues", data={"key": key, "description": description})
    assert response.status_code < 500
    assert_everything_stored_is_valid(app)


@HOSTILE
@given(value=hostile_text, estimate=hostile_text, role=hostile_text, token=hostile_text)
def test_vote_accept_and_join_forms(app, team, value, estimate, role, token):
    issue = team["issue"]
    assert vote(team["bob"], issue, value).status_code < 500
    assert team["owner"].post(f"/issues/{issue}/accept", data={"estimate": estimate}).status_code < 500
    assert team["carol"].post(f"/join/{quote(token, safe='')}", data={"role": role}).status_code < 500
    assert (
        team["owner"].post(f"/groups/{team['group']}/members/2/role", data={"role": role}).status_code < 500
    )
    assert_everything_stored_is_valid(app)


@HOSTILE
@given(current=hostile_text, new=hostile_text, confirm=hostile_text)
def test_account_form(app, owner, current, new, confirm):
    response = owner.post(
        "/account", data={"current_password": current, "new_password": new, "confirm": confirm}
    )
    assert response.status_code < 500


@HOSTILE
@given(
    segment=hostile_text,
    prefix=st.sampled_from(
        ["/groups/", "/issues/", "/api/issues/", "/api/groups/", "/join/", "/issues/1/", "/groups/1/members/"]
    ),
)
def test_any_url(app, owner, segment, prefix):
    for client in (owner, app.test_client()):
        assert client.get(prefix + quote(segment, safe="")).status_code < 500
        assert (
            client.post(prefix + quote(segment, safe="") + "/estimate", data={"value": "3"}).status_code < 500
        )


@pytest.mark.parametrize("deck", sorted(DECKS))
def test_every_deck_refuses_hostile_cards(app, owner, new_client, deck):
    group = create_group(owner, deck=deck)
    bob = new_client("Bob")
    join(app, bob, group)
    issue = add_issue(app, owner, group)
    for value in NASTY:
        if DECKS[deck].parse(value) is None:
            assert vote(bob, issue, value).status_code == 422, value
    assert_everything_stored_is_valid(app)
