"""English and German: chosen from Accept-Language, switched with POST /language and remembered;
every text of the pages in the catalogs, the German catalog complete, numbers as German writes them."""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.catalog import Message
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

from estimator.i18n import COOKIE, compile_catalogs
from tests.conftest import add_issue, create_group, invite_path, login, vote
from tests.helpers import text, visible

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
TRANSLATIONS = ROOT / "translations"
POT = TRANSLATIONS / "messages.pot"
GERMAN_PO = TRANSLATIONS / "de" / "LC_MESSAGES" / "messages.po"
GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}


def html_lang(response) -> str:
    match = re.search(r'<html lang="([^"]+)"', text(response))
    assert match, text(response)[:200]
    return match[1]


# --- choosing the language --------------------------------------------------------------------


def test_a_browser_that_asks_for_german_gets_german(client):
    page = client.get("/login", headers=GERMAN)
    assert html_lang(page) == "de"
    assert "Anmelden" in visible(page) and "Log in" not in visible(page)
    assert "Accept-Language" in page.headers["Vary"]


@pytest.mark.parametrize("header", [None, "fr-FR,fr;q=0.9", "en-GB", "*", "de;q=0, en"])
def test_english_is_the_default(client, header):
    page = client.get("/login", headers={"Accept-Language": header} if header else {})
    assert html_lang(page) == "en"
    assert "Log in" in visible(page)


def test_any_german_speaking_region_gets_german(client):
    for header in ("de", "de-AT", "de-CH", "fr;q=0.9, de-DE;q=0.8"):
        assert html_lang(client.get("/login", headers={"Accept-Language": header})) == "de", header


def test_the_switch_is_on_every_page_logged_in_or_not(app, owner):
    for page in (app.test_client().get("/login"), owner.get("/"), owner.get("/account")):
        form = re.search(
            r'<form class="language-switch[^"]*" method="post" action="/language"[^>]*>(.*?)</form>',
            text(page),
            re.S,
        )
        assert form, text(page)[:500]
        assert 'aria-label="Language"' in form[0]
        assert 'name="csrf_token"' in form[1]
        # Named in itself: its code on a phone, its full name (also the button's name there) elsewhere.
        for code, name in (("de", "Deutsch"), ("en", "English")):
            label = rf'<span class="short-label">{code.upper()} </span><span class="long-label">{name}</span>'
            button = rf'<button[^>]*name="lang" value="{code}" lang="{code}"[^>]*>{label}</button>'
            assert re.search(button, form[1])


def test_the_switch_overrides_the_browser_and_is_remembered(app, owner):
    answer = owner.post("/language", data={"lang": "de", "next": "/account"})
    assert answer.status_code == 302 and answer.headers["Location"] == "/account"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=de;") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie and "Max-Age=34560000" in cookie
    for _ in range(2):  # remembered, whatever the browser asks for
        page = owner.get("/account", headers={"Accept-Language": "en"})
        assert html_lang(page) == "de" and "Konto" in visible(page)

    visitor = app.test_client()
    visitor.set_cookie(COOKIE, "de")
    assert visitor.post("/language", data={"lang": "en"}).status_code == 302
    assert html_lang(visitor.get("/login", headers=GERMAN)) == "en"


def test_the_switch_goes_back_to_the_page_it_was_used_on(client):
    back = client.post(
        "/language", data={"lang": "de"}, headers={"Referer": "http://localhost/login?next=/x"}
    )
    assert back.headers["Location"] == "/login?next=/x"
    elsewhere = client.post(
        "/language", data={"lang": "de"}, headers={"Referer": "https://evil.example/login"}
    )
    assert elsewhere.headers["Location"] == "/"
    assert client.get("/language?next=/login").headers["Location"] == "/login"


@pytest.mark.parametrize(
    "target", ["//evil.example", "https://evil.example/", "/\\evil.example", "javascript:x"]
)
def test_the_switch_never_leaves_the_site(client, target):
    answer = client.post("/language", data={"lang": "de", "next": target})
    assert answer.status_code == 302 and answer.headers["Location"] == "/"


