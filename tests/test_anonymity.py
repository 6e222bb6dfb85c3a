"""The anonymity promise as the app's users can test it (SPEC.md "Anonymity guarantee").

Each test plays somebody who tries to learn who voted what through the app itself: a facilitator
who demotes or removes the other voters before revealing, or lowers the threshold; anybody who
watches response sizes, versions and ETags, the JSON API or the logs; and a key store that restarts
while a round is open. What is stored on disk is tested in test_forensics.py.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from estimator.estimates import DECKS, RANGE_MAX, RANGE_MIN, UNSURE
from estimator.extensions import db
from estimator.models import Group, Issue, Round, User
from estimator.sealing import ballot_keys
from tests.conftest import add_issue, create_group, join, vote
from tests.http import Person
from tests.server import start_gunicorn, stop

SMALL_VOTES_NOTICE = "Results may show who voted what"
_CSRF = re.compile(rb'(name="csrf_token"[^>]*?value=")[^"]*(")|(<meta name="csrf-token" content=")[^"]*(")')


def user_id(app: Flask, nickname: str) -> int:
    """The id of the user with this nickname."""
    with app.app_context():
        found = db.session.scalar(sa.select(User.id).where(User.nickname == nickname))
    assert found is not None, nickname
    return found


def group_version(app: Flask, group_id: int) -> int:
    """The group's version: what live pages watch."""
    with app.app_context():
        version = db.session.scalar(sa.select(Group.version).where(Group.id == group_id))
    assert version is not None
    return version


def issue_api(client: FlaskClient, issue_id: int) -> dict[str, Any]:
    """GET /api/issues/<id> as this client."""
    response = client.get(f"/api/issues/{issue_id}")
    assert response.status_code == 200, response.get_data(as_text=True)
    state = response.get_json()
    assert isinstance(state, dict)
    return state


def reveal(client: FlaskClient, issue_id: int) -> str:
    """Ask for the reveal as a facilitator would, and return the status page shown afterwards."""
    response = client.post(f"/issues/{issue_id}/reveal")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/issues/{issue_id}"
    return client.get(response.headers["Location"]).get_data(as_text=True)


