"""Every page passes axe-core's WCAG 2.1 A and AA rules, in the light and the dark scheme (chosen by
the system or with the switch) and in every language the site speaks.

One team is built once for the module, through the pages themselves; then each combination of
language and scheme visits every page as the person who would see it and runs axe-core (shipped
by axe-playwright-python) on it, together with a few checks of the page's structure that axe
leaves to people: one h1, a main landmark, a skip link first, the scheme really applied.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]  # ships no type hints
from playwright.sync_api import Browser, BrowserContext, FilePayload, Page, ViewportSize, expect

from estimator import create_app
from estimator.extensions import db
from tests.conftest import empty_tables, make_config
from tests.helpers import logged_in_page

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
AXE_OPTIONS = {"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]}
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
WRONG_PASSWORD_TRIES = 40  # the failures are counted per worker: enough to pass the limit on each


def languages() -> list[str]:
    """English, and every language the site has a catalog for."""
    catalogs = sorted(p.name for p in (ROOT / "translations").glob("*") if (p / "LC_MESSAGES").is_dir())
    return ["en", *(code for code in catalogs if code != "en")]


def combinations() -> list[Any]:
    """Each language in both schemes, one chosen by the system and the other with the switch,
    alternating from one language to the next; with English alone, both ways for both schemes."""
    runs = []
    for index, code in enumerate(languages()):
        ways = ("system", "switch") if index % 2 == 0 else ("switch", "system")
        runs += [(code, "light", ways[0]), (code, "dark", ways[1])]
    if len(runs) == 2:
        runs += [("en", "light", "switch"), ("en", "dark", "system")]
    return [pytest.param(*run, id="-".join(run)) for run in runs]


@dataclass
class Site:
    """The team's pages and the logins of the people who see them."""

    server: str
    logins: dict[str, Any]  # nickname → Playwright storage state
    group: str
    room: str
    revealed: str  # status page of an issue whose round is revealed
    voting: str  # status page of the room's issue, voting
    invite: str


@pytest.fixture(scope="module")
def site(browser: Browser, server: str, schema: str, key_store_uri: str) -> Iterator[Site]:
    """Olivia's Fibonacci group with Bob, Carol and Dave: one issue revealed (the members' three
    votes), one in the room with Bob's vote cast; Erin is logged in but in no group, Pat's nickname
    has a password."""
    app = create_app(make_config(schema, BALLOT_KEY_STORE_URI=key_store_uri))
    with app.app_context():
        empty_tables()
        db.engine.dispose()
    contexts: list[BrowserContext] = []
    problems: list[str] = []

    def person(nickname: str) -> Page:
        return logged_in_page(browser, server, nickname, contexts, problems, DESKTOP)

    owner = person("Olivia")
    owner.fill("#name", "Axe team")
    owner.select_option("#deck", "fibonacci")
    owner.click("text=Create group")
    for key in ("AXE-1", "AXE-2"):
        owner.fill("#key", key)
        owner.fill("#description", f"What {key} is about,\nover two lines")
        owner.click("text=Add issue")
        expect(owner.locator("#issues")).to_contain_text(key)
    group = urlsplit(owner.url).path
    invite = owner.input_value("#invite-link").removeprefix(server)
    first, second = (owner.get_attribute(f"#issues a:text-is('{key}')", "href") for key in ("AXE-1", "AXE-2"))
    assert first and second
    owner.goto(second + "/edit")  # a tracker's description, folded on the status page and in the room
    owner.fill("#details", "As a team we estimate\n  with <em>care</em>.")
    owner.click("main [type=submit]")
    owner.goto(group)
    voters = []
    for nickname in ("Bob", "Carol", "Dave"):
        member = person(nickname)
        member.goto(invite)
        member.click("text=Join group")
        voters.append(member)
    for page, card in zip(voters, ("3", "5", "8"), strict=True):
        page.goto(first)
        page.click(f"#vote button[value='{card}']")
        expect(page.locator(".my-card")).to_have_text(card)
    owner.goto(first)
    owner.click("text=Reveal votes")
    expect(owner.locator("#result")).to_contain_text("Suggestion")
    owner.goto(group)
    owner.click("#issues li:has(a:text-is('AXE-2')) >> button:text-is('Start')")  # not 'not started'
    expect(owner.locator("#room-heading h1")).to_have_text("AXE-2")
    bob = voters[0]
    bob.goto(group + "/room")
    bob.click("#vote button[value='13']")
    expect(bob.locator(".my-card")).to_have_text("13")
    person("Erin")
    pat = browser.new_context(base_url=server)
    contexts.append(pat)
    login = pat.new_page()
    login.goto("/login")
    login.fill("#nickname", "Pat")
    login.fill("#password", "correct horse battery")
    login.click("main [type=submit]")
    expect(login.get_by_role("heading", name="My groups")).to_be_visible()
    assert not problems, problems
    logins = {
        name: ctx.storage_state()
        for name, ctx in zip(("Olivia", "Bob", "Carol", "Dave", "Erin"), contexts[:5], strict=True)
    }
    yield Site(server, logins, group, group + "/room", first, second, invite)
    for context in contexts:
        context.close()


