"""The group page is rendered once per version and view and shared by the members who see it, yet
everybody still gets their own page (token, name, "(you)", live tag), sees every change at once, and
a stored page costs the login and one query."""

import itertools
import re
import threading

import pytest
import sqlalchemy as sa
from flask_login import login_user

from estimator.extensions import ballot_keys, db
from estimator.groups.routes import render_group
from estimator.models import Round, User
from estimator.pages import PageCache, Stencil
from estimator.permissions import require_member
from tests.conftest import add_issue, create_group, invite_path, join, vote
from tests.helpers import text, visible, wait_until

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
YOU = re.compile(r'>([^<>]+) <span class="text-body-secondary">\((?:you|du)\)</span>')


def without_tokens(page: str) -> str:
    """The page with its CSRF tokens blanked: they are signed anew at every request."""
    return TOKEN.sub('name="csrf_token" value=""', page)


def user_id(app, nickname: str) -> int:
    with app.app_context():
        found = db.session.scalar(sa.select(User.id).where(User.nickname == nickname))
    assert found is not None, nickname
    return found


def rendered_for(app, nickname: str, path: str, headers: dict[str, str]) -> str:
    """The page as render_group makes it for this person, outside the page cache."""
    group_id = int(re.search(r"/groups/(\d+)", path)[1])  # type: ignore[index]
    with app.test_request_context(path, headers=headers):
        user = db.session.scalar(sa.select(User).where(User.nickname == nickname))
        login_user(user)
        return text(app.make_response(render_group(require_member(group_id))))


def page_cache(app) -> PageCache:
    cache: PageCache = app.extensions["page_cache"]
    return cache


def read_messages(*clients) -> None:
    """Show each client a page, so that its flashed messages (welcome, created …) are read."""
    for client in clients:
        client.get("/")


@pytest.fixture
def team(team):
    """The team of conftest, with every message so far read: their next group page is shared."""
    read_messages(team["owner"], team["bob"], team["carol"])
    return team


@pytest.fixture
def viewers(app, team, new_client):
    """The team's group seen by Olivia (owner), Bob (member) and Oscar (observer), with Bob's vote
    in the open round (so that the page has a ballot key to name)."""
    oscar = new_client("Oscar")
    assert join(app, oscar, team["group"], role="observer").status_code == 302
    assert vote(team["bob"], team["issue"], "3").status_code in (200, 302)
    people = {"Olivia": team["owner"], "Bob": team["bob"], "Oscar": oscar}
    read_messages(*people.values())
    return people


def test_everybody_gets_the_page_as_it_is_rendered_for_them(app, team, viewers):
    # One after the other, so that each page could be served one stored for another.
    for language, theme, path in itertools.product(
        ("en", "de"), ("light", "dark"), (f"/groups/{team['group']}", f"/groups/{team['group']}?added=1")
    ):
        headers = GERMAN if language == "de" else {"Accept-Language": "en"}
        # Olivia's view is stored for owners, Bob's for members; Oscar is served Bob's.
        for nickname, client in viewers.items():
            client.set_cookie("estimator_theme", theme)
            expected = rendered_for(app, nickname, path, {**headers, "Cookie": f"estimator_theme={theme}"})
            for _ in range(2):
                response = client.get(path, headers=headers)
                assert response.status_code == 200
                assert without_tokens(text(response)) == without_tokens(expected), (nickname, path)
                assert f'<html lang="{language}" data-theme="{theme}"' in text(response)
    assert len(page_cache(app)) == 16  # two views, shared by all three, in eight variants


def test_a_member_never_sees_the_owner_s_controls_or_another_s_you(app, team, viewers):
    path = f"/groups/{team['group']}"
    invite = invite_path(app, team["group"])
    owner_page = text(viewers["Olivia"].get(path))
    assert "Add an issue" in owner_page and invite in owner_page and "/members/" in owner_page
    assert YOU.findall(owner_page) == ["Olivia"]
    for nickname in ("Bob", "Oscar", "Bob"):
        page = text(viewers[nickname].get(path))
        assert "Add an issue" not in page and "Invite link" not in page and invite not in page
        assert "/members/" not in page and "Hand over" not in page and "Settings" not in page
        assert YOU.findall(page) == [nickname]
        assert f'href="/account">{nickname}</a>' in page
        assert "Olivia</a>" not in page


