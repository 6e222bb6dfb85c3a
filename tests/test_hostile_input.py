"""Every form and URL takes hostile input without a 5xx and without storing anything invalid."""

import unicodedata
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from estimator.auth.nicknames import clean_nickname
from estimator.estimates import DECKS
from estimator.extensions import db
from estimator.models import Ballot, Group, Issue, Membership, Tally, User
from estimator.text import is_forbidden_character
from tests.conftest import add_issue, create_group, join, login, vote

# This test's own idea of a forbidden character, written apart from estimator/text.py so that it
# can catch that module being wrong: these general categories ...
FORBIDDEN_CATEGORIES = {
    "Cc",  # control
    "Cf",  # format: bidi controls, zero-width joiners, the byte order mark…
    "Cs",  # surrogate
    "Co",  # private use
    "Cn",  # unassigned
    "Zl",  # LINE SEPARATOR
    "Zp",  # PARAGRAPH SEPARATOR
}
# ... and Default_Ignorable_Code_Point, as listed in Unicode's DerivedCoreProperties.txt.
DEFAULT_IGNORABLE = [
    (0x00AD, 0x00AD),  # SOFT HYPHEN
    (0x034F, 0x034F),  # COMBINING GRAPHEME JOINER
    (0x061C, 0x061C),  # ARABIC LETTER MARK
    (0x115F, 0x1160),  # HANGUL CHOSEONG and JUNGSEONG FILLER
    (0x17B4, 0x17B5),  # KHMER VOWEL INHERENT AQ, AA
    (0x180B, 0x180F),  # MONGOLIAN FREE VARIATION SELECTORS, VOWEL SEPARATOR
    (0x200B, 0x200F),  # ZERO WIDTH SPACE … RIGHT-TO-LEFT MARK
    (0x202A, 0x202E),  # bidi embeddings and overrides
    (0x2060, 0x206F),  # WORD JOINER, invisible operators, bidi isolates…
    (0x3164, 0x3164),  # HANGUL FILLER
    (0xFE00, 0xFE0F),  # VARIATION SELECTORS
    (0xFEFF, 0xFEFF),  # ZERO WIDTH NO-BREAK SPACE
    (0xFFA0, 0xFFA0),  # HALFWIDTH HANGUL FILLER
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),  # SHORTHAND FORMAT CONTROLS
    (0x1D173, 0x1D17A),  # MUSICAL SYMBOL BEGIN BEAM …
    (0xE0000, 0xE0FFF),  # TAGS, VARIATION SELECTORS SUPPLEMENT
]


def forbidden(character: str, multiline: bool = False) -> bool:
    """The oracle: whether a person's text may not contain this character."""
    if multiline and character in "\n\r\t":
        return False
    code = ord(character)
    return unicodedata.category(character) in FORBIDDEN_CATEGORIES or any(
        low <= code <= high for low, high in DEFAULT_IGNORABLE
    )


def acceptable(text: str, multiline: bool = False) -> bool:
    """No forbidden character, and no combining mark at the start or after white space."""
    marks = [i for i, character in enumerate(text) if unicodedata.category(character).startswith("M")]
    lone = any(i == 0 or text[i - 1].isspace() for i in marks)
    return not lone and not any(forbidden(character, multiline) for character in text)


