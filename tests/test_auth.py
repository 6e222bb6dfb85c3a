"""Nickname login, passwords, logout, account page and the `next` rule."""

import hashlib
import subprocess
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import sqlalchemy as sa

from estimator.auth.claims import CLAIM_COOKIE
from estimator.auth.redirects import safe_next
from estimator.auth.users import find_or_create_user
from estimator.extensions import db
from estimator.models import Claim, User
from tests.conftest import empty_tables, login
from tests.server import free_port


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


def test_nickname_is_unique_regardless_of_case_and_shown_as_first_spelled(app, client):
    login(client, "Alice")
    client.post("/logout")
    assert login(client, "ALICE").status_code == 302  # the same browser: the nickname is its own
    assert [u.nickname for u in users(app)] == ["Alice"]
    assert "Alice" in client.get("/").get_data(as_text=True)


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
    assert user.password_hash is not None
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


# A nickname belongs to the browser that first used it.


def test_a_nickname_belongs_to_the_browser_that_first_used_it(app, client):
    assert login(client, "Dana").status_code == 302
    stranger = app.test_client()
    response = login(stranger, "dana")
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "“Dana” is taken" in page and "/account" in page and "set a password" in page
    assert stranger.get("/account").status_code == 302  # not logged in
    assert [u.nickname for u in users(app)] == ["Dana"]


def test_logging_out_keeps_the_claim_so_the_same_browser_logs_back_in(client):
    login(client, "Dana")
    assert client.post("/logout").status_code == 302
    assert client.get("/account").status_code == 302
    response = login(client, "DANA")
    assert response.status_code == 302
    assert "Welcome back, Dana!" in client.get("/").get_data(as_text=True)


def test_one_browser_can_hold_several_nicknames(app, client):
    for nickname in ("Dana", "Ezra", "Dana", "Ezra"):
        assert login(client, nickname).status_code == 302
        client.post("/logout")
    assert login(app.test_client(), "Ezra").status_code == 422


def test_a_password_opens_the_nickname_anywhere_and_that_browser_then_holds_it(app, client):
    login(client, "Dana")
    client.post("/account", data={"new_password": "dana's secret", "confirm": "dana's secret"})
    laptop = app.test_client()
    response = login(laptop, "Dana")
    assert response.status_code == 422 and "protected" in response.get_data(as_text=True)
    assert login(laptop, "Dana", "dana's secret").status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Claim)) == 2
    # a claim does not replace the password: it is asked for in every browser
    laptop.post("/logout")
    assert login(laptop, "Dana").status_code == 422
    assert login(laptop, "Dana", "dana's secret").status_code == 302


def test_a_password_typed_for_a_nickname_without_one_is_not_saved_and_we_say_so(app, client):
    login(client, "Dana")
    client.post("/logout")
    assert login(client, "Dana", "some password").status_code == 302
    assert "the one you typed was not saved" in client.get("/").get_data(as_text=True)
    assert users(app)[0].password_hash is None


def test_the_claim_cookie_is_long_lived_http_only_and_lax(app, client):
    login(client, "Dana")
    cookie = client.get_cookie(CLAIM_COOKIE)
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax" and not cookie.secure
    assert cookie.max_age is not None and cookie.max_age >= 365 * 24 * 3600
    app.config["HTTPS"] = True
    other = app.test_client()
    login(other, "Ezra")
    assert other.get_cookie(CLAIM_COOKIE).secure


def test_only_the_hash_of_the_browser_secret_is_stored(app, client):
    login(client, "Dana")
    secret = client.get_cookie(CLAIM_COOKIE).value
    with app.app_context():
        stored = db.session.scalars(sa.select(Claim.secret_hash)).all()
    assert stored == [hashlib.sha256(secret.encode()).hexdigest()]


@pytest.mark.parametrize("forged", ["", "x", "a" * 43 + "!", "../" * 20, "\u202e" * 43])
def test_a_malformed_claim_cookie_is_replaced_by_a_new_secret(app, client, forged):
    client.set_cookie(CLAIM_COOKIE, forged)
    assert login(client, "Dana").status_code == 302
    secret = client.get_cookie(CLAIM_COOKIE).value
    assert secret != forged and len(secret) == 43
    client.post("/logout")
    assert login(client, "Dana").status_code == 302