def test_every_page_carries_its_viewer_s_own_token_and_it_works(app, make_app):
    csrf_app = make_app(WTF_CSRF_ENABLED=True)

    def posted(client, page_path: str, action: str, data: dict[str, str], token: str | None = None):
        token = token or TOKEN.search(text(client.get(page_path)))[1]  # type: ignore[index]
        return client.post(action, data={**data, "csrf_token": token})

    people = {name: csrf_app.test_client() for name in ("Olivia", "Bob", "Carol")}
    for name, client in people.items():
        assert posted(client, "/login", "/login", {"nickname": name}).status_code == 302
    created = posted(people["Olivia"], "/", "/groups", {"name": "Tokens", "deck": "range"})
    path = created.headers["Location"]
    invite = invite_path(csrf_app, int(path.rsplit("/", 1)[1]))
    for name in ("Bob", "Carol"):
        assert posted(people[name], invite, invite, {"role": "member"}).status_code == 302

    tokens = {}
    for name in ("Olivia", "Olivia", "Bob", "Carol", "Carol"):  # Carol is served Bob's page
        page = text(people[name].get(path))
        found = set(TOKEN.findall(page))
        assert len(found) == 1 and len(TOKEN.findall(page)) >= 2, name  # one token, in every form
        tokens[name] = found.pop()
    assert len(set(tokens.values())) == 3

    # Each works for its own viewer, and for nobody else.
    back = {"lang": "en", "next": path}
    assert posted(people["Carol"], path, "/language", back, tokens["Bob"]).status_code == 400
    assert posted(people["Carol"], path, "/language", back, tokens["Carol"]).status_code == 302
    added = posted(people["Olivia"], path, f"{path}/issues", {"key": "NEW-1"}, tokens["Olivia"])
    assert added.status_code == 302
    assert "NEW-1" in text(people["Bob"].get(path))


def settings_changed(app, team):
    data = {"auto_reveal": "0", "facilitator_votes": "1", "min_votes": "1"}
    return team["owner"].post(f"/groups/{team['group']}/settings", data=data)


def role_changed(app, team):
    bob = user_id(app, "Bob")
    return team["owner"].post(f"/groups/{team['group']}/members/{bob}/role", data={"role": "observer"})


def carol_removed(app, team):
    return team["owner"].post(f"/groups/{team['group']}/members/{user_id(app, 'Carol')}/remove")


CHANGES = {
    # what happens: (the change, what Bob reads afterwards, what he no longer reads)
    "a vote": (lambda app, team: vote(team["carol"], team["issue"], "5"), "2 of 3 voted", "1 of 3 voted"),
    "a new issue": (lambda app, team: add_issue(app, team["owner"], team["group"], "PROJ-2"), "PROJ-2", None),
    "a renamed issue": (
        lambda app, team: team["owner"].post(f"/issues/{team['issue']}/edit", data={"key": "PROJ-9"}),
        "PROJ-9",
        "PROJ-1",
    ),
    "new settings": (settings_changed, "Results may show who voted what.", None),
    "a role": (role_changed, "Bob (you) observer", "Bob (you) member"),
    "a removal": (carol_removed, None, "Carol"),
    "a reveal and an estimate": (
        lambda app, team: (
            vote(team["owner"], team["issue"], "3"),
            vote(team["carol"], team["issue"], "5"),
            team["owner"].post(f"/issues/{team['issue']}/reveal"),
            team["owner"].post(f"/issues/{team['issue']}/accept", data={"estimate": "5"}),
        ),
        "Final: 5",
        "1 of 3 voted",
    ),
}


@pytest.mark.parametrize("change", CHANGES)
def test_the_next_page_after_a_change_shows_it(app, team, change):
    make, shown, gone = CHANGES[change]
    path = f"/groups/{team['group']}"
    vote(team["bob"], team["issue"], "3")
    read_messages(team["bob"])
    for client in (team["owner"], team["bob"], team["bob"]):  # stored, and served from the store
        client.get(path)
    before = visible(team["bob"].get(path))
    assert (shown is None or shown not in before) and (gone is None or gone in before)

    make(app, team)

    after = visible(team["bob"].get(path))
    assert (shown is None or shown in after) and (gone is None or gone not in after), after
    team["owner"].get(path)  # the owner's flashed message
    for nickname, client in (("Olivia", team["owner"]), ("Bob", team["bob"])):
        page = text(client.get(path))
        assert without_tokens(page) == without_tokens(rendered_for(app, nickname, path, {})), nickname


