"""The room in three browsers against gunicorn with several workers: everybody's screen follows the
facilitator, votes are cast from the keyboard, and the timer and the result reach every screen."""

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Route, ViewportSize, expect

from tests.helpers import logged_in_page, wait_until

pytestmark = pytest.mark.browser

LIVE = 2000  # ms: what the spec promises
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}


@dataclass
class Team:
    """Olivia facilitates at a desk, Bob votes at a desk, Carol votes on her phone; all in the room."""

    owner: Page
    bob: Page
    carol: Page
    room: str
    problems: list[str] = field(default_factory=list)

    @property
    def members(self) -> tuple[Page, Page]:
        return self.bob, self.carol

    @property
    def everyone(self) -> tuple[Page, Page, Page]:
        return self.owner, self.bob, self.carol

    def console_errors(self, *expected: str) -> list[str]:
        """The console errors so far, less those that contain one of the expected strings."""
        return [p for p in self.problems if not any(e in p for e in expected)]


@pytest.fixture
def room_team(browser: Browser, server: str, app: object) -> Iterator[Callable[..., Team]]:  # app: empty db
    """A factory of teams in a group of the given deck and settings, each person in the room."""
    contexts: list[BrowserContext] = []
    problems: list[str] = []

    def person(nickname: str, viewport: ViewportSize) -> Page:
        return logged_in_page(browser, server, nickname, contexts, problems, viewport)

    def make(
        deck: str = "fibonacci",
        issues: tuple[str, ...] = ("ROOM-1", "ROOM-2"),
        auto_reveal: bool = False,
        min_votes: int = 3,
    ) -> Team:
        owner = person("Olivia", DESKTOP)
        owner.fill("#name", "Room team")
        owner.select_option("#deck", deck)
        owner.click("text=Create group")
        for key in issues:
            owner.fill("#key", key)
            owner.fill("#description", f"What {key} is about")
            owner.click("text=Add issue")
            expect(owner.locator("#issues")).to_contain_text(key)
        owner.set_checked("#auto_reveal", auto_reveal)
        owner.fill("#min_votes", str(min_votes))
        owner.click("text=Save settings")
        expect(owner.locator(".alert-success")).to_contain_text("Settings saved")
        group_url = owner.url
        invite = owner.input_value("#invite-link")
        members = []
        for nickname, viewport in (("Bob", DESKTOP), ("Carol", PHONE)):
            member = person(nickname, viewport)
            member.goto(invite)
            member.click("text=Join group")
            expect(member.locator("#members")).to_contain_text(nickname)
            members.append(member)
        team = Team(owner, members[0], members[1], group_url + "/room", problems)
        for page in team.everyone:
            page.goto(team.room)
        return team

    yield make
    for context in contexts:
        context.close()


def heading(page: Page) -> Locator:
    return page.locator("#room-heading h1")


def mark(page: Page) -> None:
    """Put a marker on the page that a reload would wipe."""
    page.evaluate("window.__noReload = true")


def not_reloaded(page: Page) -> bool:
    return page.evaluate("window.__noReload === true") is True


def left_of(deadline: float) -> float:
    """The milliseconds left until a deadline on the monotonic clock (a little at least, to look once)."""
    return max(100.0, (deadline - time.monotonic()) * 1000)


def start_first_issue(team: Team) -> None:
    """The facilitator puts the first issue in the room and every voter sees its deck."""
    team.owner.click(".next-issue")
    for page in team.everyone:
        expect(heading(page)).to_have_text("ROOM-1", timeout=LIVE)
        expect(page.locator("#vote .vote-form").first).to_be_visible()


def card(page: Page, label: str) -> Locator:
    return page.locator(f"#vote button[name=value][value='{label}']")


def has_focus_ring(page: Page) -> bool:
    """Whether the focused card shows a keyboard focus indicator: an outline, or a shadow ring that
    the deck's other cards do not have."""
    shown = page.evaluate(
        """() => {
            const element = document.activeElement;
            if (!element || !element.matches(':focus-visible')) return false;
            const style = getComputedStyle(element);
            const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2
                && style.outlineColor !== 'rgba(0, 0, 0, 0)';
            const other = [...element.parentElement.children].find((card) => card !== element);
            const ring = other && getComputedStyle(other).boxShadow !== style.boxShadow;
            return outline || Boolean(ring);
        }"""
    )
    return shown is True