@pytest.mark.parametrize("lang", ["", "fr", "DE", "de-DE", "de;", "x" * 5000, "\x00"])
def test_an_unknown_language_is_refused_and_changes_nothing(client, lang):
    client.set_cookie(COOKIE, "en")
    answer = client.post("/language", data={"lang": lang, "next": "/login"})
    assert answer.status_code == 400
    assert "That language is not available. Please choose English / Deutsch." in visible(answer)
    assert COOKIE not in answer.headers.get("Set-Cookie", "")
    assert html_lang(client.get("/login", headers=GERMAN)) == "en"


def test_no_field_at_all_is_refused_too(client):
    assert client.post("/language").status_code == 400


def test_a_nonsense_cookie_counts_as_no_choice(client):
    client.set_cookie(COOKIE, "klingon")
    assert html_lang(client.get("/login", headers=GERMAN)) == "de"
    assert html_lang(client.get("/login")) == "en"


def test_the_switch_needs_the_form_token(make_app):
    app = make_app(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    refused = client.post("/language", data={"lang": "de"})
    assert refused.status_code == 400
    assert "The form expired, please try again." in visible(refused)
    assert COOKIE not in refused.headers.get("Set-Cookie", "")
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', text(page))
    assert token
    assert client.post("/language", data={"lang": "de", "csrf_token": token[1]}).status_code == 302
    assert html_lang(client.get("/login")) == "de"


def test_the_cookie_is_secure_behind_tls(make_app):
    client = make_app(HTTPS=True).test_client()
    answer = client.post("/language", data={"lang": "de"}, base_url="https://localhost")
    assert "Secure" in answer.headers["Set-Cookie"]


# --- what the language changes ----------------------------------------------------------------


def test_messages_form_errors_and_json_errors_follow_the_language(app, team):
    visitor = app.test_client()
    visitor.set_cookie(COOKIE, "de")
    assert "Bitte wähle einen Nickname." in visible(visitor.post("/login", data={"nickname": " "}))
    bob = team["bob"]
    bob.set_cookie(COOKIE, "de")
    answer = bob.post(
        f"/issues/{team['issue']}/estimate", data={"value": "0"}, headers={"Accept": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.json == {"error": "Wähle eine ganze Zahl von 1 bis 100 oder ?, wenn du es nicht weißt."}
    vote(bob, team["issue"], "5")
    assert "Deine Stimme ist gespeichert." in visible(bob.get(f"/issues/{team['issue']}"))
    assert bob.get("/api/groups/999999").json == {
        "error": "Hier gibt es nichts, oder es ist nicht für dich bestimmt."
    }
    # WTForms' own messages come in German too.
    owner = team["owner"]
    owner.set_cookie(COOKIE, "de")
    page = owner.post(f"/groups/{team['group']}/settings", data={"min_votes": "drei"})
    assert "Keine gültige, ganze Zahl." in visible(page)


def test_the_json_api_stays_the_same_in_every_language(app, team, dave):
    issue = team["issue"]
    for client, card in ((team["owner"], "13"), (team["bob"], "13"), (team["carol"], "14"), (dave, "14")):
        vote(client, issue, card)
    team["owner"].post(f"/issues/{issue}/reveal")
    english = team["bob"].get(f"/api/issues/{issue}").json
    team["bob"].set_cookie(COOKIE, "de")
    german = team["bob"].get(f"/api/issues/{issue}", headers=GERMAN).json
    assert german == english and english["result"]["average"] == 13.5
    assert english["state"] == "revealed" and english["deck"] == "range"


def test_the_average_is_written_as_german_writes_it(app, team, dave):
    issue = team["issue"]
    for client, card in ((team["owner"], "13"), (team["bob"], "13"), (team["carol"], "14"), (dave, "14")):
        vote(client, issue, card)
    team["owner"].post(f"/issues/{issue}/reveal")
    bob = team["bob"]
    assert "Durchschnitt 13,5" in visible(bob.get(f"/issues/{issue}", headers=GERMAN))
    assert "Average 13.5" in visible(bob.get(f"/issues/{issue}"))
    assert "13,5" not in visible(bob.get(f"/issues/{issue}"))


# --- every text is translated -----------------------------------------------------------------

#: Texts the same in English and German, or no words at all.
SAME_IN_BOTH = {
    "Estimator",  # the product's name
    "English",  # each language is named in itself on the switch
    "Deutsch",
    "DE",  # and by its code on a phone, where the header has room for no more
    "EN",
    "Backlog",  # the same word in German software
    "Nickname",
    "Median",
    "Fibonacci",
    "Fibonacci (1 2 3 5 8 13 21 34 55 89)",  # the deck as the create-group form offers it
    "key",  # the CSV column names the import reads, the same in every language
    "Issue key",
    "summary",
    "description",
    "Issue ID",
    "Id",
    "Identifier",
    "Title",
    "Name",
    "Subject",
    "Team Rocket",  # the test's own names, keys and cards
    "PROJ-1",
    "PROJ-2",
    "Export the backlog",
    "Olivia",
    "Bob",
    "Carol",
    "Dave",
    "Mallory",
}


def same_in_both(text_: str) -> bool:
    """A text the same in both languages, also in a page title ("PROJ-1 · Team Rocket · Estimator")."""
    return all(part.strip() in SAME_IN_BOTH or not re.search(r"[^\W\d_]", part) for part in text_.split("·"))


class VisibleText(HTMLParser):
    """The texts of a page that a person reads or hears: text, and the attributes read out."""

    READ_ATTRIBUTES = ("aria-label", "title", "placeholder", "alt")

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.skipping += 1
        values = dict(attrs)
        for name in self.READ_ATTRIBUTES:
            self.add(values.get(name))
        if tag == "input" and values.get("type") in ("submit", "button", "reset"):
            self.add(values.get("value"))
        if tag == "script":  # the page script's sentences, handed over on its tag
            for name, value in attrs:
                if name.startswith("data-message-"):
                    self.add(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.add(data)

    def add(self, value: str | None) -> None:
        words = " ".join((value or "").split())
        if any(unicodedata.category(c).startswith("L") for c in words):
            self.texts.append(words)


def texts_of(response) -> list[str]:
    parser = VisibleText()
    parser.feed(text(response))
    return parser.texts


@pytest.fixture
def pages(app, team, dave, new_client):
    """(who, path) of every kind of page, before and after a reveal, as owner, member and outsider."""
    group, issue, owner, bob = team["group"], team["issue"], team["owner"], team["bob"]
    visitor = app.test_client()
    add_issue(app, owner, group, "PROJ-2", "Export the backlog")
    owner.post(f"/issues/{issue}/start")
    mallory = new_client("Mallory")
    before = [
        (visitor, "/"),
        (visitor, "/login"),
        (owner, "/"),
        (owner, f"/groups/{group}"),
        (bob, f"/groups/{group}"),
        (owner, f"/groups/{group}/room"),
        (bob, f"/groups/{group}/room"),
        (owner, f"/issues/{issue}"),
        (bob, f"/issues/{issue}"),
        (bob, f"/issues/{issue}/estimate"),
        (owner, "/account"),
        (owner, "/logout"),
        (owner, f"/groups/{group}/import"),
        (owner, f"/issues/{issue}/edit"),
        (owner, f"/issues/{issue}/delete"),
        (bob, f"/groups/{group}/leave"),
        (mallory, invite_path(app, group)),
        (bob, invite_path(app, group)),  # already a member
        (bob, "/issues/999999"),  # an error page
    ]
    for client_, card in ((owner, "13"), (bob, "13"), (team["carol"], "14"), (dave, "14")):
        vote(client_, issue, card)
    owner.post(f"/issues/{issue}/reveal")
    return before, [
        (owner, f"/issues/{issue}"),
        (bob, f"/issues/{issue}"),
        (owner, f"/groups/{group}/room"),
        (bob, f"/groups/{group}/room"),
        (bob, f"/issues/{issue}/estimate"),
    ]


def compare(who, path) -> tuple[list[str], list[str]]:
    """The texts of one page in English and in German, the same person asking."""
    who.set_cookie(COOKIE, "en")
    english = who.get(path)
    who.set_cookie(COOKIE, "de")
    german = who.get(path)
    assert english.status_code == german.status_code, path
    assert html_lang(english) == "en" and html_lang(german) == "de", path
    return texts_of(english), texts_of(german)


def test_no_english_is_left_on_the_german_pages(pages):
    before, after = pages
    checked = 0
    for who, path in before + after:
        english, german = compare(who, path)
        left = sorted({t for t in english if t in german and not same_in_both(t)})
        assert not left, f"{path}: English left in German: {left}"
        checked += len([t for t in english if not same_in_both(t)])
    # Not vacuous: the pages had plenty of English to translate.
    assert checked > 500, checked


def test_the_voters_page_in_german_reads_as_german(pages, team):
    before, _ = pages
    bob = team["bob"]
    bob.set_cookie(COOKIE, "de")
    page = visible(bob.get(f"/issues/{team['issue']}"))
    assert "Ergebnis der Runde 1" in page and "Abstimmende" in page and "Durchschnitt 13,5" in page


# --- the catalogs -----------------------------------------------------------------------------


def strip_jinja(source: str) -> str:
    """A template without its Jinja: comments, translated blocks, statements and expressions."""
    source = re.sub(r"\{#.*?#\}", " ", source, flags=re.S)
    source = re.sub(r"\{%-?\s*trans\b.*?\{%-?\s*endtrans\s*-?%\}", " ", source, flags=re.S)
    source = re.sub(r"\{%.*?%\}", " ", source, flags=re.S)
    return re.sub(r"\{\{.*?\}\}", " ", source, flags=re.S)


#: A string literal in Jinja code, and the calls that translate one.
LITERAL = re.compile(r"""(['"])((?:(?!\1).)*)\1""")
TRANSLATED = re.compile(
    r"""\b(?:_|gettext|ngettext)\(\s*(['"])(?:(?!\1).)*\1(?:\s*,\s*(['"])(?:(?!\2).)*\2)?"""
)
#: What a text shown to a person looks like in code: a capital letter starting a word.
WORDS = re.compile(r"^[A-Z][a-z]+\b")


def untranslated_in(path: Path) -> list[str]:
    """Texts of a template that no translation function wraps."""
    source = path.read_text(encoding="utf-8")
    found = []
    for block in re.findall(
        r"\{\{.*?\}\}|\{%.*?%\}", re.sub(r"\{#.*?#\}", "", source, flags=re.S), flags=re.S
    ):
        for literal in LITERAL.finditer(TRANSLATED.sub("", block)):
            if WORDS.match(literal[2]):
                found.append(literal[2])
    markup = strip_jinja(source)
    parser = VisibleText()
    parser.feed(markup)
    # The product's name is the same in every language.
    found += [t for t in parser.texts if re.sub(r"\bEstimator\b", "", t).strip(" ·") != ""]
    return found


def test_every_text_of_the_templates_is_translatable():
    templates = sorted(TEMPLATES.rglob("*.html"))
    assert len(templates) > 15
    left = {str(path.relative_to(ROOT)): untranslated_in(path) for path in templates}
    left = {path: texts for path, texts in left.items() if texts}
    assert not left, f"texts outside _() or {{% trans %}}: {left}"


def test_the_template_check_finds_what_it_should(tmp_path):
    sample = tmp_path / "sample.html"
    sample.write_text(
        "{# a comment #}<p>{{ _('Fine') }} {% trans n=1 %}Fine too {{ n }}{% endtrans %}</p>"
        '<p>Not wrapped</p><img alt="A picture" src="x"><b title="{{ _(\'ok\') }}">{{ name }}</b>'
        "{{ button_form(url, 'Log out') }}{{ button_form(url, _('Log in'), 'btn btn-primary') }}"
    )
    assert untranslated_in(sample) == ["Log out", "Not wrapped", "A picture"]


def extract(target: Path) -> None:
    """Run the extraction the README gives translators, into target."""
    CommandLineInterface().run(
        ["pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"), "-k", "_l", "-k", "N_", "--no-location",
         "--sort-output", "-o", str(target), str(ROOT / "estimator"), str(ROOT / "templates")]
    )  # fmt: skip


def messages(path: Path, locale: str | None = None) -> dict[object, Message]:
    with path.open("rb") as handle:
        return {message.id: message for message in read_po(handle, locale=locale) if message.id}


def translated(string: str | tuple[str, ...] | list[str] | None) -> bool:
    """Whether a catalog entry has its translation, every plural form of it."""
    return all(string) if isinstance(string, tuple | list) else bool(string)


def test_the_template_and_the_german_catalog_are_up_to_date_and_complete(tmp_path):
    fresh = tmp_path / "messages.pot"
    extract(fresh)
    extracted = messages(fresh)
    assert len(extracted) > 300
    assert set(messages(POT)) == set(extracted), "run the pybabel extract of the README"
    german = messages(GERMAN_PO, "de")
    missing = sorted(str(msgid) for msgid in extracted if msgid not in german)
    assert not missing, f"not in the German catalog (pybabel update): {missing}"
    fuzzy = sorted(str(msgid) for msgid, message in german.items() if message.fuzzy)
    assert not fuzzy, f"fuzzy in the German catalog: {fuzzy}"
    empty = sorted(str(msgid) for msgid, message in german.items() if not translated(message.string))
    assert not empty, f"untranslated in the German catalog: {empty}"
    obsolete = sorted(str(msgid) for msgid in german if msgid not in extracted)
    assert not obsolete, f"no longer used, still in the German catalog: {obsolete}"


def test_the_german_catalog_keeps_every_placeholder():
    with GERMAN_PO.open("rb") as handle:
        catalog = read_po(handle, locale="de")
    problems = [(message.id, [str(error) for error in errors]) for message, errors in catalog.check()]
    assert not problems


def test_catalogs_are_compiled_when_missing_or_older(tmp_path):
    folder = tmp_path / "de" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    po = folder / "messages.po"
    po.write_bytes(GERMAN_PO.read_bytes())
    assert compile_catalogs(tmp_path) == [folder / "messages.mo"]
    assert compile_catalogs(tmp_path) == []  # up to date: left alone
    mo = folder / "messages.mo"
    stamp = mo.stat().st_mtime
    import os

    os.utime(po, (stamp + 10, stamp + 10))
    assert compile_catalogs(tmp_path) == [mo]
    assert not list(folder.glob("tmp*")), "no temporary file is left behind"


def test_a_fresh_clone_shows_german_without_a_compile_step(make_app, tmp_path):
    """`python run.py` on a fresh clone: the app compiles what is missing as it starts."""
    translations = tmp_path / "translations"
    (translations / "de" / "LC_MESSAGES").mkdir(parents=True)
    (translations / "de" / "LC_MESSAGES" / "messages.po").write_bytes(GERMAN_PO.read_bytes())
    app = make_app(BABEL_TRANSLATION_DIRECTORIES=str(translations))
    assert (translations / "de" / "LC_MESSAGES" / "messages.mo").exists()
    assert "Anmelden" in visible(app.test_client().get("/login", headers=GERMAN))


def test_login_still_works_in_german(client):
    client.set_cookie(COOKIE, "de")  # nobody is logged in on this client yet
    answer = login(client, "Zoë")
    assert answer.status_code == 302
    assert "Willkommen, Zoë!" in visible(client.get("/"))


def test_creating_a_group_in_german_offers_the_decks_in_german(client, owner):
    owner.set_cookie(COOKIE, "de")
    page = visible(owner.get("/"))
    assert "Beliebige Zahl 1–100" in page and "T-Shirt-Größen (XS S M L XL XXL)" in page
    refused = owner.post("/groups", data={"name": "Team", "deck": "custom", "cards": "1"})
    assert "Ein Kartensatz hat 2 bis 20 Karten" in visible(refused)
    group = create_group(owner, "Zweite")
    assert "Gruppe „Zweite“ angelegt." in visible(owner.get(f"/groups/{group}"))