def test_a_lost_ballot_key_shows_on_the_next_page(app, team):
    path = f"/groups/{team['group']}"
    vote(team["bob"], team["issue"], "3")
    read_messages(team["bob"])
    for _ in range(2):
        assert "1 of 3 voted" in visible(team["bob"].get(path))
    with app.app_context():
        key_id = db.session.scalar(sa.select(Round.key_id).where(Round.issue_id == team["issue"]))
        assert key_id is not None
        ballot_keys.store.destroy(key_id)  # the key store restarted: the version did not change
    assert "0 of 3 voted" in visible(team["bob"].get(path))


def test_a_new_invite_link_is_on_the_owner_s_next_page(app, team):
    path = f"/groups/{team['group']}"
    old = invite_path(app, team["group"])
    assert old in text(team["owner"].get(path))
    team["owner"].post(f"/groups/{team['group']}/invite")
    team["owner"].get(path)  # "A new invite link was made"
    page = text(team["owner"].get(path))
    assert old not in page and invite_path(app, team["group"]) in page


def test_a_removed_member_gets_404_and_a_logged_out_cookie_the_login(app, team):
    path = f"/groups/{team['group']}"
    for client in (team["bob"], team["carol"]):
        assert client.get(path).status_code == 200
    bob_cookie = team["bob"].get_cookie("session").value
    assert team["bob"].post("/logout").status_code == 302
    old_login = app.test_client()
    old_login.set_cookie("session", bob_cookie)
    response = old_login.get(path)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")

    assert carol_removed(app, team).status_code == 302
    assert team["owner"].get(path).status_code == 200
    assert team["owner"].get(path).status_code == 200
    assert team["carol"].get(path).status_code == 404
    assert "Carol" not in visible(team["owner"].get(path))


def test_an_outsider_gets_404_for_a_stored_page(app, team, outsider):
    path = f"/groups/{team['group']}"
    team["bob"].get(path)
    assert outsider.get(path).status_code == 404
    assert outsider.get("/groups/999999").status_code == 404


def test_a_flashed_message_is_shown_once_and_to_its_reader_alone(app, team):
    path = f"/groups/{team['group']}"
    team["owner"].get(path)
    team["bob"].get(path)
    add_issue(app, team["owner"], team["group"], "PROJ-2")
    flashed = team["owner"].get(path)
    assert "Issue PROJ-2 added." in visible(flashed)
    assert "Issue PROJ-2 added." not in visible(team["bob"].get(path))
    again = team["owner"].get(path)
    assert "Issue PROJ-2 added." not in visible(again) and "PROJ-2" in visible(again)

    # The page with its message and the shared one are sent alike.
    ignored = {"Content-Length", "Set-Cookie", "X-Request-ID"}
    assert flashed.status_code == again.status_code == 200
    assert {k: v for k, v in flashed.headers.items() if k not in ignored} == {
        k: v for k, v in again.headers.items() if k not in ignored
    }


def test_a_stored_page_costs_the_login_and_one_query(app, team):
    path = f"/groups/{team['group']}"
    vote(team["bob"], team["issue"], "3")
    read_messages(team["bob"])
    team["bob"].get(path)  # stored
    statements: list[str] = []

    def record(_conn, _cursor, statement: str, *_args) -> None:
        if statement.strip().upper() not in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"):
            statements.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        for client in (team["bob"], team["carol"]):
            statements.clear()
            assert client.get(path).status_code == 200
            assert len(statements) <= 3, statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def test_each_page_of_a_long_backlog_is_its_own(app, team):
    path = f"/groups/{team['group']}"
    lines = "\n".join(f"BIG-{n} Issue number {n}" for n in range(1, 151))
    imported = team["owner"].post(f"{path}/import", data={"text": lines})
    assert imported.status_code == 200, text(imported)
    read_messages(team["owner"])
    first = visible(team["bob"].get(path))
    second = visible(team["bob"].get(f"{path}?page=2"))
    beyond = team["bob"].get(f"{path}?page=9")  # the last page there is
    assert "Issues 1–100 of 151" in first and "BIG-99 " in first and "BIG-100 " not in first
    assert "Issues 101–151 of 151" in second and "BIG-150 " in second and "BIG-99 " not in second
    assert visible(beyond) == second
    assert without_tokens(text(beyond)) == without_tokens(rendered_for(app, "Bob", f"{path}?page=9", {}))


def test_the_invite_link_names_the_address_it_was_asked_at(app, team):
    path = f"/groups/{team['group']}"
    token = invite_path(app, team["group"])
    assert f"http://localhost{token}" in text(team["owner"].get(path))
    there = app.test_client()
    there.set_cookie("session", team["owner"].get_cookie("session").value, domain="estimator.example")
    elsewhere = text(there.get(path, base_url="https://estimator.example"))
    assert f"https://estimator.example{token}" in elsewhere and "localhost" not in elsewhere


