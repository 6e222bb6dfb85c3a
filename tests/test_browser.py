"""Two people in two browsers against gunicorn with several workers: pages update themselves."""

import re

import pytest
from playwright.sync_api import BrowserContext, Page, ViewportSize, expect

from tests.helpers import logged_in_page

pytestmark = pytest.mark.browser
LIVE = 2000  # ms: what the spec promises


@pytest.fixture
def people(browser, server, app):  # app empties the database first
    """A factory of logged-in pages, one browser context per person; console errors are collected."""
    contexts: list[BrowserContext] = []
    problems: list[str] = []

    def person(nickname: str, phone: bool = False):
        viewport: ViewportSize | None = {"width": 390, "height": 844} if phone else None
        return logged_in_page(browser, server, nickname, contexts, problems, viewport)

    yield person, problems
    for context in contexts:
        context.close()


def create_group_with_issue(owner, deck="range"):
    owner.fill("#name", "Live team")
    owner.select_option("#deck", deck)
    owner.click("text=Create group")
    owner.fill("#key", "LIVE-1")
    owner.click("text=Add issue")
    expect(owner.locator("#issues")).to_contain_text("LIVE-1")
    return owner.url, owner.input_value("#invite-link")


def join_via(page, invite):
    page.goto(invite)
    page.click("text=Join group")
    # The locator waits for the new page's navigation bar (evaluate could run before it is parsed).
    nickname = page.locator('#nav .nav-link[href="/account"]').inner_text().strip()
    expect(page.locator("#members")).to_contain_text(nickname)


def mark(page):
    """Put a marker on the page that a reload would wipe."""
    page.evaluate("window.__noReload = true")


def not_reloaded(page) -> bool:
    return page.evaluate("window.__noReload === true") is True


def test_votes_reveal_and_new_members_appear_live(people):
    person, problems = people
    owner = person("Olivia")
    group_url, invite = create_group_with_issue(owner)
    mark(owner)

    bob = person("Bob", phone=True)
    join_via(bob, invite)
    expect(owner.locator("#members")).to_contain_text("Bob", timeout=LIVE)  # a new member appears
    assert not_reloaded(owner)

    # a team of two trying it out: the facilitator lowers the threshold, and everybody is told
    owner.fill("#min_votes", "1")
    owner.click("text=Save settings")
    expect(owner.locator(".small-votes-notice")).to_contain_text("Results may show who voted what")
    expect(bob.locator(".small-votes-notice")).to_contain_text(
        "Results may show who voted what", timeout=LIVE
    )

    owner.click("#issues >> text=LIVE-1")
    issue_url = owner.url
    mark(owner)
    bob.goto(issue_url)
    mark(bob)
    expect(owner.locator("#voters")).to_contain_text("0 of 2")

    bob.fill("#vote input[name=value]", "0")  # out of range: said on the page, nothing saved
    bob.click("#vote button:has-text('Vote')")
    expect(bob.locator(".vote-feedback")).to_contain_text("whole number from 1 to 100")
    expect(owner.locator("#voters")).to_contain_text("0 of 2")
    problems[:] = [p for p in problems if "422" not in p]  # the refused request itself
    bob.fill("#vote input[name=value]", "8")
    bob.click("#vote button:has-text('Vote')")
    expect(bob.locator(".vote-feedback")).to_contain_text("Your card: 8")
    expect(bob.locator("#vote .text-danger")).to_have_count(0)  # the earlier error is gone
    expect(bob.locator("#vote input[name=value]")).to_have_value("8")
    assert not_reloaded(bob)  # voted without a reload
    expect(owner.locator("#voters")).to_contain_text("1 of 2", timeout=LIVE)
    expect(owner.locator("#voters li", has_text="Bob")).to_contain_text("voted", timeout=LIVE)
    assert "8" not in owner.locator("#voters").inner_text()

    bob.click("#vote button[value='?']")  # change of mind: still one vote
    expect(bob.locator(".vote-feedback")).to_contain_text("Your card: ?")
    expect(bob.locator("#vote button[value='?']")).to_have_attribute("aria-pressed", "true")
    owner.fill("#vote input[name=value]", "3")
    owner.click("#vote button:has-text('Vote')")
    expect(bob.locator("#voters")).to_contain_text("2 of 2", timeout=LIVE)

    owner.click("text=Reveal votes")
    expect(bob.locator("#result")).to_contain_text("Result of round 1", timeout=LIVE)
    expect(bob.locator("#result")).to_contain_text("1 not sure")
    expect(bob.locator("#vote")).to_be_empty()
    assert not_reloaded(bob)
    assert problems == []


