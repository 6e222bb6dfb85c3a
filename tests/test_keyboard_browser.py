"""A round in the room with the keyboard alone: skip links, the deck's arrow keys, Enter and Space
to vote (the focus stays on the card), Tab to the facilitator's buttons, and every screen reader
told what changed through the page's announcer."""

from collections.abc import Callable

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.test_room_browser import LIVE, Team, card, has_focus_ring, heading, mark, not_reloaded
from tests.test_room_browser import room_team as room_team  # the fixture, shared

pytestmark = pytest.mark.browser

MAX_TABS = 60  # more than any page of the room has controls

# Samples, every frame, whether the focus has fallen to <body>; a vote must never let it.
WATCH_FOCUS = """() => {
    window.__fellToBody = false;
    const look = () => {
        if (document.activeElement === document.body || !document.activeElement) window.__fellToBody = true;
        window.__watching = requestAnimationFrame(look);
    };
    look();
}"""
FOCUSED = "() => document.activeElement.value || document.activeElement.textContent.trim()"
STOP_WATCHING = "() => { cancelAnimationFrame(window.__watching); return window.__fellToBody; }"


def focused(page: Page) -> str:
    """What has the focus, as a short description: its value, or its text."""
    return str(page.evaluate(FOCUSED))


def announcer(page: Page) -> Locator:
    return page.locator("#announcer")


def tab_to(page: Page, text: str) -> None:
    """Press Tab until the focus is on the control that says text (failing if it never is)."""
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        if focused(page) == text:
            return
    pytest.fail(f"Tab never reached {text!r}")


def tab_into_the_deck(page: Page) -> None:
    """From the top of the page: the second skip link leads to the cards, one Tab onto the deck."""
    page.evaluate("() => document.activeElement?.blur()")
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link").first).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("a[href='#vote']")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#vote")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#vote .deck button[name=value]").first).to_be_focused()


def vote_with(page: Page, key: str, label: str) -> None:
    """Vote for the focused card with Enter or Space; the focus never leaves it for <body>."""
    assert focused(page) == label
    page.evaluate(WATCH_FOCUS)
    page.keyboard.press(key)
    expect(page.locator(".my-card")).to_have_text(label)
    expect(card(page, label)).to_be_focused()
    page.wait_for_timeout(300)  # the vote's own refresh has swapped the deck by now
    expect(card(page, label)).to_be_focused()
    assert page.evaluate(STOP_WATCHING) is False, "the focus fell to <body> during the vote"
    assert has_focus_ring(page)


def test_a_round_with_the_keyboard_alone(room_team: Callable[..., Team]) -> None:
    team = room_team(issues=("KEY-1", "KEY-2"), min_votes=2)  # Bob's and Carol's: Olivia's never counts
    owner, bob, carol = team.everyone
    for page in team.everyone:
        mark(page)

    tab_to(owner, "Start with the first issue")
    owner.keyboard.press("Enter")
    for page in team.everyone:
        expect(heading(page)).to_have_text("KEY-1", timeout=LIVE)
    expect(announcer(bob)).to_have_text("Next issue: KEY-1", timeout=LIVE)

    # Bob: the deck is one Tab stop; the arrows move along it, Home and End to its ends.
    tab_into_the_deck(bob)
    assert focused(bob) == "1"
    moves = "ArrowRight ArrowRight ArrowDown ArrowUp End ArrowRight ArrowLeft Home".split()
    for key, label in zip(moves, ["2", "3", "5", "3", "?", "1", "?", "1"], strict=True):
        bob.keyboard.press(key)
        assert focused(bob) == label, f"after {key}"
    for _ in range(3):
        bob.keyboard.press("ArrowRight")
    vote_with(bob, "Enter", "5")
    tab_stops = bob.evaluate("() => [...document.querySelectorAll('.deck button')].map((b) => b.tabIndex)")
    assert tab_stops.count(0) == 1 and tab_stops[3] == 0  # the chosen card is the deck's one Tab stop
    expect(announcer(owner)).to_have_text("Bob voted", timeout=LIVE)

    # Carol, on her phone, with Space; then she changes her mind with the arrows.
    tab_into_the_deck(carol)
    for _ in range(4):
        carol.keyboard.press("ArrowRight")
    vote_with(carol, " ", "8")
    expect(announcer(bob)).to_have_text("Carol voted", timeout=LIVE)
    carol.keyboard.press("ArrowRight")
    vote_with(carol, "Enter", "13")

    # Olivia votes too, then reveals and moves on, all by Tab and Enter.
    owner.reload()
    tab_into_the_deck(owner)
    owner.keyboard.press("ArrowRight")
    owner.keyboard.press("ArrowRight")
    vote_with(owner, "Enter", "3")
    expect(announcer(owner)).to_contain_text("Everybody has voted", timeout=LIVE)
    tab_to(owner, "Reveal votes")
    owner.keyboard.press("Enter")
    expect(owner.locator("#result")).to_contain_text("Suggestion")
    for member in team.members:
        expect(announcer(member)).to_have_text("Votes revealed: average 7", timeout=LIVE)

    tab_to(owner, "Next issue")
    owner.keyboard.press("Enter")
    for member in team.members:
        expect(heading(member)).to_have_text("KEY-2", timeout=LIVE)
        expect(announcer(member)).to_have_text("Next issue: KEY-2", timeout=LIVE)
        assert not_reloaded(member)
    assert team.console_errors() == []
