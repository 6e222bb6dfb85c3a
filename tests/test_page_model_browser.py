"""The page model that bench/capacity.py replays is what a real Chromium page does: the room page
asks for what the model says on load, nothing when another member votes, and only its vote when
its member votes. Should the page ask for anything else (a reload, a fetch of regions or JSON) or
stop asking for something the model lists, the bench would measure another page than the real one,
and this test fails."""

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from bench import page_model
from bench.sse import EventReader, Message
from estimator.extensions import db
from estimator.live import present_users
from estimator.models import Group, Issue, User
from tests.helpers import logged_in_page, wait_until
from tests.http import Person

LIVE = 2000  # ms: what the spec promises
#: How long the page is watched after what it shows has settled, for a request it makes late.
SETTLE = 1.5  # s


@pytest.fixture(autouse=True)
def app_context(app: Flask) -> Iterator[None]:  # app: an emptied database
    """The test reads the database the served app writes."""
    with app.app_context():
        yield
        db.session.remove()


def read_group(group_id: int) -> Group:
    db.session.remove()
    group = db.session.get(Group, group_id)
    assert group is not None, group_id
    return group


def present(group_id: int) -> set[str]:
    """Who the database says has a page of the group open now."""
    db.session.remove()
    ids = present_users(group_id)
    return {user.nickname for user in db.session.scalars(sa.select(User).where(User.id.in_(list(ids))))}


def room_with_issue(server: str) -> tuple[Person, int, int, str]:
    """Over HTTP: Olivia's group with one issue, put in the room; the group's id, the issue's id
    and its invite path."""
    owner = Person(server)
    assert owner.login("Olivia") == 302
    assert owner.post("/groups", {"name": "Model", "deck": "fibonacci"}, owner.token("/")) == 302
    db.session.remove()
    group_id = db.session.scalar(sa.select(sa.func.max(Group.id)))
    assert group_id is not None
    assert owner.post(f"/groups/{group_id}/issues", {"key": "M-1"}, owner.token(f"/groups/{group_id}")) == 302
    db.session.remove()
    issue_id = db.session.scalar(sa.select(Issue.id).where(Issue.group_id == group_id))
    assert issue_id is not None
    room = f"/groups/{group_id}/room"
    assert owner.post(f"/issues/{issue_id}/start", {}, owner.token(room)) == 302
    return owner, group_id, issue_id, "/join/" + read_group(group_id).invite_token


def vote_over_http(person: Person, issue_id: int, value: str, page: str) -> None:
    """Vote as the page's script does: fetch, the token in X-CSRFToken, a JSON answer."""
    token = person.token(page)
    status, body, _ = person.request(
        f"/issues/{issue_id}/estimate",
        {"value": value},
        headers={"X-CSRFToken": token, "Accept": "application/json"},
    )
    assert status == 200, (status, body)


Made = tuple[str, str]  # a request as the page made it: its method and URL


def server_requests(page: Page) -> list[Made]:
    """The requests the page makes from now on that reach the server: a file the browser kept
    (from its memory or disk cache) is not one of them."""
    asked: list[Made] = []
    sent: dict[str, Made] = {}
    network = page.context.new_cdp_session(page)
    network.send("Network.enable")

    def send(event: dict[str, Any]) -> None:
        sent[event["requestId"]] = (event["request"]["method"], event["request"]["url"])
        asked.append(sent[event["requestId"]])

    def kept(event: dict[str, Any]) -> None:
        if event["requestId"] in sent and event.get("response", {}).get("fromDiskCache", True):
            asked.remove(sent.pop(event["requestId"]))

    network.on("Network.requestWillBeSent", send)
    network.on("Network.requestServedFromCache", kept)
    network.on("Network.responseReceived", kept)
    return asked


def settled(asked: list[Made]) -> list[Made]:
    """The requests once the page has asked for nothing more for SETTLE seconds."""
    count = -1
    while count != len(asked):
        count = len(asked)
        time.sleep(SETTLE)
    return list(asked)


def check(
    asked: list[Made], page: Page, values: dict[str, object], model: tuple[page_model.Ask, ...], when: str
) -> None:
    """The page asked for exactly what the model lists (in any order: a page's requests overlap),
    with the page's group, issue and view, and the version the page shows (which a member's arrival
    elsewhere may have moved on since the test read it)."""
    values = {**values, "version": page.get_attribute("body", "data-live-version")}
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(page.url))
    made = Counter(page_model.describe(method, url, values, origin) for method, url in settled(asked))
    listed = Counter(page_model.described(model))
    extra, missing = sorted((made - listed).elements()), sorted((listed - made).elements())
    assert not extra and not missing, (
        f"{when}: the page asked for {extra or 'nothing'} beyond the model, and not for "
        f"{missing or 'nothing'} that the model lists; it asked for {sorted(made.elements())}"
    )