def test_new_issue_appears_and_typing_is_not_lost(people, app):
    person, problems = people
    owner = person("Olivia")
    group_url, invite = create_group_with_issue(owner, deck="fibonacci")
    bob = person("Bob")
    join_via(bob, invite)
    mark(bob)

    # Olivia half-types the next key while Carol joins: the page updates, her typing stays.
    owner.goto(group_url)
    owner.click("#key")
    owner.keyboard.type("LIVE-2 half")
    carol = person("Carol")
    join_via(carol, invite)
    expect(owner.locator("#members")).to_contain_text("Carol", timeout=LIVE)
    assert owner.input_value("#key") == "LIVE-2 half"
    assert owner.evaluate("document.activeElement.id") == "key"

    owner.fill("#key", "LIVE-2")
    owner.click("text=Add issue")
    expect(bob.locator("#issues")).to_contain_text("LIVE-2", timeout=LIVE)  # a new issue appears
    assert not_reloaded(bob)
    assert problems == []


def test_connection_lost_hint_comes_and_goes(people):
    person, problems = people
    owner = person("Olivia")
    create_group_with_issue(owner)
    banner = owner.locator("#connection-lost")
    expect(banner).to_be_hidden()
    # The network goes: the open event stream breaks, and polls and new streams fail.
    owner.route(re.compile(r".*/api/.*"), lambda route: route.abort())
    owner.context.set_offline(True)
    expect(banner).to_be_visible(timeout=3000)
    owner.context.set_offline(False)
    owner.unroute(re.compile(r".*/api/.*"))
    expect(banner).to_be_hidden(timeout=3000)
    # What the outage itself cut off: requests aborted, or refused while the browser was offline
    # (which of the two a request meets depends on when it was sent).
    cut_off = ("net::ERR_FAILED", "net::ERR_INTERNET_DISCONNECTED")
    problems[:] = [p for p in problems if not any(error in p for error in cut_off)]
    assert problems == []


def test_pages_work_without_javascript(browser, server, app):
    context = browser.new_context(base_url=server, java_script_enabled=False)
    page = context.new_page()
    page.goto("/login")
    page.fill("#nickname", "Nojs")
    page.click("main [type=submit]")
    page.fill("#name", "Plain")
    page.select_option("#deck", "tshirt")
    page.click("text=Create group")
    page.fill("#key", "NOJS-1")
    page.click("text=Add issue")
    page.fill("#min_votes", "1")  # a facilitator trying things out with one other person
    page.click("text=Save settings")
    expect(page.locator(".small-votes-notice")).to_be_visible()
    invite = page.input_value("#invite-link")
    page.click("#issues >> text=NOJS-1")
    issue_url = page.url
    expect(page.locator("#reveal-needs")).to_contain_text("1 more needed")
    expect(page.locator("#reveal-needs")).to_contain_text("Only 0 people besides you vote in this group")
    page.click("#vote button[value='L']")
    expect(page.locator(".alert-success.alert-dismissible")).to_contain_text("Your vote is recorded")
    expect(page.locator(".vote-feedback")).to_contain_text("Your card: L")
    # the facilitator's own card never counts: nothing to reveal, and no cue
    expect(page.locator("#reveal-needs")).to_contain_text("1 more needed")
    expect(page.locator(".everybody-voted")).to_have_count(0)
    expect(page.locator("form[action$='/reveal'], button:has-text('Reveal votes')")).to_have_count(0)

    other = browser.new_context(base_url=server, java_script_enabled=False)
    nell = other.new_page()
    nell.goto("/login")
    nell.fill("#nickname", "Nell")
    nell.click("main [type=submit]")
    nell.goto(invite)
    nell.click("text=Join group")
    nell.goto(issue_url)
    nell.click("#vote button[value='M']")
    expect(nell.locator(".vote-feedback")).to_contain_text("Your card: M")
    other.close()

    page.goto(issue_url)
    expect(page.locator(".everybody-voted")).to_contain_text("Everybody has voted")
    page.click("text=Reveal votes")
    expect(page.locator("#result")).to_contain_text("Suggestion")
    context.close()


