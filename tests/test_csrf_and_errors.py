"""CSRF on every POST, friendly error pages, and configuration defaults."""

import re
import time

import pytest

from estimator import instance_secret_key
from tests.conftest import login


@pytest.fixture
def settings():
    return {"WTF_CSRF_ENABLED": True}


def token(client, path: str) -> str:
    """The CSRF token of the first form on a page."""
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', page)
    assert match is not None, f"no form with a CSRF token on {path}"
    return match.group(1)


def csrf_login(client, nickname: str):
    return client.post("/login", data={"nickname": nickname, "csrf_token": token(client, "/login")})


def test_post_without_token_says_the_form_expired(app, client):
    response = login(client, "NoToken")
    assert response.status_code == 400
    assert "The form expired, please try again." in response.get_data(as_text=True)


def test_post_with_a_token_works_and_logout_needs_one(app, client):
    assert csrf_login(client, "Tokened").status_code == 302
    assert client.post("/logout").status_code == 400
    assert client.post("/logout", data={"csrf_token": token(client, "/logout")}).status_code == 302


def test_every_form_on_a_page_carries_a_token(app, client):
    csrf_login(client, "Olivia")
    group_id = create_group_with_token(client)
    page = client.get(f"/groups/{group_id}").get_data(as_text=True)
    forms = re.findall(r"<form[^>]*method=\"post\".*?</form>", page, re.S)
    assert forms and all("csrf_token" in form for form in forms)


def create_group_with_token(client) -> int:
    response = client.post(
        "/groups", data={"name": "Tokens", "deck": "range", "csrf_token": token(client, "/")}
    )
    return int(response.headers["Location"].rsplit("/", 1)[1])


def test_an_old_token_still_works_hours_later(app, client, monkeypatch):
    csrf_login(client, "Sleepy")
    old = token(client, "/")
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 10 * 3600)
    response = client.post("/groups", data={"name": "Later", "deck": "range", "csrf_token": old})
    assert response.status_code == 302


def test_error_pages_are_friendly_with_a_way_back(app, client):
    response = client.get("/no/such/page")
    page = response.get_data(as_text=True)
    assert response.status_code == 404 and "There is nothing here" in page and 'href="/"' in page
    assert "Estimator" in page  # the site's layout


def test_api_errors_are_json(app, client):
    response = client.get("/api/issues/1")
    assert response.status_code == 401 and response.json == {"error": "Please log in first."}
    csrf_login(client, "Json")
    response = client.get("/api/nothing")
    assert response.status_code == 404 and "error" in response.json


def test_oversized_body_gets_413(app, client):
    response = client.post("/login", data={"nickname": "x" * 100_000})
    assert response.status_code == 413 and "more data than Estimator accepts" in response.get_data(
        as_text=True
    )


def test_wrong_method_is_a_page_not_a_crash(app, client):
    response = client.put("/login")
    assert response.status_code == 405 and "not available" in response.get_data(as_text=True)


def test_secret_key_is_generated_once_and_kept(tmp_path):
    key = instance_secret_key(str(tmp_path))
    assert len(key) == 64 and instance_secret_key(str(tmp_path)) == key
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_cookies_are_httponly_and_lax(app, client):
    response = login(client, "Cookie") if not app.config["WTF_CSRF_ENABLED"] else csrf_login(client, "Cookie")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain HTTP unless ESTIMATOR_HTTPS=1


def test_unexpected_errors_get_the_500_page_and_nothing_is_saved(make_app):
    from estimator.extensions import db
    from estimator.models import User

    app = make_app(TESTING=False, PROPAGATE_EXCEPTIONS=False)

    @app.route("/boom")
    def boom():
        db.session.add(User(nickname="Half", nickname_key="half"))
        db.session.flush()
        raise RuntimeError("unexpected")

    response = app.test_client().get("/boom")
    page = response.get_data(as_text=True)
    assert response.status_code == 500 and "Nothing was saved" in page and 'href="/"' in page
    with app.app_context():
        assert db.session.query(User).filter_by(nickname_key="half").count() == 0


def test_bootstrap_is_served_by_the_app_itself(app, client):
    page = client.get("/").get_data(as_text=True)
    assert (
        "/bootstrap/static/css/bootstrap.min.css" in page and "/bootstrap/static/js/bootstrap.min.js" in page
    )
    assert "cdn." not in page and 'src="http' not in page and 'href="http' not in page
    for asset in ("/bootstrap/static/css/bootstrap.min.css", "/bootstrap/static/js/bootstrap.min.js"):
        response = client.get(asset)
        assert response.status_code == 200
        response.close()