def countdown_seconds(page: Page) -> int:
    minutes, seconds = page.locator("#timer .countdown").inner_text().strip().split(":")
    return int(minutes) * 60 + int(seconds)


def test_next_issue_reaches_every_room_without_a_reload(room_team: Callable[..., Team]) -> None:
    team = room_team()
    for member in team.members:
        expect(member.locator(".room-status")).to_contain_text("Waiting for the facilitator")
        mark(member)

    start_first_issue(team)
    team.owner.click("text=Next issue")
    deadline = time.monotonic() + LIVE / 1000
    for member in team.members:  # both within the same two seconds of the facilitator's click
        expect(heading(member)).to_have_text("ROOM-2", timeout=left_of(deadline))
    for member in team.members:
        expect(member.locator(".issue-description")).to_have_text("What ROOM-2 is about")
        expect(card(member, "13")).to_be_visible()
        expect(member.locator(".vote-feedback")).to_contain_text("You have not voted yet")
        assert not_reloaded(member)
    expect(heading(team.owner)).to_have_text("ROOM-2")
    assert team.console_errors() == []


def test_typing_a_cards_label_votes_and_focus_stays_on_the_deck(room_team: Callable[..., Team]) -> None:
    team = room_team()
    start_first_issue(team)
    bob, carol, owner = team.bob, team.carol, team.owner
    for member in team.members:
        mark(member)

    bob.keyboard.type("13")  # "1" alone would wait: 13 is a card too
    expect(bob.locator(".vote-feedback")).to_contain_text("Your card: 13")
    expect(card(bob, "13")).to_have_attribute("aria-pressed", "true")
    expect(card(bob, "1")).to_have_attribute("aria-pressed", "false")
    expect(card(bob, "13")).to_be_focused()
    assert has_focus_ring(bob)

    carol.evaluate(  # what the page showed while it waited for a second key
        """window.cues = [];
        new MutationObserver(() => document.querySelectorAll('.typed-cue').forEach((cue) => cues.push(
          [cue.textContent, document.querySelector('.card-btn.typed-pending')?.value]))
        ).observe(document.body, {childList: true, subtree: true});"""
    )
    carol.keyboard.type("8")  # on the phone; 89 starts with 8 too
    expect(carol.locator(".vote-feedback")).to_contain_text("Your card: 8")
    assert ["“8”: waiting a moment for another key", "8"] in carol.evaluate("cues")
    expect(carol.locator(".typed-cue, .typed-pending")).to_have_count(0)  # gone once it voted
    expect(card(carol, "8")).to_have_attribute("aria-pressed", "true")
    expect(card(carol, "89")).to_have_attribute("aria-pressed", "false")
    expect(card(carol, "8")).to_be_focused()
    assert has_focus_ring(carol)

    expect(owner.locator("#voters")).to_contain_text("2 of 3", timeout=LIVE)
    expect(owner.locator("#voters li", has_text="Carol")).to_contain_text("voted")
    assert not re.search(r"\b(13|8)\b", owner.locator("#voters").inner_text())

    bob.keyboard.type("?")  # a change of mind: not sure, still one vote
    expect(bob.locator(".vote-feedback")).to_contain_text("Your card: ?")
    expect(card(bob, "?")).to_have_attribute("aria-pressed", "true")
    expect(card(bob, "13")).to_have_attribute("aria-pressed", "false")
    expect(card(bob, "?")).to_be_focused()
    assert has_focus_ring(bob)
    expect(owner.locator("#voters")).to_contain_text("2 of 3")
    assert not_reloaded(bob) and not_reloaded(carol)
    assert team.console_errors() == []