def test_users_from_before_claims_belong_to_the_first_browser_that_logs_in(app, client):
    with app.app_context():
        db.session.add(User(nickname="Oldtimer", nickname_key="oldtimer", nickname_skeleton="oldtimer"))
        db.session.commit()
    assert login(client, "oldtimer").status_code == 302
    assert login(app.test_client(), "Oldtimer").status_code == 422
    client.post("/logout")
    assert login(client, "Oldtimer").status_code == 302
    assert [u.nickname for u in users(app)] == ["Oldtimer"]


def test_a_claiming_browser_is_never_locked_out_by_somebody_elses_wrong_passwords(app, client):
    app.config["PASSWORD_FAILURE_LIMIT"] = "3 per 15 minutes"
    login(client, "Erin", "right password")
    client.post("/logout")
    attacker = app.test_client()
    assert [login(attacker, "Erin", f"guess {n:04}").status_code for n in range(4)] == [422, 422, 422, 429]
    assert login(app.test_client(), "Erin", "right password").status_code == 429  # other browsers wait
    assert login(client, "Erin", "right password").status_code == 302  # the claiming one does not
    # the account page's password check counts the same way
    response = client.post(
        "/account",
        data={"current_password": "right password", "new_password": "new secret", "confirm": "new secret"},
    )
    assert response.status_code == 302


def test_a_claiming_browser_has_its_own_limit_on_wrong_passwords(app, client):
    app.config["PASSWORD_FAILURE_LIMIT"] = "2 per 15 minutes"
    login(client, "Erin", "right password")
    client.post("/logout")
    assert [login(client, "Erin", f"guess {n:04}").status_code for n in range(3)] == [422, 422, 429]
    assert login(app.test_client(), "Erin", "right password").status_code == 302


@pytest.fixture
def redis_server(tmp_path):
    """A Redis of this test's own on a free port; stop() takes it down."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            store.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline and process.poll() is None, "redis-server did not start"
            time.sleep(0.05)
    store.close()

    def stop():
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)

    yield f"redis://127.0.0.1:{port}", stop
    stop()


def test_wrong_passwords_are_counted_in_memory_when_the_shared_store_is_down(make_app, redis_server):
    url, stop_redis = redis_server
    app = make_app(RATELIMIT_STORAGE_URI=url, PASSWORD_FAILURE_LIMIT="2 per 15 minutes")
    with app.app_context():
        empty_tables()
    owner = app.test_client()
    assert login(owner, "Erin", "right password").status_code == 302
    stop_redis()
    # first the account page, before any rate-limited view has noticed the store is gone
    response = owner.post(
        "/account",
        data={"current_password": "not it at all", "new_password": "new secret", "confirm": "new secret"},
    )
    assert response.status_code == 422 and "wrong" in response.get_data(as_text=True)
    attacker = app.test_client()
    assert [login(attacker, "Erin", f"guess {n:04}").status_code for n in range(3)] == [422, 422, 429]
    owner.post("/logout")
    assert login(owner, "Erin", "right password").status_code == 302


def test_account_page_explains_the_claim_in_words(client):
    login(client, "Dana")
    page = client.get("/account").get_data(as_text=True)
    assert "belongs to this browser" in page and "another device" in page and "Set a password" in page
    assert "🔒" not in page
    client.post("/account", data={"new_password": "dana's secret", "confirm": "dana's secret"})
    page = client.get("/account").get_data(as_text=True)
    assert "Protected by a password" in page and "any device" in page and "🔒" not in page


@pytest.mark.parametrize(
    "value", ["", None, "7", ":token", "x:token", "7:", "²:token", "٣:token", "-7:token", "2147483648:token"]
)
def test_a_malformed_login_claim_is_no_login(value):
    """What a session says of its login is parsed strictly: anything but `<id>:<token>` with an id in
    ASCII digits that fits the database is no login, never an error."""
    from estimator.auth.session import parse_claim

    assert parse_claim(value) is None


def test_a_well_formed_login_claim_names_its_user_and_token():
    from estimator.auth.session import Claim as LoginClaim
    from estimator.auth.session import parse_claim

    assert parse_claim("2147483647:a:b") == LoginClaim(2147483647, "a:b")