HOSTILE_CHARACTERS = [
    "\u202e",  # RIGHT-TO-LEFT OVERRIDE
    "\u200b",  # ZERO WIDTH SPACE
    "\ufeff",  # ZERO WIDTH NO-BREAK SPACE
    "\u3164",  # HANGUL FILLER (a letter by category)
    "\u115f",  # HANGUL CHOSEONG FILLER
    "\u2066",  # LEFT-TO-RIGHT ISOLATE
    "\u061c",  # ARABIC LETTER MARK
    "\u00ad",  # SOFT HYPHEN
    "\u034f",  # COMBINING GRAPHEME JOINER (a mark by category)
    "\ufe0f",  # VARIATION SELECTOR-16
    "\U000e0041",  # TAG LATIN CAPITAL LETTER A
    "\ue000",  # private use
    "\u0378",  # unassigned
    "\u2028",  # LINE SEPARATOR
    "\x00",
    "\x1b",
    "\x85",  # NEXT LINE, a C1 control
]

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
    st.text(st.characters(exclude_categories=["Cs"]), max_size=300),
    st.text(st.characters(codec="ascii"), min_size=0, max_size=40),
)
HOSTILE = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def assert_everything_stored_is_valid(app) -> None:
    with app.app_context():
        for user in db.session.scalars(sa.select(User)):
            assert clean_nickname(user.nickname) == user.nickname
            assert 1 <= len(user.nickname) <= 32 and acceptable(user.nickname)
            assert unicodedata.normalize("NFKC", user.nickname) == user.nickname
        for group in db.session.scalars(sa.select(Group)):
            assert 1 <= len(group.name) <= 80 and acceptable(group.name)
            assert group.deck in DECKS
        for issue in db.session.scalars(sa.select(Issue)):
            assert 1 <= len(issue.key) <= 32 and acceptable(issue.key)
            assert len(issue.description) <= 500 and acceptable(issue.description, multiline=True)
            deck = DECKS[issue.group.deck]
            assert (
                issue.final_estimate is None
                or deck.parse_estimate(issue.final_estimate) == issue.final_estimate
            )
        for ballot in db.session.scalars(sa.select(Ballot)):  # cards are sealed: check their tallies
            assert ballot.sealed is None or not ballot.round.revealed
        for tally in db.session.scalars(sa.select(Tally)):
            deck = DECKS[tally.round.issue.group.deck]
            assert deck.parse(tally.card) == tally.card
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


def test_the_forbidden_character_rule_agrees_with_the_oracle_on_every_code_point():
    disagreements = [
        hex(code)
        for code in range(0x110000)
        for multiline in (False, True)
        if is_forbidden_character(chr(code), multiline=multiline) != forbidden(chr(code), multiline)
    ]
    assert disagreements == []


@pytest.mark.parametrize("character", HOSTILE_CHARACTERS, ids=lambda c: f"U+{ord(c):04X}")
def test_hostile_characters_are_refused_in_every_text_field(app, team, character):
    owner, group = team["owner"], team["group"]
    assert owner.post("/groups", data={"name": f"Te{character}am", "deck": "range"}).status_code == 422
    assert owner.post(f"/groups/{group}/issues", data={"key": f"K{character}1"}).status_code == 422
    response = owner.post(f"/groups/{group}/issues", data={"key": "K-2", "description": f"a{character}b"})
    assert response.status_code == 422
    assert login(app.test_client(), f"Eve{character}").status_code == 422
    assert_everything_stored_is_valid(app)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Group)) == 1
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Issue)) == 1


@pytest.mark.parametrize("character", HOSTILE_CHARACTERS, ids=lambda c: f"U+{ord(c):04X}")
def test_hostile_characters_in_next_land_on_the_site(app, client, character):
    response = login(client, "Jack", next_url=quote(f"/groups{character}/1"))
    assert response.status_code == 302 and response.headers["Location"] == "/"


@pytest.mark.parametrize("text", ["\u0301", "\u0301Team", "Team \u0301x", "\u20dd"])
def test_a_lone_combining_mark_is_refused(app, team, text):
    owner, group = team["owner"], team["group"]
    response = owner.post("/groups", data={"name": text, "deck": "range"})
    assert response.status_code == 422 and "mark on its own" in response.get_data(as_text=True)
    assert owner.post(f"/groups/{group}/issues", data={"key": text}).status_code == 422
    assert login(app.test_client(), text).status_code == 422
    assert_everything_stored_is_valid(app)


def test_line_breaks_only_where_text_may_span_lines(app, team):
    owner, group = team["owner"], team["group"]
    assert owner.post(f"/groups/{group}/issues", data={"key": "K\n2"}).status_code == 422
    response = owner.post(f"/groups/{group}/issues", data={"key": "K-2", "description": "one\r\n\ttwo"})
    assert response.status_code == 302
    assert_everything_stored_is_valid(app)