@dataclass
class Visit:
    """What a page is and how to reach it: a URL, or an action on the page at that URL."""

    name: str
    who: str | None  # a nickname from Site.logins, or None for a visitor
    url: str
    action: Callable[[Page], None] | None = None
    status: int = 200


def submit_without_token(page: Page) -> None:
    """Send a form as a page left open from another login would: its token is not accepted."""
    with page.expect_navigation():
        page.evaluate(
            """() => { const form = document.createElement("form");
                form.method = "post"; form.action = "/logout"; document.body.append(form); form.submit(); }"""
        )


def import_lines(page: Page) -> None:
    """Import pasted lines, one of them refused, to see the import's report."""
    page.fill("#text", "AXE-3 A third issue\nAXE-1 Already there\n" + "X" * 40 + " key too long")
    page.click("#submit_text")
    expect(page.locator("#import-result")).to_be_visible()


def import_file(page: Page) -> None:
    """Import a tracker's file in Windows-1252 with an estimate that is no card, to see the notes;
    the button is busy while it is sent."""
    key = f"AXE-{uuid4().hex[:8]}"
    data = f'Issue key;Summary;Description;Story Points\r\n{key};Caf\xe9;"Zeile 1\r\nZeile 2";4\r\n'
    page.set_input_files(
        "#file", files=[FilePayload(name="jira.csv", mimeType="text/csv", buffer=data.encode("cp1252"))]
    )
    page.click("#submit_file")
    expect(page.locator("#import-result")).to_be_visible()
    expect(page.locator(".import-note").first).to_be_visible()


def guess_passwords(page: Page) -> None:
    """Wrong passwords for Pat's nickname until they are refused for a while (429)."""
    for _ in range(WRONG_PASSWORD_TRIES):
        page.fill("#nickname", "Pat")
        page.fill("#password", "wrong password")
        with page.expect_navigation() as navigation:
            page.click("main [type=submit]")
        response = navigation.value
        if response is not None and response.status == 429:
            return
    pytest.fail("the password guesses were never refused with 429")


def visits(site: Site) -> list[Visit]:
    """Every page of the site, as the person who would see it."""
    return [
        Visit("landing", None, "/"),
        Visit("login", None, "/login"),
        Visit("404", None, "/no/such/page", status=404),
        Visit("login, 429 after wrong passwords", None, "/login", guess_passwords, status=429),
        Visit("dashboard", "Olivia", "/"),
        Visit("group page (owner)", "Olivia", site.group),
        Visit("room (owner, voting)", "Olivia", site.room),
        Visit("status before reveal (owner)", "Olivia", site.voting),
        Visit("status after reveal (owner)", "Olivia", site.revealed),
        Visit("import", "Olivia", site.group + "/import"),
        Visit("import report", "Olivia", site.group + "/import", import_lines),
        Visit("import report with notes", "Olivia", site.group + "/import", import_file),
        Visit("edit issue", "Olivia", site.voting + "/edit"),
        Visit("confirmation (delete issue)", "Olivia", site.voting + "/delete"),
        Visit("account", "Olivia", "/account"),
        Visit("logout", "Olivia", "/logout"),
        Visit("400 expired form", "Olivia", "/account", submit_without_token, status=400),
        Visit("group page (member)", "Bob", site.group),
        Visit("room (member, voted)", "Bob", site.room),
        Visit("status before reveal (member)", "Bob", site.voting),
        Visit("estimate", "Bob", site.voting + "/estimate"),
        Visit("status after reveal (member)", "Bob", site.revealed),
        Visit("403", "Bob", site.group + "/import", status=403),
        Visit("409 already a member", "Bob", site.invite, status=409),
        Visit("join", "Erin", site.invite),
    ]