def card(page: Page, label: str) -> Locator:
    return page.locator(f"#vote button[name=value][value='{label}']")


def voter(page: Page, nickname: str) -> Locator:
    return page.locator("#voters li", has_text=nickname)


@pytest.mark.browser
def test_the_room_page_asks_for_what_the_page_model_says(
    browser: Browser, server: str, contexts: list[BrowserContext]
) -> None:
    _owner, group_id, issue_id, invite = room_with_issue(server)
    carol = Person(server)
    assert carol.login("Carol") == 302
    assert carol.post(invite, {"role": "member"}, carol.token(invite)) == 302
    problems: list[str] = []
    bob = logged_in_page(browser, server, "Bob", contexts, problems)
    bob.goto(invite)
    bob.click("text=Join group")
    expect(bob.locator("#room-heading h1")).to_have_text("M-1")  # a meeting is on: joining lands in the room
    # Bob's arrival in the room is a change of the group of its own (presence): the version the
    # test holds the pages to is the one after it. A reload within seconds is no departure.
    wait_until(lambda: present(group_id) == {"Bob"}, timeout=5, what="Bob counted present")

    version = read_group(group_id).version
    values = {"group": group_id, "issue": issue_id, "view": page_model.view_of("room")}
    bob.goto("about:blank")  # the first visit's late requests (its icon) are not this one's
    asked = server_requests(bob)
    bob.goto(f"/groups/{group_id}/room")
    expect(bob.locator("#room-heading h1")).to_have_text("M-1")
    expect(card(bob, "8")).to_be_visible()
    assert int(bob.get_attribute("body", "data-live-version") or 0) >= version  # the group as it is now
    bob.evaluate("window.__noReload = true")
    check(asked, bob, values, page_model.load("room"), "on load")

    # The same page in a browser that has kept nothing: its static files too.
    fresh = browser.new_context(base_url=server, storage_state=bob.context.storage_state())  # Bob's cookies
    contexts.append(fresh)
    new = fresh.new_page()
    first = server_requests(new)
    new.goto(f"/groups/{group_id}/room")
    expect(new.locator("#room-heading h1")).to_have_text("M-1")
    check(first, new, values, page_model.load("room", first_visit=True), "on a first visit")
    new.close()

    # (a) Another member votes: the page shows it, and asks for nothing.
    asked.clear()
    vote_over_http(carol, issue_id, "5", f"/groups/{group_id}/room")
    expect(voter(bob, "Carol")).to_contain_text("voted", timeout=LIVE)
    check(asked, bob, values, page_model.ON_EVENT, "when another member voted")

    # (b) Its own member votes: the card shows chosen at once, the rest follows from the stream.
    asked.clear()
    card(bob, "8").click()
    expect(card(bob, "8")).to_have_attribute("aria-pressed", "true")
    expect(voter(bob, "Bob")).to_contain_text("voted", timeout=LIVE)
    check(asked, bob, values, page_model.ON_OWN_VOTE, "when its member voted")

    assert bob.evaluate("window.__noReload === true") is True
    assert problems == []


#: A stream as a server may send it: a retry, a comment, an event split over two data lines, CRLF
#: and CR line ends, an id alone (kept for later events), an event without data (not dispatched).
STREAM = (
    "retry: 2000\n\n"
    ": keep-alive\n\n"
    'id: 7\nevent: regions\ndata: {"version": 7,\ndata:  "regions": {}}\n\n'
    'id: 7\r\nevent: version\r\ndata: {"version": 7}\r\n\r\n'
    "id: 8\rdata:é\r\r"
    "event: version\n\n"
    "id: 9\n\n"
    "data\n\n"
).encode()
EVENTS = [
    Message("regions", '{"version": 7,\n "regions": {}}', "7"),
    Message("version", '{"version": 7}', "7"),
    Message("message", "é", "8"),
    Message("message", "", "9"),
]


@pytest.mark.parametrize("size", [1, 2, 3, 5, len(STREAM)])
def test_the_bench_reads_server_sent_events_as_event_source_does(size: int) -> None:
    """Whatever the chunks a connection hands over (a UTF-8 character or a CRLF cut in two), the
    bench's reader finds the events, ids and data that EventSource finds."""
    reader = EventReader()
    found = []
    for start in range(0, len(STREAM), size):
        found += reader.feed(STREAM[start : start + size])
    assert found == EVENTS
    assert reader.last_id == "9"
