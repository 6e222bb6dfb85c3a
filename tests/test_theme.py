"""The colour scheme: the system's by default, a switch on every page, remembered by the server."""

import re

import pytest

from estimator.theme import BAD_THEME_MESSAGE, THEME_COOKIE
from tests.conftest import login
from tests.helpers import text


def html_tag(page: str) -> str:
    """The page's opening <html> tag, where the scheme is rendered before the first paint."""
    start = page.index("<html")
    return page[start : page.index(">", start) + 1]


def theme_cookie(response) -> str | None:
    """The Set-Cookie header that sets the theme cookie, if the response sends one."""
    return next((c for c in response.headers.getlist("Set-Cookie") if c.startswith(THEME_COOKIE + "=")), None)


def test_pages_follow_the_system_until_a_scheme_is_chosen(client):
    page = text(client.get("/"))
    assert 'data-theme="auto"' in html_tag(page) and "data-bs-theme" not in html_tag(page)
    assert '<meta name="color-scheme" content="light dark">' in page
    # theme.js sets the system's scheme before the first paint: loaded in <head>, not deferred.
    head = page[: page.index("</head>")]
    assert re.search(r'<script src="/static/theme.js\?v=[\w.-]+"></script>', head)  # named by its content
    assert head.index("theme.js") < head.index(".css")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_chosen_scheme_is_rendered_and_remembered(client, scheme):
    response = client.post("/theme", data={"theme": scheme, "next": "/login"})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    cookie = theme_cookie(response)
    assert cookie is not None and cookie.startswith(f"{THEME_COOKIE}={scheme};")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=34560000" in cookie
    page = text(client.get("/login"))
    assert f'data-theme="{scheme}" data-bs-theme="{scheme}"' in html_tag(page)
    assert f'<meta name="color-scheme" content="{scheme}">' in page
    assert re.search(f'value="{scheme}"\\s+aria-pressed="true"', page)


def test_auto_forgets_a_chosen_scheme(client):
    client.post("/theme", data={"theme": "dark"})
    client.post("/theme", data={"theme": "auto"})
    assert 'data-theme="auto"' in html_tag(text(client.get("/")))


def test_the_page_script_switches_without_a_reload(client):
    response = client.post("/theme", data={"theme": "dark"}, headers={"Accept": "application/json"})
    assert response.status_code == 200 and response.json == {"theme": "dark"}
    assert theme_cookie(response) is not None


@pytest.mark.parametrize("value", ["", "purple", "DARK", "dark ", "auto\x00", "../light"])
def test_an_unknown_scheme_is_refused_and_nothing_changes(client, value):
    client.post("/theme", data={"theme": "light"})
    response = client.post("/theme", data={"theme": value})
    assert response.status_code == 400
    assert BAD_THEME_MESSAGE in text(response)
    assert theme_cookie(response) is None
    assert 'data-bs-theme="light"' in html_tag(text(client.get("/")))
    refused = client.post("/theme", data={"theme": value}, headers={"Accept": "application/json"})
    assert refused.status_code == 400 and refused.json == {"error": BAD_THEME_MESSAGE}


def test_a_nonsense_cookie_counts_as_auto(client):
    client.set_cookie(THEME_COOKIE, '"><script>')
    page = text(client.get("/"))
    assert 'data-theme="auto"' in html_tag(page) and "<script>" not in page.replace("<script src=", "")


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example", "/\\evil.example", ""])
def test_the_switch_goes_back_only_to_a_page_of_this_site(client, target):
    response = client.post("/theme", data={"theme": "dark", "next": target})
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_get_goes_back_without_changing_anything(client):
    response = client.get("/theme?next=/login&theme=dark")
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert theme_cookie(response) is None


def test_the_switch_is_on_every_page_and_comes_back_to_it(app, owner):
    page = text(owner.get("/account"))
    assert 'action="/theme"' in page and 'name="next" value="/account"' in page
    assert owner.post("/theme", data={"theme": "dark", "next": "/account"}).headers["Location"] == "/account"


def test_the_switch_needs_the_form_token(make_app):
    client = make_app(WTF_CSRF_ENABLED=True).test_client()
    response = client.post("/theme", data={"theme": "dark"})
    assert response.status_code == 400 and theme_cookie(response) is None


def test_the_cookie_is_secure_behind_tls(make_app):
    client = make_app(HTTPS=True).test_client()
    client.environ_base.update(HTTP_X_FORWARDED_PROTO="https")
    login(client, "Tls")
    cookie = theme_cookie(client.post("/theme", data={"theme": "dark"}))
    assert cookie is not None and "Secure" in cookie