def readable(violations: list[dict[str, Any]]) -> str:
    """axe's findings as a person reads them: the rule, what it asks, and where it fails."""
    lines = []
    for violation in violations:
        lines.append(f"  {violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"][:5]:
            summary = " ".join(node.get("failureSummary", "").split())
            lines.append(f"    at {', '.join(map(str, node['target']))}: {summary}")
        if len(violation["nodes"]) > 5:
            lines.append(f"    … and {len(violation['nodes']) - 5} more")
    return "\n".join(lines)


@dataclass
class Visitor:
    """One browser context per person, in the language and scheme under test."""

    browser: Browser
    site: Site
    language: str
    scheme: str
    way: str
    contexts: dict[str | None, BrowserContext] = field(default_factory=dict)
    pages: dict[str | None, Page] = field(default_factory=dict)

    def page(self, who: str | None) -> Page:
        """This person's page (made, and the scheme switched, on first use)."""
        if who not in self.pages:
            system = self.scheme if self.way == "system" else ("dark" if self.scheme == "light" else "light")
            context = self.browser.new_context(
                base_url=self.site.server,
                viewport=DESKTOP,
                locale={"en": "en-GB"}.get(self.language, self.language),
                color_scheme=system,  # type: ignore[arg-type]  # Playwright's Literal
                storage_state=self.site.logins.get(who) if who else None,
            )
            self.contexts[who] = context
            page = self.pages[who] = context.new_page()
            if self.way == "switch":
                page.goto("/login" if who is None else "/account")
                page.click(f".theme-switch button[value={self.scheme}]")
                expect(page.locator("html")).to_have_attribute("data-theme", self.scheme)
        return self.pages[who]

    def close(self) -> None:
        for context in self.contexts.values():
            context.close()


def structure_problems(page: Page, visitor: Visitor) -> list[str]:
    """What axe leaves to people: the scheme and language took, one h1, main, a skip link first."""
    found = page.evaluate(
        """() => ({
            scheme: document.documentElement.dataset.bsTheme,
            lang: document.documentElement.lang,
            h1: document.querySelectorAll("h1").length,
            main: document.querySelectorAll("main#main").length,
            first: document.querySelector("a[href], button, input, select, textarea")?.getAttribute("href"),
            background: getComputedStyle(document.body).backgroundColor,
        })"""
    )
    problems = []
    if found["scheme"] != visitor.scheme:
        problems.append(f"the scheme is {found['scheme']!r}, not {visitor.scheme!r}")
    if found["lang"] != visitor.language:
        problems.append(f"<html lang> is {found['lang']!r}, not {visitor.language!r}")
    if found["h1"] != 1:
        problems.append(f"{found['h1']} h1 elements instead of one")
    if found["main"] != 1:
        problems.append("no main landmark with the id the skip link leads to")
    if found["first"] != "#main":
        problems.append(f"the first thing to focus is {found['first']!r}, not the skip link")
    dark_background = sum(int(part) for part in found["background"][4:-1].split(",")[:3]) < 3 * 128
    if dark_background != (visitor.scheme == "dark"):
        problems.append(f"the page's background {found['background']} does not look {visitor.scheme}")
    return problems


@pytest.mark.parametrize(("language", "scheme", "way"), combinations())
def test_every_page_passes_axe(browser: Browser, site: Site, language: str, scheme: str, way: str):
    axe = Axe()
    visitor = Visitor(browser, site, language, scheme, way)
    report = []
    try:
        for visit in visits(site):
            page = visitor.page(visit.who)
            response = page.goto(visit.url)
            if visit.action:
                visit.action(page)
            elif response is not None:
                assert response.status == visit.status, f"{visit.name} answered {response.status}"
            page.wait_for_load_state("load")
            problems = structure_problems(page, visitor)
            results = axe.run(page, options=AXE_OPTIONS)
            violations = results.response["violations"]
            if problems or violations:
                found = [f"  {problem}" for problem in problems] + [readable(violations)] * bool(violations)
                report.append("\n".join([f"{visit.name} ({page.url}):", *found]))
    finally:
        visitor.close()
    assert not report, f"accessibility problems in {language}, {scheme} ({way}):\n" + "\n".join(report)