def flashes(page: str) -> list[str]:
    """The flash messages on a page, as plain text."""
    found = re.findall(r'<div class="alert alert-\w+ alert-dismissible[^>]*>(.*?)<button', page, re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", message).split()) for message in found]


def without_csrf(body: bytes) -> bytes:
    """A page with its random CSRF token values cut out."""
    return _CSRF.sub(rb"\1\2\3\4", body)


def deck_cards(deck_name: str) -> list[str]:
    """Every card of a deck, "?" included; the range deck's are the numbers 1-100."""
    deck = DECKS[deck_name]
    numbers = [str(n) for n in range(RANGE_MIN, RANGE_MAX + 1)] if deck.is_range else list(deck.cards)
    return [*numbers, UNSURE]


@pytest.fixture
def crew(app, owner, new_client):
    """Olivia facilitates a range-deck group with members Bob, Carol, Dave and Erin and one issue."""
    group_id = create_group(owner)
    members = {name: new_client(name) for name in ("Bob", "Carol", "Dave", "Erin")}
    for member in members.values():
        assert join(app, member, group_id).status_code == 302
    issue_id = add_issue(app, owner, group_id)
    return {"group": group_id, "issue": issue_id, "owner": owner, **members}


# --- The facilitator's attacks on the reveal ---------------------------------------------------


def test_demoting_the_other_voters_does_not_single_out_a_card(app, crew):
    """Bob, Carol and Dave vote; the facilitator makes every other voter an observer and reveals:
    the result still counts all three open ballots (or the reveal is refused), never Bob's card alone."""
    owner, issue_id, group_id = crew["owner"], crew["issue"], crew["group"]
    for name, card in (("Bob", "8"), ("Carol", "13"), ("Dave", "21")):
        assert vote(crew[name], issue_id, card).status_code == 302
    for name in ("Carol", "Dave", "Erin"):
        response = owner.post(
            f"/groups/{group_id}/members/{user_id(app, name)}/role", data={"role": "observer"}
        )
        assert response.status_code == 302
    roles = {m["nickname"]: m["role"] for m in owner.get(f"/api/groups/{group_id}").get_json()["members"]}
    assert roles["Carol"] == roles["Dave"] == roles["Erin"] == "observer"

    page = reveal(owner, issue_id)
    state = issue_api(owner, issue_id)
    if state["result"] is None:
        assert state["state"] == "voting"
        assert any("at least" in message for message in flashes(page)), flashes(page)
    else:
        assert state["result"]["votes"] == 3
        assert state["result"]["distribution"] == {"8": 1, "13": 1, "21": 1}


def test_removing_a_member_keeps_their_open_ballot(app, crew):
    """A member removed after voting still has their vote counted in the open round."""
    owner, issue_id, group_id = crew["owner"], crew["issue"], crew["group"]
    for name, card in (("Bob", "3"), ("Carol", "5"), ("Dave", "8")):
        assert vote(crew[name], issue_id, card).status_code == 302
    for name in ("Carol", "Dave"):
        assert owner.post(f"/groups/{group_id}/members/{user_id(app, name)}/remove").status_code == 302
    members = [m["nickname"] for m in owner.get(f"/api/groups/{group_id}").get_json()["members"]]
    assert "Carol" not in members and "Dave" not in members
    assert issue_api(owner, issue_id)["votes_cast"] == 3

    reveal(owner, issue_id)
    result = issue_api(owner, issue_id)["result"]
    assert result is not None
    assert result["votes"] == 3
    assert result["distribution"] == {"3": 1, "5": 1, "8": 1}


def test_a_reveal_needs_three_votes_besides_the_facilitator_s_by_default(crew):
    """One vote is never revealed by default, nor two and the facilitator's own, which hides
    nobody's card from the facilitator; three members' votes are, a "?" among them."""
    owner, issue_id = crew["owner"], crew["issue"]
    assert vote(crew["Bob"], issue_id, "8").status_code == 302
    page = reveal(owner, issue_id)
    assert issue_api(owner, issue_id)["result"] is None
    assert any("at least 3" in message for message in flashes(page)), flashes(page)

    assert vote(crew["Carol"], issue_id, "5").status_code == 302
    assert vote(owner, issue_id, "13").status_code == 302
    page = reveal(owner, issue_id)
    assert issue_api(owner, issue_id)["result"] is None
    assert any("1 more vote is needed" in message for message in flashes(page)), flashes(page)

    assert vote(crew["Dave"], issue_id, UNSURE).status_code == 302
    reveal(owner, issue_id)
    result = issue_api(owner, issue_id)["result"]
    assert result is not None
    assert (result["votes"], result["unsure"]) == (4, 1)


def test_a_second_account_of_the_facilitator_does_not_fill_the_threshold(app, crew, new_client):
    """The facilitator votes 1, then joins with a second account ("Olly", another browser) that
    votes 1 too, and Bob votes 34: Bob's would be the only card that is not theirs, so the reveal is
    refused, as only two people other than the facilitator have voted. And the second account, which
    joined after the round's first vote, is marked so for everybody."""
    owner, group_id, issue_id = crew["owner"], crew["group"], crew["issue"]
    assert vote(owner, issue_id, "1").status_code == 302
    olly = new_client("Olly")
    assert join(app, olly, group_id).status_code == 302
    assert vote(olly, issue_id, "1").status_code == 302
    assert vote(crew["Bob"], issue_id, "34").status_code == 302

    page = reveal(owner, issue_id)
    assert issue_api(owner, issue_id)["result"] is None
    assert any("1 more vote is needed" in message for message in flashes(page)), flashes(page)
    assert f'action="/issues/{issue_id}/reveal"' not in page
    assert "34" not in re.sub(r"<[^>]+>", " ", page)
    for viewer in (owner, crew["Bob"], crew["Carol"], olly):
        seen = " ".join(
            re.sub(r"<[^>]+>", " ", viewer.get(f"/issues/{issue_id}").get_data(as_text=True)).split()
        )
        assert re.search(r"Olly joined during this round", seen), seen
        assert not re.search(r"(Bob|Carol|Dave|Erin|Olivia) joined during this round", seen)


def test_a_refused_reveal_does_not_tell_whether_a_voter_chose_a_number(app, crew):
    """Before the reveal nobody learns anything of a card: the facilitator whose reveal is refused
    must not learn from the refusal whether the one vote cast so far was a number or "?"."""
    owner, group_id = crew["owner"], crew["group"]
    messages = {}
    for key, card in (("UNSURE-1", UNSURE), ("NUMBER-1", "8")):
        issue_id = add_issue(app, owner, group_id, key)
        assert vote(crew["Bob"], issue_id, card).status_code == 302
        owner.get(f"/issues/{issue_id}")  # shows, and so clears, the messages of the earlier steps
        page = reveal(owner, issue_id)
        assert issue_api(owner, issue_id)["result"] is None
        messages[card] = flashes(page)
    assert messages["8"], "the refusal gives its reason"
    assert messages[UNSURE] == messages["8"]


def test_lowering_the_threshold_does_not_expose_a_ballot_already_cast(crew):
    """Bob votes while a reveal needs 3 votes; the facilitator then lowers the threshold to 1 and
    reveals at once. A settings change applies from the next round: Bob's card, cast under the
    promise of 3, is not shown on its own (and Bob never had a chance to see the notice)."""
    owner, group_id, issue_id = crew["owner"], crew["group"], crew["issue"]
    assert vote(crew["Bob"], issue_id, "8").status_code == 302
    assert owner.post(f"/groups/{group_id}/settings", data={"min_votes": "1"}).status_code == 302
    reveal(owner, issue_id)
    assert issue_api(owner, issue_id)["result"] is None


# --- The threshold notice --------------------------------------------------------------------


@pytest.mark.parametrize(("min_votes", "warned"), [(1, True), (2, True), (3, False), (20, False)])
def test_a_threshold_below_three_is_shown_to_every_member(app, crew, new_client, min_votes, warned):
    """Below 3 votes every member — facilitator, members, observers — is told on the group page and
    on the issue page that results may show who voted what."""
    owner, group_id, issue_id = crew["owner"], crew["group"], crew["issue"]
    observer = new_client("Oscar")
    assert join(app, observer, group_id, role="observer").status_code == 302
    response = owner.post(f"/groups/{group_id}/settings", data={"min_votes": str(min_votes)})
    assert response.status_code == 302
    for person in (owner, crew["Bob"], crew["Erin"], observer):
        for path in (f"/groups/{group_id}", f"/issues/{issue_id}"):
            page = person.get(path).get_data(as_text=True)
            assert (SMALL_VOTES_NOTICE in page) is warned, path


@pytest.mark.parametrize("min_votes", ["0", "21", "-1", "two", ""])
def test_a_threshold_outside_one_to_twenty_changes_nothing(app, crew, min_votes):
    """A threshold outside 1..20 is refused with a message and leaves the group as it was."""
    owner, group_id = crew["owner"], crew["group"]
    response = owner.post(f"/groups/{group_id}/settings", data={"min_votes": min_votes})
    assert response.status_code == 422
    errors = re.findall(
        r'class="invalid-feedback[^"]*"[^>]*>\s*([^<\s][^<]*)<', response.get_data(as_text=True)
    )
    assert errors, "the page says what is wrong with the value"
    with app.app_context():
        group = db.session.get(Group, group_id)
        assert group is not None and group.min_votes == 3
    assert SMALL_VOTES_NOTICE not in crew["Bob"].get(f"/groups/{group_id}").get_data(as_text=True)


# --- Side channels: sizes, versions, caching, the API ------------------------------------------


def response_shape(response: TestResponse) -> tuple[object, ...]:
    """What an eavesdropper on the encrypted connection sees of a response: its status, which
    headers it has and how long each is, and the length of its body (the body itself for JSON)."""
    headers = tuple(sorted((name, len(value)) for name, value in response.headers.items()))
    return response.status_code, headers, len(response.get_data())


@pytest.mark.parametrize("deck", list(DECKS))
def test_every_card_gets_answers_of_one_size(app, owner, new_client, deck):
    """For every card of every deck: the JSON answer to a vote, the form's redirect, and the status
    and estimate pages the voter then sees have one size (CSRF token values aside, as they are random)."""
    group_id = create_group(owner, f"Deck {deck}", deck=deck)
    issue_id = add_issue(app, owner, group_id)
    voter = new_client("Bob")
    assert join(app, voter, group_id).status_code == 302
    voter.get(f"/issues/{issue_id}")  # shows, and so clears, the welcome messages: every vote starts alike
    cards = deck_cards(deck)
    seen: dict[str, dict[object, list[str]]] = defaultdict(lambda: defaultdict(list))

    for card in cards:  # a change of card (the first one a first vote), then the same card again
        for _again in range(2):
            answer = voter.post(
                f"/issues/{issue_id}/estimate", data={"value": card}, headers={"Accept": "application/json"}
            )
            assert answer.status_code == 200, (card, answer.get_data(as_text=True))
            seen["JSON answer"][(response_shape(answer), answer.get_data())].append(card)
    for card in cards:
        for _again in range(2):
            answer = vote(voter, issue_id, card)
            assert answer.status_code == 302, (card, answer.get_data(as_text=True))
            seen["form redirect"][response_shape(answer)].append(card)
            status = voter.get(answer.headers["Location"])  # the voter follows the redirect
            assert f'<strong class="my-card">{card}</strong>' in status.get_data(as_text=True)
            seen["status page"][len(without_csrf(status.get_data()))].append(card)
            estimate = voter.get(f"/issues/{issue_id}/estimate")
            assert f'<strong class="my-card">{card}</strong>' in estimate.get_data(as_text=True)
            seen["estimate page"][len(without_csrf(estimate.get_data()))].append(card)

    sizes = {what: {shape: cards[:3] for shape, cards in shapes.items()} for what, shapes in seen.items()}
    assert {what: len(shapes) for what, shapes in seen.items()} == dict.fromkeys(seen, 1), sizes


def test_the_version_and_etag_change_only_when_somebody_votes_for_the_first_time(app, crew):
    """Submitting the card one holds again, or changing it, changes no version or ETag; a first vote does."""
    bob, carol, owner = crew["Bob"], crew["Carol"], crew["owner"]
    issue_id, group_id = crew["issue"], crew["group"]
    paths = (f"/api/issues/{issue_id}", f"/api/groups/{group_id}")

    def tags() -> tuple[object, ...]:
        return group_version(app, group_id), *(owner.get(path).headers["ETag"] for path in paths)

    before = tags()
    assert vote(bob, issue_id, "5").status_code == 302
    after_first = tags()
    assert all(old != new for old, new in zip(before, after_first, strict=True))

    for card in ("5", "5", "8", "8", "5"):
        assert vote(bob, issue_id, card).status_code == 302
        assert tags() == after_first, card
        for path, tag in zip(paths, after_first[1:], strict=True):
            assert owner.get(path, headers={"If-None-Match": str(tag)}).status_code == 304

    assert vote(carol, issue_id, "13").status_code == 302
    after_carol = tags()
    assert all(old != new for old, new in zip(after_first, after_carol, strict=True))


def test_pages_that_show_ones_own_card_are_never_stored(crew):
    """Every answer that shows the voter's own card is sent with Cache-Control: no-store."""
    bob, issue_id = crew["Bob"], crew["issue"]
    assert vote(bob, issue_id, "34").status_code == 302
    answers = {
        "status page": bob.get(f"/issues/{issue_id}"),
        "estimate page": bob.get(f"/issues/{issue_id}/estimate"),
        "live refresh of the status page": bob.get(
            f"/issues/{issue_id}", headers={"X-Requested-With": "fetch"}
        ),
        "estimate page after a wrong value": bob.post(f"/issues/{issue_id}/estimate", data={"value": "101"}),
    }
    for what, answer in answers.items():
        assert '<strong class="my-card">34</strong>' in answer.get_data(as_text=True), what
        directives = {d.strip().lower() for d in answer.headers.get("Cache-Control", "").split(",")}
        assert "no-store" in directives, (what, answer.headers.get("Cache-Control"))


def card_values(state: object) -> Iterator[str]:
    """Every string in a JSON document, keys included."""
    if isinstance(state, dict):
        for key, value in state.items():
            yield str(key)
            yield from card_values(value)
    elif isinstance(state, list):
        for value in state:
            yield from card_values(value)
    elif isinstance(state, str):
        yield state


def test_the_api_shows_no_card_before_the_reveal(app, owner, new_client):
    """Before the reveal the JSON API names no card, to anybody, and neither it nor the pages that
    other people see change when a voter changes their card."""
    group_id = create_group(owner, "Sizes", deck="tshirt")
    issue_id = add_issue(app, owner, group_id, "API-1")
    people = {"Olivia": owner}
    for name, role in (("Bob", "member"), ("Carol", "member"), ("Dave", "member"), ("Oscar", "observer")):
        people[name] = new_client(name)
        assert join(app, people[name], group_id, role=role).status_code == 302
    for name, card in (("Bob", "XXL"), ("Carol", "XS"), ("Dave", "XL")):
        assert vote(people[name], issue_id, card).status_code == 302
    paths = (f"/api/issues/{issue_id}", f"/api/groups/{group_id}")

    def documents() -> dict[tuple[str, str], bytes]:
        return {
            (name, path): client.get(path).get_data() for name, client in people.items() for path in paths
        }

    def others_pages() -> dict[tuple[str, str], bytes]:
        return {
            (name, path): without_csrf(people[name].get(path).get_data())
            for name in ("Olivia", "Carol", "Oscar")
            for path in (f"/issues/{issue_id}", f"/groups/{group_id}")
        }

    others_pages()  # shows, and so clears, the welcome messages
    before, pages_before = documents(), others_pages()
    for (name, path), body in before.items():
        strings = set(card_values(json.loads(body)))
        assert not strings & {"XXL", "XS", "XL"}, (name, path, strings & {"XXL", "XS", "XL"})
    assert {json.loads(before[(name, paths[0])])["result"] for name in people} == {None}

    assert vote(people["Bob"], issue_id, "XS").status_code == 302  # Bob changes his card
    assert documents() == before
    assert others_pages() == pages_before

    reveal(owner, issue_id)
    result = issue_api(owner, issue_id)["result"]
    assert result is not None and result["distribution"] == {"XS": 2, "XL": 1}


# --- Logs --------------------------------------------------------------------------------------

LOG_CARDS = ("XXL", "XS")


def cards_in_text(text: str) -> list[str]:
    """The distinctive cards that occur in a text as words of their own."""
    return [card for card in LOG_CARDS if re.search(rf"(?<![A-Za-z0-9]){card}(?![A-Za-z0-9])", text)]


def test_no_app_log_line_names_a_card(app, owner, new_client, caplog):
    """The app logs nothing that names a card while people vote and change their cards.

    SQLAlchemy's own logger is left at WARNING, as in every configuration: with SQL echo on it
    would print the statements' parameters, which hold only sealed cards (see test_forensics.py).
    """
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="sqlalchemy")
    group_id = create_group(owner, "Logs", deck="tshirt")
    issue_id = add_issue(app, owner, group_id, "LOG-1")
    voters = [new_client(name) for name in ("Bob", "Carol", "Dave")]
    for voter, cards in zip(voters, (("XS", "XXL"), ("XXL",), ("XS", "XS")), strict=True):
        assert join(app, voter, group_id).status_code == 302
        for card in cards:
            assert vote(voter, issue_id, card).status_code == 302
            voter.get(f"/issues/{issue_id}")
    bad = voters[0].post(f"/issues/{issue_id}/estimate", data={"value": "XXXL"})
    assert bad.status_code == 422
    lines = [caplog.text] + [record.getMessage() for record in caplog.records]
    assert [card for line in lines for card in cards_in_text(line)] == []