def test_a_new_group_with_a_deleted_group_s_id_is_not_served_the_old_page(app, owner):
    first = create_group(owner, "Old Team")
    read_messages(owner)
    owner.get(f"/groups/{first}")
    assert owner.post(f"/groups/{first}/delete").status_code == 302
    second = create_group(owner, "New Team")
    assert second == first or not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")
    read_messages(owner)
    page = visible(owner.get(f"/groups/{second}"))
    assert "New Team" in page and "Old Team" not in page


def test_a_page_made_for_nobody_in_particular_has_no_holes(app, team):
    """Other pages render every personal value in place, as they always did."""
    page = text(team["bob"].get(f"/issues/{team['issue']}"))
    assert "<!--hole" not in page and 'href="/account">Bob</a>' in page
    assert TOKEN.search(page) is not None


def test_the_cache_keeps_to_its_budget_and_forgets_outdated_versions():
    stencil = Stencil.of((b"x" * 1000,), ())
    cache = PageCache(max_bytes=3 * stencil.size)
    for n in range(5):
        cache.put(("group", n), stencil, subject=n, version=1)
    assert len(cache) == 3 and cache.bytes <= cache.max_bytes
    assert cache.get(("group", 0)) is None and cache.get(("group", 4)) is stencil

    cache.put(("page", 1, "en"), stencil, subject="page", version=1)
    cache.put(("page", 1, "de"), stencil, subject="page", version=1)
    cache.put(("page", 2, "en"), stencil, subject="page", version=2)
    assert cache.get(("page", 1, "en")) is None and cache.get(("page", 1, "de")) is None
    cache.put(("page", 1, "fr"), stencil, subject="page", version=1)  # rendered late
    assert cache.get(("page", 1, "fr")) is None and cache.get(("page", 2, "en")) is stencil

    cache.put("huge", Stencil.of((b"x" * 4000,), ()), subject="huge", version=1)
    assert cache.get("huge") is None


def waiting_for_a_turn(cache: PageCache) -> int:
    """How many requests hold or wait for a key's turn to render (the one rendering included)."""
    with cache._lock:
        return sum(wanted for _, wanted in cache._turns.values())


def test_members_asking_for_the_same_page_at_once_wait_for_one_render(app, team, monkeypatch):
    """Requests that miss the same page at the same time use the first one's render."""
    from estimator import pages

    renders: list[str] = []
    render = pages.render_stencil
    cache = app.extensions["page_cache"]

    def slow_render(template: str, **context):
        renders.append(template)
        # The render goes on once the three others missed the page too and wait for their turn.
        wait_until(lambda: waiting_for_a_turn(cache) == len(asking), 10, "the others waiting for the render")
        return render(template, **context)

    monkeypatch.setattr(pages, "render_stencil", slow_render)
    path = f"/groups/{team['group']}"
    asking = [team["bob"], team["carol"]] * 2
    answers: list[tuple[int, str]] = [(0, "")] * len(asking)

    def ask(n: int) -> None:
        response = asking[n].get(path)
        answers[n] = (response.status_code, response.get_data(as_text=True))

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(asking))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert renders == ["groups/group.html"]
    assert [status for status, _ in answers] == [200] * 4
    assert [YOU.findall(page) for _, page in answers] == [["Bob"], ["Carol"]] * 2


def test_when_the_first_render_fails_the_next_waiting_request_renders():
    cache = PageCache(max_bytes=10_000)
    stencil = Stencil.of((b"page",), ())
    calls: list[int] = []
    rendering = threading.Event()

    def failing() -> tuple[str, Stencil]:
        calls.append(1)
        rendering.set()
        # It fails once the second request missed the page too and waits for its turn.
        wait_until(lambda: waiting_for_a_turn(cache) == 2, 10, "the second request waiting")
        raise RuntimeError("the database went away")

    def working() -> tuple[str, Stencil]:
        calls.append(2)
        cache.put("key", stencil, subject="group", version=1)
        return "key", stencil

    results: list[object] = []

    def first() -> None:
        try:
            cache.get_or_render("key", failing)
        except RuntimeError as error:
            results.append(str(error))

    thread = threading.Thread(target=first)
    thread.start()
    assert rendering.wait(5)
    results.append(cache.get_or_render("key", working))  # waits for the first, then renders
    thread.join()
    assert calls == [1, 2] and results == ["the database went away", ("key", stencil)]
    assert cache.get_or_render("key", failing) == ("key", stencil)  # stored: no render at all