def test_messages_float_over_the_page_and_the_phone_header_keeps_to_one_line(people, browser, server):
    person, problems = people
    owner = person("Olivia", phone=True)
    create_group_with_issue(owner)

    def top_of_heading() -> float:  # in the document, wherever it is scrolled
        return float(owner.locator("main h1").first.evaluate("h => h.getBoundingClientRect().top + scrollY"))

    expect(owner.locator(".flash-stack")).to_contain_text("Issue LIVE-1 added")
    with_message = top_of_heading()
    owner.reload()  # the message was shown once: now the page has none
    expect(owner.locator(".flash-stack")).to_have_count(0)
    assert top_of_heading() == with_message  # the message did not push the page down

    owner.locator("#issues button", has_text="Start").click()
    expect(owner.locator(".flash-stack [role=status]")).to_contain_text("is in the room")
    in_room = top_of_heading()
    owner.reload()
    assert top_of_heading() == in_room

    for page in (owner, browser.new_page(base_url=server, viewport={"width": 390, "height": 844})):
        page.goto("/")
        for language in ("Deutsch", "English"):  # the active one is left out on a phone, by design
            header = page.locator("header nav").bounding_box()
            assert header is not None and header["height"] <= 60, (language, header)  # one line
            page.get_by_role("button", name=language).click()
    assert problems == []


def test_the_facilitator_drags_an_issue_and_every_screen_shows_the_new_order(people):
    person, problems = people
    owner, bob = person("Olivia"), person("Bob")
    _, invite = create_group_with_issue(owner)
    for key in ("LIVE-2", "LIVE-3"):
        owner.fill("#key", key)
        owner.click("text=Add issue")
        expect(owner.locator("#issues")).to_contain_text(key)
    join_via(bob, invite)
    mark(owner)
    mark(bob)

    def order(page: Page) -> list[str]:
        return page.locator("#issues li a.fw-semibold").all_inner_texts()

    assert order(owner) == ["LIVE-1", "LIVE-2", "LIVE-3"]
    owner.locator("#issues li", has_text="LIVE-3").drag_to(owner.locator("#issues li", has_text="LIVE-1"))
    expect(owner.locator("#announcer")).to_have_text("LIVE-3 is now number 1 of the backlog.")
    expect(bob.locator("#issues li").first).to_contain_text("LIVE-3", timeout=LIVE)
    assert order(bob) == ["LIVE-3", "LIVE-1", "LIVE-2"] and order(owner) == ["LIVE-3", "LIVE-1", "LIVE-2"]
    assert not_reloaded(owner) and not_reloaded(bob)

    owner.get_by_role("button", name="Move LIVE-1 to the bottom").click()
    expect(owner.locator(".flash-stack")).to_contain_text("LIVE-1 is now number 3 of the backlog.")
    expect(bob.locator("#issues li").last).to_contain_text("LIVE-1", timeout=LIVE)
    assert order(owner) == ["LIVE-3", "LIVE-2", "LIVE-1"]
    assert problems == []