def test_range_deck_vote_by_number_and_enter(room_team: Callable[..., Team]) -> None:
    team = room_team(deck="range")
    start_first_issue(team)
    carol = team.carol  # on her phone
    number = carol.locator("#vote input[name=value]")
    feedback = carol.locator("#vote .vote-feedback")
    mark(carol)

    number.fill("0")
    number.press("Enter")
    expect(feedback).to_contain_text("whole number from 1 to 100")
    expect(carol.locator("#vote .text-danger")).to_have_count(1)
    number.fill("5")
    number.press("Enter")
    expect(feedback).to_contain_text("Your card: 5")
    expect(feedback).not_to_contain_text("You have not voted yet")
    expect(carol.locator("#vote .text-danger")).to_have_count(0)  # the earlier error is gone
    expect(team.owner.locator("#voters")).to_contain_text("1 of 3", timeout=LIVE)
    assert not_reloaded(carol)
    assert team.console_errors("422") == []  # the refused vote itself


def test_a_slip_after_voting_then_the_same_card_clears_the_error(room_team: Callable[..., Team]) -> None:
    team = room_team(deck="range")
    start_first_issue(team)
    bob = team.bob
    number = bob.locator("#vote input[name=value]")
    feedback = bob.locator("#vote .vote-feedback")
    mark(bob)
    number.fill("5")
    number.press("Enter")
    expect(feedback).to_contain_text("Your card: 5")

    number.fill("101")
    number.press("Enter")
    expect(feedback).to_contain_text("whole number from 1 to 100")
    carol = team.carol.locator("#vote input[name=value]")  # an update reaches Bob's room meanwhile
    carol.fill("8")
    carol.press("Enter")
    expect(bob.locator("#voters")).to_contain_text("2 of 3", timeout=LIVE)
    expect(feedback).to_contain_text("whole number from 1 to 100")  # the reason is still there
    number.fill("5")  # the same card as before: nothing on the server's page changes
    number.press("Enter")
    expect(feedback).to_contain_text("Your card: 5")
    expect(bob.locator("#vote .text-danger")).to_have_count(0)
    assert not_reloaded(bob)
    assert team.console_errors("422") == []  # the refused vote itself


def test_auto_reveal_shows_the_result_on_every_screen(room_team: Callable[..., Team]) -> None:
    team = room_team(auto_reveal=True, min_votes=2)  # Bob's and Carol's: Olivia's card never counts
    start_first_issue(team)
    for page in team.everyone:
        mark(page)
    for page, label in ((team.owner, "5"), (team.bob, "8")):
        card(page, label).click()
        expect(page.locator(".vote-feedback")).to_contain_text(f"Your card: {label}")
    expect(team.carol.locator("#voters")).to_contain_text("2 of 3", timeout=LIVE)
    for page in team.everyone:
        expect(page.locator("#result")).to_be_empty()

    card(team.carol, "5").click()  # the vote that completes the round reveals it
    deadline = time.monotonic() + LIVE / 1000
    for page in team.everyone:
        expect(page.locator("#result")).to_contain_text("Result of round 1", timeout=left_of(deadline))
    for page in team.everyone:
        expect(page.locator("#result")).to_contain_text("3 votes")
        expect(page.locator("#vote .vote-form")).to_have_count(0)
        assert not_reloaded(page)
    expect(team.owner.locator("#controls")).to_contain_text("Final estimate")
    assert team.console_errors() == []


def test_timer_counts_down_on_every_screen_and_stops_everywhere(room_team: Callable[..., Team]) -> None:
    team = room_team()
    start_first_issue(team)
    for page in team.everyone:
        mark(page)
    team.owner.select_option("#timer-seconds", "30")
    team.owner.click("text=Start timer")
    for page in team.everyone:
        expect(page.locator("#timer .countdown")).to_be_visible(timeout=LIVE)
    first = [countdown_seconds(page) for page in team.everyone]
    assert all(0 < seconds <= 30 for seconds in first), first
    team.owner.wait_for_timeout(2200)  # time passing is the point
    later = [countdown_seconds(page) for page in team.everyone]
    assert all(after < before for before, after in zip(first, later, strict=True)), (first, later)
    for page in team.everyone:
        expect(page.locator("#timer .times-up")).to_be_hidden()

    team.owner.click("text=Stop the timer")
    for page in team.everyone:
        expect(page.locator("#timer .countdown")).to_have_count(0, timeout=LIVE)
    expect(team.owner.locator("#timer-seconds")).to_be_visible()  # it can be started again
    assert all(not_reloaded(page) for page in team.members)
    assert team.console_errors() == []