@pytest.fixture
def logged_server(schema, key_store_uri, tmp_path) -> Iterator[tuple[str, Path]]:
    """The app under gunicorn, as the `server` fixture runs it, with the access log on and debug logging."""
    log = tmp_path / "gunicorn.log"
    process, url = start_gunicorn(
        schema,
        log,
        BALLOT_KEY_STORE_URI=key_store_uri,
        GUNICORN_CMD_ARGS="--access-logfile - --log-level debug",
    )
    yield url, log
    stop(process)


def vote_over_http(url: str, cards: tuple[str, ...]) -> int:
    """A facilitator and three voters, each with a fresh nickname, vote distinctive cards over HTTP;
    returns the issue id."""
    tag = secrets.token_hex(3)
    owner = Person(url)
    assert owner.login(f"Olivia {tag}") == 302
    status, _, headers = owner.request(
        "/groups", {"name": "Logs", "deck": "tshirt", "csrf_token": owner.token("/")}
    )
    assert status == 302
    group_path = headers["Location"].removeprefix(url)
    assert owner.post(f"{group_path}/issues", {"key": "LOG-1"}, owner.token(group_path)) == 302
    issue_id = int(owner.api(f"/api{group_path}")["issues"][0]["id"])
    invite = re.search(r"/join/[A-Za-z0-9_-]+", owner.request(group_path)[1])
    assert invite is not None
    for number, card in enumerate(cards):
        voter = Person(url)
        assert voter.login(f"Voter {tag} {number}") == 302
        assert voter.post(invite.group(0), {"role": "member"}, voter.token(invite.group(0))) == 302
        estimate = f"/issues/{issue_id}/estimate"
        assert voter.post(estimate, {"value": card}, voter.token(estimate)) == 302
    return issue_id


