"""A whole planning meeting in Chromium against gunicorn with several workers, as a team plays it.

Olivia facilitates and votes at her desk; Bob votes at his desk, Carol on her phone, Dave at his
desk; Erin opens the room and then closes it; Frank joins in the middle of the meeting. Three
issues. Every click is counted: the facilitator needs at most three actions per issue while voting
too (her card, "Reveal votes", "Record and next issue"), a member one (their card). The setting
that waits only for the voters present keeps absent Erin from blocking anyone, and the nudge
reaches the late voter, and only him.
"""

from collections import Counter
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, ViewportSize, expect

from tests.helpers import logged_in_page

pytestmark = pytest.mark.browser

LIVE = 2000  # ms: every screen follows a change within 2 s
LEAVE = 30_000  # ms: a closed page leaves the room within 30 s
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
NUDGE = "The facilitator nudges you: the team is waiting for your vote."


class Meeting:
    """The people at the meeting, and the actions each takes on each issue."""

    def __init__(self, browser: Browser, server: str) -> None:
        self.browser, self.server = browser, server
        self.contexts: list[BrowserContext] = []
        self.problems: list[str] = []
        self.pages: dict[str, Page] = {}
        self.actions: Counter[str] = Counter()

    def person(self, nickname: str, viewport: ViewportSize = DESKTOP) -> Page:
        page = logged_in_page(self.browser, self.server, nickname, self.contexts, self.problems, viewport)
        self.pages[nickname] = page
        return page

    def act(self, nickname: str, target: Locator) -> None:
        """One action of one person in the meeting: a click."""
        self.actions[nickname] += 1
        target.click()

    def vote(self, nickname: str, label: str) -> None:
        self.act(nickname, self.pages[nickname].locator(f"#vote button[name=value][value='{label}']"))

    def issue_done(self) -> Counter[str]:
        """The actions taken on the issue just finished; the count starts again."""
        done, self.actions = self.actions, Counter()
        return done

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def meeting(browser: Browser, server: str, app: object) -> Iterator[Meeting]:  # app: an empty database
    held = Meeting(browser, server)
    yield held
    held.close()


def on_issue(page: Page, key: str) -> None:
    expect(page.locator("#room-heading h1")).to_have_text(key, timeout=LIVE)


def test_a_planning_meeting_from_first_issue_to_total(meeting: Meeting) -> None:
    olivia = meeting.person("Olivia")
    olivia.fill("#name", "Meeting team")
    olivia.select_option("#deck", "fibonacci")
    olivia.click("text=Create group")
    for key in ("MEET-1", "MEET-2", "MEET-3"):
        olivia.fill("#key", key)
        olivia.click("text=Add issue")
        expect(olivia.locator("#issues")).to_contain_text(key)
    olivia.set_checked("#present_only", True)
    olivia.click("text=Save settings")
    expect(olivia.locator(".alert-success")).to_contain_text("Settings saved")
    invite = olivia.input_value("#invite-link")
    room = olivia.url + "/room"

    for nickname, viewport in (("Bob", DESKTOP), ("Carol", PHONE), ("Dave", DESKTOP), ("Erin", DESKTOP)):
        member = meeting.person(nickname, viewport)
        member.goto(invite)
        member.click("text=Join group")
        member.goto(room)
    olivia.goto(room)
    for page in meeting.pages.values():
        expect(page.locator(".present-names")).to_contain_text("Erin", timeout=LIVE)
    # Erin has to leave before the meeting starts: her page closes, and she leaves the room.
    meeting.pages.pop("Erin").context.close()
    expect(olivia.locator(".present-names")).not_to_contain_text("Erin", timeout=LEAVE)
    olivia.click("text=Start with the first issue")
    meeting.issue_done()  # starting the meeting is not an issue's action
    members = ("Bob", "Carol", "Dave")
    for page in meeting.pages.values():
        on_issue(page, "MEET-1")
    expect(olivia.locator("#voters")).to_contain_text("away")  # Erin

    # MEET-1: everybody present votes; absent Erin blocks nothing.
    for nickname, label in (("Olivia", "3"), ("Bob", "5"), ("Carol", "5"), ("Dave", "8")):
        meeting.vote(nickname, label)
    expect(olivia.locator(".everybody-voted")).to_contain_text("You can reveal", timeout=LIVE)
    meeting.act("Olivia", olivia.get_by_role("button", name="Reveal votes"))
    for page in meeting.pages.values():
        expect(page.locator("#result")).to_contain_text("Result of round 1", timeout=LIVE)
    meeting.act("Olivia", olivia.get_by_role("button", name="Record and next issue"))
    for page in meeting.pages.values():
        on_issue(page, "MEET-2")
    done = meeting.issue_done()
    assert done["Olivia"] <= 3 and all(done[name] == 1 for name in members), done

    # MEET-2: Dave is late; the nudge reaches his screen, and only his.
    for nickname, label in (("Olivia", "2"), ("Bob", "3"), ("Carol", "2")):
        meeting.vote(nickname, label)
    expect(olivia.locator(".everybody-voted")).to_have_count(0)
    olivia.get_by_role("button", name="Nudge who has not voted").click()  # a courtesy, not a step
    expect(meeting.pages["Dave"].locator(".nudge")).to_have_text(NUDGE, timeout=LIVE)
    for nickname in ("Bob", "Carol"):
        expect(meeting.pages[nickname].locator(".nudge")).to_be_hidden()
    meeting.vote("Dave", "3")
    expect(meeting.pages["Dave"].locator(".nudge")).to_be_hidden(timeout=LIVE)
    meeting.act("Olivia", olivia.get_by_role("button", name="Reveal votes"))
    expect(olivia.locator("#estimate")).to_have_value("3", timeout=LIVE)  # the suggestion, preselected
    meeting.act("Olivia", olivia.get_by_role("button", name="Record and next issue"))
    for page in meeting.pages.values():
        on_issue(page, "MEET-3")
    done = meeting.issue_done()
    assert done["Olivia"] <= 3 and all(done[name] == 1 for name in members), done

    # MEET-3: Bob votes first; Frank joins through the invite in the middle and lands in the room.
    meeting.vote("Bob", "13")
    frank = meeting.person("Frank", PHONE)
    frank.goto(invite)
    frank.click("text=Join group")
    expect(frank).to_have_url(room)
    on_issue(frank, "MEET-3")
    expect(olivia.locator("#voters")).to_contain_text("Frank", timeout=LIVE)
    expect(olivia.locator("#voters .joined-late")).to_have_count(1)
    for nickname, label in (("Olivia", "8"), ("Carol", "13"), ("Dave", "8"), ("Frank", "13")):
        meeting.vote(nickname, label)
    meeting.act("Olivia", olivia.get_by_role("button", name="Reveal votes"))
    meeting.act("Olivia", olivia.get_by_role("button", name="Record and next issue"))
    for page in meeting.pages.values():
        expect(page.locator(".room-status")).to_contain_text("All 3 issues are estimated", timeout=LIVE)
    done = meeting.issue_done()
    assert done["Olivia"] <= 3 and all(done[name] == 1 for name in (*members, "Frank")), done
    expect(olivia.locator(".room-status")).to_contain_text("21")  # 5 + 3 + 13, the suggestions recorded
    assert meeting.problems == [], meeting.problems