def test_facilitators_tab_title_says_all_voted(room_team: Callable[..., Team]) -> None:
    team = room_team(min_votes=2)  # Bob's and Carol's votes: Olivia's card never counts
    start_first_issue(team)
    mark(team.owner)
    all_voted = re.compile(r"^All voted")
    for page, label in ((team.owner, "3"), (team.bob, "5")):
        card(page, label).click()
        expect(page.locator(".vote-feedback")).to_contain_text(f"Your card: {label}")
    expect(team.owner.locator("#voters")).to_contain_text("2 of 3", timeout=LIVE)
    expect(team.owner).not_to_have_title(all_voted)

    team.carol.keyboard.type("5")
    expect(team.carol.locator(".vote-feedback")).to_contain_text("Your card: 5")
    expect(team.owner).to_have_title(all_voted, timeout=LIVE)
    expect(team.owner.locator(".everybody-voted")).to_contain_text("Everybody has voted")
    assert not_reloaded(team.owner)
    for member in team.members:
        expect(member.locator("#voters")).to_contain_text("3 of 3", timeout=LIVE)
        expect(member).not_to_have_title(all_voted)  # only the facilitator is told to act
    assert team.console_errors() == []


def test_rooms_follow_by_the_event_stream_or_by_polling_when_it_is_blocked(room_team):
    """Bob's page gets the change's regions in its event stream and asks for nothing; Carol's
    network blocks event streams: her page falls back to polling the regions and follows as quickly."""
    team = room_team()
    asked: dict[str, list[str]] = {"bob": [], "carol": []}
    team.bob.on("request", lambda request: asked["bob"].append(f"{request.method} {request.url}"))
    team.carol.route("**/events?*", lambda route: route.abort())
    team.carol.on("request", lambda request: asked["carol"].append(f"{request.method} {request.url}"))

    def polls() -> list[str]:
        return [url for url in asked["carol"] if url.startswith("GET") and "/regions?view=room" in url]

    # Both pages settled: Bob's stream is open, Carol's page has fallen back to polling.
    with team.bob.expect_response(lambda response: "/events?" in response.url and response.ok):
        team.bob.reload()
    with team.carol.expect_request(lambda request: request.method == "GET" and "/regions?" in request.url):
        team.carol.reload()
    for page in team.members:
        mark(page)
    asked["bob"].clear()
    team.owner.click(".next-issue")
    for page in team.members:
        expect(heading(page)).to_have_text("ROOM-1", timeout=LIVE)
        assert not_reloaded(page)
    # Until Carol's page polls once more: had Bob's page asked for anything, it would have by then.
    seen = len(polls())
    wait_until(
        lambda: len(polls()) > seen, 5, "another poll", pause=lambda s: team.carol.wait_for_timeout(s * 1000)
    )
    assert asked["bob"] == [], asked["bob"]  # no request at all: the stream brought the regions
    assert len(polls()) >= 2, asked["carol"]


def test_a_page_loaded_just_before_a_change_flashes_only_what_the_change_touched(room_team) -> None:
    """Bob's page loads, then Carol votes before its event stream opens: the stream sends every
    region once, and Bob's page swaps (and flashes) only the one that reads differently."""
    team = room_team()
    start_first_issue(team)
    held: list[Route] = []
    team.bob.route("**/events?*", lambda route: held.append(route))
    team.bob.reload()
    wait_until(lambda: held, 5, "Bob's stream", pause=lambda s: team.bob.wait_for_timeout(s * 1000))
    card(team.carol, "5").click()
    expect(team.owner.locator("#voters")).to_contain_text("1 of 3", timeout=LIVE)
    team.bob.evaluate("document.querySelectorAll('[data-live] *').forEach((node) => { node.__old = true; })")

    held[0].continue_()
    expect(team.bob.locator("#voters")).to_contain_text("1 of 3", timeout=LIVE)
    expect(team.bob.locator("#voters")).to_have_class(re.compile("live-flash"))
    for region in ("#room-heading", "#vote", "#result", "#controls", "#timer"):
        expect(team.bob.locator(region)).not_to_have_class(re.compile("live-flash"))
    assert heading(team.bob).evaluate("h => h.__old === true")  # the same element, never replaced
    assert team.bob.locator("#own-card").evaluate("box => box.__old === true")  # kept in its place
    assert team.console_errors() == []