def test_no_server_log_line_names_a_card(server, tmp_path_factory):
    """Voting through gunicorn (the `server` fixture) leaves no card in its log."""
    cards = ("XXL", "XS", "XXL")
    vote_over_http(server, cards)
    logs = list(tmp_path_factory.getbasetemp().glob("gunicorn*/server.log"))
    assert logs, "the server's log was not found"
    text = "\n".join(log.read_text(errors="replace") for log in logs)
    assert "Booting worker" in text  # the right file: gunicorn writes its error log here
    assert cards_in_text(text) == []


def test_no_access_log_line_ties_a_voter_to_a_card(logged_server):
    """With gunicorn's access log on and debug logging, voting logs every request but no card, and
    the votes' logged response sizes are all the same."""
    url, log = logged_server
    issue_id = vote_over_http(url, ("XXL", "XS", "XXL", "XS"))
    deadline = time.monotonic() + 10
    while True:  # a worker writes its access log line just after it sent the response
        text = log.read_text(errors="replace")
        votes = [line for line in text.splitlines() if f'"POST /issues/{issue_id}/estimate ' in line]
        if len(votes) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(votes) == 4, text[-2000:]
    assert cards_in_text(text) == []
    # The access log gives each answer's status and size: one and the same for every card.
    answers = {" ".join(line.split('" ')[1].split()[:2]) for line in votes}
    assert len(answers) == 1 and answers.pop().startswith("302 "), answers


