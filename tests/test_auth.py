"""Nickname login, passwords, logout, account page and the `next` rule."""

import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from estimator.auth.redirects import safe_next
from estimator.auth.users import find_or_create_user
from estimator.extensions import db
from estimator.models import User
from tests.conftest import login


def users(app) -> list[User]:
    with app.app_context():
        return list(db.session.scalars(sa.select(User).order_by(User.id)))


def test_landing_page_links_to_login(client):
    page = client.get("/").get_data(as_text=True)
    assert 'href="/login"' in page and "Nobody" in page


def test_first_login_creates_the_user_and_lands_on_my_groups(app, client):
    response = login(client, "Alice")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    page = client.get("/").get_data(as_text=True)
    assert "My groups" in page and "Create a group" in page and "Alice" in page
    assert [u.nickname for u in users(app)] == ["Alice"]


def test_nickname_is_unique_regardless_of_case_and_shown_as_first_spelled(app, client, new_client):
    login(client, "Alice")
    other = new_client("ALICE")
    assert [u.nickname for u in users(app)] == ["Alice"]
    assert "Alice" in other.get("/").get_data(as_text=True)


def test_nickname_is_trimmed(app, client):
    assert login(client, "  Bob Smith  ").status_code == 302
    assert [u.nickname for u in users(app)] == ["Bob Smith"]


@pytest.mark.parametrize(
    "nickname, message",
    [
        ("", "Please choose a nickname"),
        ("   ", "Please choose a nickname"),
        ("x" * 33, "at most 32 characters"),
        ("bad\x00name", "control characters"),
        ("tab\tname", "control characters"),
        ("line\nbreak", "control characters"),
        ("<script>", "letters, digits, spaces"),
        ("semi;colon", "letters, digits, spaces"),
    ],
)
def test_bad_nicknames_are_refused_and_nothing_is_stored(app, client, nickname, message):
    response = login(client, nickname)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert users(app) == []


def test_nickname_of_exactly_32_characters_and_allowed_punctuation(app, client):
    assert login(client, "a" * 32).status_code == 302
    assert login(client.application.test_client(), "Ève_d.o-1").status_code == 302
    assert {u.nickname for u in users(app)} == {"a" * 32, "Ève_d.o-1"}


def test_password_set_at_first_login_then_required(app, client):
    assert login(client, "Carol", "correct horse").status_code == 302
    stranger = app.test_client()
    response = login(stranger, "carol")
    assert response.status_code == 422 and "protected" in response.get_data(as_text=True)
    assert login(stranger, "carol", "wrong password").status_code == 422
    assert login(stranger, "CAROL", "correct horse").status_code == 302
    user = users(app)[0]
    assert user.password_hash.startswith("scrypt:") and "correct horse" not in user.password_hash


def test_short_password_is_refused_without_creating_the_user(app, client):
    response = login(client, "Dave", "short")
    assert response.status_code == 422 and "8 to 128 characters" in response.get_data(as_text=True)
    assert users(app) == []


def test_wrong_passwords_are_rate_limited_per_nickname(app, settings):
    app.config["PASSWORD_FAILURE_LIMIT"] = "3 per 15 minutes"
    login(app.test_client(), "Erin", "right password")
    attacker = app.test_client()
    codes = [login(attacker, "Erin", f"guess {n:04}").status_code for n in range(4)]
    assert codes == [422, 422, 422, 429]
    # the right password is refused too while the nickname is locked
    response = login(app.test_client(), "Erin", "right password")
    assert response.status_code == 429 and "Too many wrong passwords" in response.get_data(as_text=True)


def test_login_posts_are_rate_limited_per_address(app):
    app.config["LOGIN_RATE_LIMIT"] = "2 per minute"
    client = app.test_client()
    assert [login(client, f"user{n}").status_code for n in range(3)] == [302, 302, 429]
    assert "Too many" in login(client, "user9").get_data(as_text=True)


def test_account_sets_and_changes_the_password(app, client):
    login(client, "Frank")
    page = client.get("/account").get_data(as_text=True)
    assert "Set a password" in page
    response = client.post("/account", data={"new_password": "first secret", "confirm": "first secret"})
    assert response.status_code == 302
    assert login(app.test_client(), "Frank").status_code == 422
    # changing needs the current password
    bad = client.post(
        "/account",
        data={"current_password": "nope nope", "new_password": "second secret", "confirm": "second secret"},
    )
    assert bad.status_code == 422 and "wrong" in bad.get_data(as_text=True)
    good = client.post(
        "/account",
        data={
            "current_password": "first secret",
            "new_password": "second secret",
            "confirm": "second secret",
        },
    )
    assert good.status_code == 302
    assert login(app.test_client(), "Frank", "second secret").status_code == 302
    # the session that changed the password stays logged in
    assert "Frank" in client.get("/account").get_data(as_text=True)


def test_account_refuses_mismatched_confirmation(app, client):
    login(client, "Gina")
    response = client.post("/account", data={"new_password": "one secret", "confirm": "another one"})
    assert response.status_code == 422 and "differ" in response.get_data(as_text=True)
    assert users(app)[0].password_hash is None


def test_logout_asks_on_get_and_logs_out_on_post(client):
    login(client, "Hank")
    page = client.get("/logout")
    assert page.status_code == 200 and "Log out?" in page.get_data(as_text=True)
    assert "My groups" in client.get("/").get_data(as_text=True)  # GET changed nothing
    response = client.post("/logout")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get("/account").status_code == 302


def test_login_required_redirects_with_next(client):
    response = client.get("/account")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login" and parse_qs(location.query) == {"next": ["/account"]}


def test_next_brings_you_back_after_login(client):
    response = login(client, "Ivy", next_url="/account")
    assert response.headers["Location"] == "/account"


HOSTILE = [
    "//evil.example",
    "/\\evil.example",
    "/\t/evil.example",
    "https:evil.example",
    "http:///evil.example",
    "javascript:alert(1)",
    " //evil.example",
    "///evil.example",
    "https://evil.example/",
    "\\\\evil.example",
    "/%09/evil.example\n",
    "",
    "evil.example",
    "/\x00/evil.example",
    "/ok path",
]


@pytest.mark.parametrize("target", HOSTILE)
def test_hostile_next_lands_on_the_site(app, client, target):
    assert login(client, "Jack", next_url=None).status_code == 302
    client.post("/logout")
    response = client.post("/login", query_string={"next": target}, data={"nickname": "Jack"})
    assert response.headers["Location"] == "/"
    with app.test_request_context():
        assert safe_next(target) == "/"


@pytest.mark.parametrize("target", ["/", "/groups/1", "/issues/2?tab=history", "/join/abc-DEF_123"])
def test_local_next_is_kept(app, target):
    with app.test_request_context():
        assert safe_next(target) == target


def test_simultaneous_first_logins_make_one_user(app):
    barrier = threading.Barrier(10)
    errors, created = [], []

    def first_login():
        with app.app_context():
            try:
                barrier.wait()
                user, was_created = find_or_create_user("Racer")
                db.session.commit()
                created.append((user.id, was_created))
            except Exception as error:  # collected so the test can show it
                errors.append(error)

    threads = [threading.Thread(target=first_login) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({user_id for user_id, _ in created}) == 1
    assert sum(was_created for _, was_created in created) == 1
    assert [u.nickname for u in users(app)] == ["Racer"]
