"""The tracker page in a browser: it asks for what the chosen tracker needs, and passes axe-core's
WCAG 2.1 A and AA rules in every state a facilitator meets (not connected, connected, a connection
tested, an import's report, a refusal), light and dark, in every language the site speaks.

The app is served by gunicorn and reaches a Jira on loopback (`tests.fake_trackers`), as
`tests/test_trackers_jira_gitlab.py` has it; the checks of a page are those of
`tests/test_accessibility.py`.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]  # ships no type hints
from playwright.sync_api import Browser, BrowserContext, Page, expect

from config import TestConfig
from estimator import create_app
from estimator.extensions import db
from tests.conftest import empty_tables, make_config
from tests.fake_trackers import FakeJira, running
from tests.helpers import logged_in_page
from tests.jira_contract import documents_present
from tests.server import start_gunicorn, stop
from tests.test_accessibility import (
    AXE_OPTIONS,
    DESKTOP,
    Site,
    Visitor,
    combinations,
    readable,
    structure_problems,
)
from tests.test_trackers_jira_gitlab import JQL, fake_jira

pytestmark = [
    pytest.mark.browser,
    # The fake Jira holds every request to Atlassian's documents, kept beside the repository.
    pytest.mark.skipif(
        not documents_present(),
        reason="Atlassian's OpenAPI documents are kept beside the repository in ../shared/trackers/jira/, "
        "and that folder is not there",
    ),
]


@dataclass
class Tracked:
    """The served app, the Jira it reaches, and Olivia's two groups: one connected to the Jira with
    its issues imported, one not connected."""

    site: Site
    jira: FakeJira
    connected: str
    unconnected: str


@pytest.fixture(scope="module")
def tracked(browser: Browser, schema: str, key_store_uri: str, tmp_path_factory) -> Iterator[Tracked]:
    app = create_app(make_config(schema, BALLOT_KEY_STORE_URI=key_store_uri))
    with app.app_context():
        empty_tables()
        db.engine.dispose()
    with running(fake_jira(cloud=True)) as jira:
        assert isinstance(jira, FakeJira)
        process, server = start_gunicorn(
            schema,
            tmp_path_factory.mktemp("gunicorn") / "server.log",
            workers=1,
            BALLOT_KEY_STORE_URI=key_store_uri,
            TRACKER_SECRET_KEY=str(TestConfig.TRACKER_SECRET_KEY),
            TRACKER_ALLOWED_HOSTS=f"127.0.0.1:{jira.port}",
            TRACKER_ALLOW_PRIVATE="1",
        )
        contexts: list[BrowserContext] = []
        problems: list[str] = []
        try:
            owner = logged_in_page(browser, server, "Olivia", contexts, problems, DESKTOP)
            groups = []
            for name in ("Connected team", "Other team"):
                owner.goto("/")
                owner.fill("#name", name)
                owner.select_option("#deck", "fibonacci")
                owner.click("text=Create group")
                expect(owner.get_by_role("heading", name=name)).to_be_visible()
                groups.append(urlsplit(owner.url).path)
            connected, unconnected = (group + "/tracker" for group in groups)
            owner.goto(connected)
            connect_jira(owner, jira)
            owner.click("#submit_connection")
            expect(owner.locator("#tracker-saved")).to_contain_text("Connected to Jira")
            import_jql(owner)
            assert "Added 3" in owner.inner_text("#import-result")
            assert not problems, problems
            site = Site(server, {"Olivia": contexts[0].storage_state()}, groups[0], "", "", "", "")
            yield Tracked(site, jira, connected, unconnected)
        finally:
            for context in contexts:
                context.close()
            stop(process)
    assert not jira.violations, jira.violations


def connect_jira(page: Page, jira: FakeJira, token: str | None = None) -> None:
    """Fill in the connect form for Jira Cloud."""
    page.select_option("#kind", "jira")
    page.fill("#base_url", jira.base_url)
    page.fill("#email", jira.account.email)
    page.fill("#token", token or jira.account.api_token)


def import_jql(page: Page) -> None:
    page.fill("#query", JQL)
    page.click("#submit_import")
    expect(page.locator("#import-result")).to_be_visible()


def test_the_form_asks_for_what_the_chosen_tracker_needs(browser: Browser, tracked: Tracked):
    context = browser.new_context(base_url=tracked.site.server, storage_state=tracked.site.logins["Olivia"])
    try:
        page = context.new_page()
        page.goto(tracked.unconnected)
        email = page.get_by_label("E-mail address (Jira Cloud only)")
        hints = {
            kind: page.locator(f".tracker-hint[data-kind={kind}]") for kind in ("redmine", "jira", "gitlab")
        }
        for chosen in ("gitlab", "jira", "redmine"):
            page.select_option("#kind", chosen)
            for kind, hint in hints.items():
                expect(hint).to_be_visible() if kind == chosen else expect(hint).to_be_hidden()
            expect(email).to_be_visible() if chosen == "jira" else expect(email).to_be_hidden()
        expect(hints["redmine"]).to_contain_text("Redmine: API key")

        # Testing a Jira connection from the page lists its fields to choose from
        connect_jira(page, tracked.jira)
        page.click("#test")
        expect(page.locator("#tracker-check")).to_contain_text("Connected to Jira as Mia Krystof.")
        options = page.locator("#estimate_field option")
        expect(options).to_contain_text(["Story point estimate", "Story Points"])
        expect(email).to_be_visible()
    finally:
        context.close()


def after_testing(page: Page, jira: FakeJira) -> None:
    """The connection tested from the page: the tracker's fields to choose from."""
    connect_jira(page, jira)
    page.click("#test")
    expect(page.locator("#tracker-check")).to_be_visible()


def after_a_refusal(page: Page, jira: FakeJira) -> None:
    """A token the tracker refuses: the page says so."""
    connect_jira(page, jira, token="not-the-token")
    page.click("#test")
    expect(page.locator("#tracker-problem")).to_be_visible()


@pytest.mark.parametrize(("language", "scheme", "way"), combinations())
def test_the_tracker_page_passes_axe(
    browser: Browser, tracked: Tracked, language: str, scheme: str, way: str
):
    axe = Axe()
    visitor = Visitor(browser, tracked.site, language, scheme, way)
    jira = tracked.jira
    visits = [
        ("not connected", tracked.unconnected, None),
        ("connected", tracked.connected, None),
        ("connection tested", tracked.connected, lambda page: after_testing(page, jira)),
        ("credentials refused", tracked.connected, lambda page: after_a_refusal(page, jira)),
        ("import report", tracked.connected, import_jql),
    ]
    report = []
    try:
        page = visitor.page("Olivia")
        for name, url, action in visits:
            response = page.goto(url)
            assert response is not None and response.status == 200, name
            if action:
                action(page)
            page.wait_for_load_state("load")
            problems = structure_problems(page, visitor)
            violations = axe.run(page, options=AXE_OPTIONS).response["violations"]
            if problems or violations:
                found = [f"  {problem}" for problem in problems] + [readable(violations)] * bool(violations)
                report.append("\n".join([f"{name} ({page.url}):", *found]))
    finally:
        visitor.close()
    assert not report, f"accessibility problems in {language}, {scheme} ({way}):\n" + "\n".join(report)