# --- A key store that restarts ----------------------------------------------------------------


def test_after_a_lost_key_the_same_card_again_is_a_vote_again(app, crew):
    """Bob's key is lost and he gives the card he gave before: that is his vote again, shown to
    him and to the room (who has voted changed back), not the "same card, nothing to do" case."""
    owner, issue_id, group_id = crew["owner"], crew["issue"], crew["group"]
    assert vote(crew["Bob"], issue_id, "3").status_code == 302
    with app.app_context():
        key_id = db.session.scalar(sa.select(Round.key_id).join(Issue).where(Issue.id == issue_id))
        assert key_id is not None
        ballot_keys.store.destroy(key_id)
        before = db.session.scalar(sa.select(Group.version).where(Group.id == group_id))
        assert before is not None
    assert issue_api(owner, issue_id)["votes_cast"] == 0
    assert vote(crew["Bob"], issue_id, "3").status_code == 302
    page = crew["Bob"].get(f"/issues/{issue_id}").get_data(as_text=True)
    assert '<strong class="my-card">3</strong>' in page and "Your vote was lost" not in page
    assert issue_api(owner, issue_id)["votes_cast"] == 1
    with app.app_context():
        assert (db.session.scalar(sa.select(Group.version).where(Group.id == group_id)) or 0) > before


def test_a_lost_key_asks_the_voters_to_vote_again(app, crew):
    """The round's key disappears (its store restarted): the voters who had voted are told their vote
    was lost; the reveal is refused and says why; after they vote again, only the new votes count."""
    owner, issue_id = crew["owner"], crew["issue"]
    for name, card in (("Bob", "1"), ("Carol", "2"), ("Dave", "3"), ("Erin", "100")):
        assert vote(crew[name], issue_id, card).status_code == 302
    with app.app_context():
        key_id = db.session.scalar(sa.select(Round.key_id).join(Issue).where(Issue.id == issue_id))
        assert key_id is not None
        ballot_keys.store.destroy(key_id)  # what a restart of the store does to it

    for name in ("Bob", "Carol", "Dave", "Erin"):
        page = crew[name].get(f"/issues/{issue_id}").get_data(as_text=True)
        assert "Your vote was lost" in page and "vote again" in page, name
        assert 'class="my-card"' not in page
    page = reveal(owner, issue_id)
    assert issue_api(owner, issue_id)["result"] is None
    refusal = " ".join(flashes(page))
    assert "could not be read" in refusal and "vote again" in refusal, refusal

    for name, card in (("Bob", "5"), ("Carol", "5"), ("Dave", "8")):
        assert vote(crew[name], issue_id, card).status_code == 302
        assert f'<strong class="my-card">{card}</strong>' in crew[name].get(f"/issues/{issue_id}").get_data(
            as_text=True
        )
    assert "Your vote was lost" in crew["Erin"].get(f"/issues/{issue_id}").get_data(as_text=True)
    page = reveal(owner, issue_id)
    result = issue_api(owner, issue_id)["result"]
    assert result is not None
    assert result["votes"] == 3
    assert result["distribution"] == {"5": 2, "8": 1}
    assert "1 vote could not be read" in " ".join(page.split())


def test_a_lost_key_reaches_the_pages_already_open(app, crew):
    """Live pages poll the API with If-None-Match: once the key is lost, what they are sent changes
    (nobody has a readable vote any more), so the old ETag must not be answered with 304 — else an
    open page goes on showing "voted" and never asks anybody to vote again — and the group's JSON
    counts the votes as the issue's does."""
    owner, issue_id, group_id = crew["owner"], crew["issue"], crew["group"]
    for name in ("Bob", "Carol", "Dave"):
        assert vote(crew[name], issue_id, "5").status_code == 302
    paths = (f"/api/issues/{issue_id}", f"/api/groups/{group_id}")
    tags = {path: owner.get(path).headers["ETag"] for path in paths}
    with app.app_context():
        key_id = db.session.scalar(sa.select(Round.key_id).join(Issue).where(Issue.id == issue_id))
        assert key_id is not None
        ballot_keys.store.destroy(key_id)

    for path in paths:
        answer = owner.get(path, headers={"If-None-Match": tags[path]})
        assert answer.status_code == 200, f"{path} says nothing changed"
    group_issue = owner.get(paths[1]).get_json()["issues"][0]
    assert issue_api(owner, issue_id)["votes_cast"] == group_issue["votes_cast"] == 0
