"""Tracker connections: who may use them, the sealed credentials, and trackers that misbehave.

The misbehaving tracker is a small HTTP server on loopback that answers as Redmine does until a
test tells one of its answers to redirect, grow, stall or talk nonsense.
"""

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

import estimator.trackers.http as tracker_http
from estimator.extensions import db
from estimator.models import Issue, TrackerConnection
from estimator.trackers import vault
from estimator.trackers.base import TrackerError
from estimator.trackers.http import Policy, tracker_client
from tests.conftest import add_issue, create_group, login
from tests.helpers import visible

ISSUES = {
    "total_count": 2,
    "issues": [
        {
            "id": 7,
            "subject": "Log in",
            "estimated_hours": 3.0,
            "custom_fields": [
                {"id": 4, "name": "Story points", "value": "5"},
                {"id": 5, "name": "Team", "value": "Blue"},
                {"id": 6, "name": "Components", "value": ["a"], "multiple": True},
            ],
        },
        {"id": 8, "subject": "Export", "estimated_hours": None, "custom_fields": []},
    ],
}
GOOD = {
    "/users/current.json": (200, {"user": {"id": 1, "login": "ada", "firstname": "Ada", "lastname": "L"}}),
    "/custom_fields.json": (403, {}),
    "/issues.json": (200, ISSUES),
}


class FakeRedmine(BaseHTTPRequestHandler):
    """Answers as Redmine does, unless `plan` says otherwise for a path."""

    plan: dict[str, str] = {}

    def log_message(self, *_args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:  # noqa: N802  (the name http.server calls)
        path = self.path.split("?")[0]
        how = self.plan.get(path, "good")
        if how == "redirect":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif how in ("huge", "huge-unannounced"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if how == "huge":
                self.send_header("Content-Length", str(10 * 2**20))
            self.end_headers()
            chunk = b" " * 65536
            try:
                for _ in range(160):  # 10 MiB
                    self.wfile.write(chunk)
            except OSError:
                pass  # the client gave up, as it should
        elif how == "stall":
            time.sleep(3)
            self.answer(200, b"{}")
        elif how == "html":
            self.answer(200, b"<!doctype html><title>Sign in</title><p>Please sign in", "text/html")
        elif how == "many":  # 250 issues, served 100 a page as Redmine does
            query = dict(part.split("=", 1) for part in self.path.split("?", 1)[1].split("&"))
            offset, limit = int(query.get("offset", 0)), min(int(query.get("limit", 25)), 100)
            page = [
                {"id": n, "subject": f"Issue {n}"}
                for n in range(1000 + offset, 1000 + min(offset + limit, 250))
            ]
            self.answer(200, json.dumps({"total_count": 250, "offset": offset, "issues": page}).encode())
        elif how == "nonsense":
            self.answer(200, json.dumps({"user": "ada", "issues": "many"}).encode())
        else:
            status, body = GOOD.get(path, (404, {}))
            self.answer(status, json.dumps(body).encode())

    do_PUT = do_GET  # noqa: N815

    def answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass


@pytest.fixture
def tracker() -> Iterator[dict[str, Any]]:
    """The fake tracker on a free loopback port; `plan` changes its answers."""
    FakeRedmine.plan = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRedmine)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    yield {"port": port, "url": f"http://127.0.0.1:{port}", "plan": FakeRedmine.plan}
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(request) -> dict[str, Any]:
    """Allow the fake tracker (its port is read from the `tracker` fixture when the test uses it)."""
    if "tracker" not in request.fixturenames:
        return {}
    port = request.getfixturevalue("tracker")["port"]
    return {"TRACKER_ALLOWED_HOSTS": f"127.0.0.1:{port}, localhost:{port}", "TRACKER_ALLOW_PRIVATE": True}


def connect(client, group_id: int, url: str, **fields: str):
    data = {"kind": "redmine", "base_url": url, "token": "k3y-of-the-tracker", "submit": "1"} | fields
    return client.post(f"/groups/{group_id}/tracker", data=data)


def connections(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(TrackerConnection)) or 0


def issues(app) -> list[tuple[str, str, str | None]]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(Issue.key, Issue.description, Issue.tracker_ref).order_by(Issue.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


# Who may use it ------------------------------------------------------------------------------


def test_only_the_facilitator_reaches_the_tracker_pages(app, team, outsider, tracker):
    group_id, issue_id = team["group"], team["issue"]
    assert team["owner"].get(f"/groups/{group_id}/tracker").status_code == 200
    for path in (f"/groups/{group_id}/tracker", f"/groups/{group_id}/tracker/import"):
        assert team["bob"].post(path, data={"query": "x"}).status_code == 403
        assert outsider.post(path, data={"query": "x"}).status_code == 404
    assert team["bob"].get(f"/groups/{group_id}/tracker").status_code == 403
    assert team["bob"].post(f"/groups/{group_id}/tracker/delete").status_code == 403
    assert team["bob"].post(f"/issues/{issue_id}/tracker/send").status_code == 403
    assert outsider.post(f"/issues/{issue_id}/tracker/send").status_code == 404
    anonymous = app.test_client()
    assert anonymous.get(f"/groups/{group_id}/tracker").headers["Location"].startswith("/login")
    assert connect(team["bob"], group_id, tracker["url"]).status_code == 403
    assert connections(app) == 0


def test_get_on_the_post_only_routes_goes_to_the_page_with_the_form(team):
    group_id, issue_id = team["group"], team["issue"]
    owner = team["owner"]
    for path in (f"/groups/{group_id}/tracker/import", f"/groups/{group_id}/tracker/delete"):
        answer = owner.get(path)
        assert (answer.status_code, answer.headers["Location"]) == (302, f"/groups/{group_id}/tracker")
    assert owner.get(f"/issues/{issue_id}/tracker/send").headers["Location"] == f"/issues/{issue_id}"


# The operator's settings ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "too-short", "bm90IDMyIGJ5dGVz"])
def test_without_a_key_the_page_says_what_the_operator_must_set(make_app, key):
    app = make_app(TRACKER_SECRET_KEY=key)
    client = app.test_client()
    login(client, "Olivia")
    group_id = create_group(client)
    assert "TRACKER_SECRET_KEY" in visible(client.get(f"/groups/{group_id}/tracker"))
    answer = connect(client, group_id, "https://redmine.example.com")
    assert answer.status_code == 422
    assert "TRACKER_SECRET_KEY" in visible(answer)
    assert connections(app) == 0


def test_the_page_says_which_hosts_may_be_reached(make_app):
    app = make_app()
    client = app.test_client()
    login(client, "Olivia")
    group_id = create_group(client)
    assert "may reach no tracker yet" in visible(client.get(f"/groups/{group_id}/tracker"))
    app.config["TRACKER_ALLOWED_HOSTS"] = "redmine.example.com, jira.example.com:8443"
    page = visible(client.get(f"/groups/{group_id}/tracker"))
    assert "This server may reach: jira.example.com:8443, redmine.example.com" in page


# The credentials -----------------------------------------------------------------------------


def test_credentials_are_sealed_for_their_group_and_open_with_a_replaced_key(app):
    old = "dGVzdC1vbmx5LXRyYWNrZXIta2V5LTMyLWJ5dGVzISE="
    new = "bmV3LXRyYWNrZXIta2V5LW9mLTMyLWJ5dGVzLXRlc3Q="
    with app.test_request_context():
        sealed = vault.seal(4, {"token": "s3cret"})
        assert b"s3cret" not in sealed
        assert vault.unseal(4, sealed) == {"token": "s3cret"}
        with pytest.raises(vault.VaultClosed):
            vault.unseal(5, sealed)  # moved to another group's row
        app.config["TRACKER_SECRET_KEY"] = f"{new},{old}"
        assert vault.unseal(4, sealed) == {"token": "s3cret"}
        assert vault.unseal(4, vault.seal(4, {"token": "t"})) == {"token": "t"}
        app.config["TRACKER_SECRET_KEY"] = new
        with pytest.raises(vault.VaultClosed, match="enter the credentials again"):
            vault.unseal(4, sealed)


def test_credentials_are_never_shown_and_go_with_the_connection_and_the_group(app, owner, tracker):
    group_id = create_group(owner)
    assert connect(owner, group_id, tracker["url"]).status_code == 302
    page = owner.get(f"/groups/{group_id}/tracker").get_data(as_text=True)
    assert "k3y-of-the-tracker" not in page
    assert "Credentials saved; enter a new one to replace it." in visible(
        owner.get(f"/groups/{group_id}/tracker")
    )
    owner.post(f"/groups/{group_id}/tracker/import", data={"query": "webshop"})
    assert [ref for _key, _title, ref in issues(app)] == ["7", "8"]

    # Another address needs the key typed again: a saved key never goes where it was not typed for
    moved = connect(owner, group_id, f"http://localhost:{tracker['port']}", token="")
    assert moved.status_code == 422 and "enter the API key for it" in visible(moved)

    answer = owner.post(f"/groups/{group_id}/tracker/delete", follow_redirects=True)
    assert "The tracker is disconnected and its credentials are deleted." in visible(answer)
    assert connections(app) == 0
    assert [ref for _key, _title, ref in issues(app)] == [None, None]

    assert connect(owner, group_id, tracker["url"]).status_code == 302
    assert owner.post(f"/groups/{group_id}/delete").status_code == 302
    assert connections(app) == 0


# Misbehaving trackers: a clear message, nothing changed, never a 500 --------------------------


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("redirect", "The tracker redirected elsewhere (302)"),
        ("huge", "The tracker's answer was larger than 5 MiB."),
        ("huge-unannounced", "The tracker's answer was larger than 5 MiB."),
        ("html", "The tracker's answer was not JSON while checking the credentials."),
        ("nonsense", "The tracker's answer was not what Redmine sends while checking the credentials."),
    ],
)
def test_a_misbehaving_tracker_is_not_connected(app, owner, tracker, how, message):
    group_id = create_group(owner)
    tracker["plan"]["/users/current.json"] = how
    answer = connect(owner, group_id, tracker["url"])
    assert answer.status_code == 422
    assert message in visible(answer)
    assert connections(app) == 0


def test_a_tracker_that_never_answers_times_out(app, owner, tracker, monkeypatch):
    monkeypatch.setattr(tracker_http, "TOTAL_SECONDS", 0.5)
    group_id = create_group(owner)
    tracker["plan"]["/users/current.json"] = "stall"
    started = time.monotonic()
    answer = connect(owner, group_id, tracker["url"])
    assert time.monotonic() - started < 2.5
    assert answer.status_code == 422
    assert "The tracker did not answer in time while checking the credentials." in visible(answer)
    assert connections(app) == 0


@pytest.mark.parametrize("how", ["redirect", "huge", "html", "nonsense", "stall"])
def test_an_import_the_tracker_spoils_adds_nothing(app, owner, tracker, how, monkeypatch):
    monkeypatch.setattr(tracker_http, "TOTAL_SECONDS", 1.0)
    group_id = create_group(owner)
    add_issue(app, owner, group_id, "#7", "Kept as it is")
    assert connect(owner, group_id, tracker["url"]).status_code == 302
    tracker["plan"]["/issues.json"] = how
    answer = owner.post(f"/groups/{group_id}/tracker/import", data={"query": "webshop"})
    assert answer.status_code == 422
    assert "Nothing was imported." in visible(answer)
    assert issues(app) == [("#7", "Kept as it is", None)]


def test_a_host_the_operator_did_not_allow_is_not_reached(app, owner, tracker):
    group_id = create_group(owner)
    answer = connect(owner, group_id, "http://127.0.0.1:9/")
    assert answer.status_code == 422
    assert "This server may not reach 127.0.0.1:9" in visible(answer)
    assert "TRACKER_ALLOWED_HOSTS" in visible(answer)
    assert connections(app) == 0


def test_a_name_that_leads_to_loopback_is_refused_without_allow_private(app, owner, tracker):
    app.config["TRACKER_ALLOW_PRIVATE"] = False
    group_id = create_group(owner)
    answer = connect(owner, group_id, f"http://localhost:{tracker['port']}")
    assert answer.status_code == 422
    assert "leads to an address inside a private network" in visible(answer)
    assert connections(app) == 0


@pytest.mark.parametrize(
    "url",
    ["ftp://redmine.example.com", "https://user:pw@redmine.example.com", "https://r.example.com/?a=1", "r"],
)
def test_an_address_that_is_not_a_trackers_is_refused(app, owner, url):
    group_id = create_group(owner)
    answer = connect(owner, group_id, url)
    assert answer.status_code == 422
    assert "address" in visible(answer)
    assert connections(app) == 0


# The guarded client itself -------------------------------------------------------------------


def guarded(
    addresses: list[str], monkeypatch, allow_private: bool = False
) -> tuple[httpx.Client, list[httpx.Request]]:
    """A client allowed to reach tracker.example, which resolves to `addresses`; what reaches the
    network is recorded instead of sent."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    def getaddrinfo(host, port, *args, **kwargs):
        assert host == "tracker.example"
        family = {4: socket.AF_INET, 6: socket.AF_INET6}
        return [(family[6 if ":" in a else 4], socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    policy = Policy.from_config("tracker.example", allow_private)
    return tracker_client(policy, httpx.MockTransport(answer)), seen


def test_the_client_connects_to_the_address_it_checked_with_the_trackers_name(app, monkeypatch):
    client, seen = guarded(["93.184.215.14"], monkeypatch)
    with client:
        assert client.get("https://tracker.example/users/current.json").json() == {"ok": True}
    (request,) = seen
    assert request.url.host == "93.184.215.14"
    assert request.headers["Host"] == "tracker.example"
    assert request.extensions["sni_hostname"] == "tracker.example"


@pytest.mark.parametrize(
    "addresses",
    [["10.0.0.5"], ["93.184.215.14", "127.0.0.1"], ["169.254.169.254"], ["::1"], ["::ffff:192.168.1.1"],
     ["0.0.0.0"], ["224.0.0.1"], ["100.64.0.1"], ["fd00::1"], ["240.0.0.1"]],
)  # fmt: skip
def test_the_client_refuses_names_that_lead_inside(app, monkeypatch, addresses):
    client, seen = guarded(addresses, monkeypatch)
    with app.test_request_context(), client, pytest.raises(TrackerError, match="private network"):
        client.get("https://tracker.example/")
    assert seen == []


def test_allow_private_lets_an_internal_tracker_through(app, monkeypatch):
    client, seen = guarded(["10.0.0.5"], monkeypatch, allow_private=True)
    with client:
        client.get("http://tracker.example/")
    assert seen[0].url.host == "10.0.0.5"


@pytest.mark.parametrize(
    "url",
    ["https://tracker.example:8443/", "https://other.example/", "http://tracker.example.evil.com/",
     "https://93.184.215.14/"],
)  # fmt: skip
def test_the_client_reaches_only_the_allowed_hosts_and_ports(app, monkeypatch, url):
    client, seen = guarded(["93.184.215.14"], monkeypatch)
    with app.test_request_context(), client, pytest.raises(TrackerError, match="TRACKER_ALLOWED_HOSTS"):
        client.get(url)
    assert seen == []


def certificate(name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for name, and its key, in PEM."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture
def tls_tracker(tmp_path) -> Iterator[dict[str, Any]]:
    """An https tracker on loopback whose certificate names tracker.test; it records the name each
    connection asked for (SNI) and each request's Host header."""
    import ssl

    cert, key = certificate("tracker.test")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    seen: dict[str, list[str]] = {"sni": [], "host": []}
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    context.sni_callback = lambda _socket, name, _context: seen["sni"].append(str(name))

    class Recording(FakeRedmine):
        def do_GET(self) -> None:  # noqa: N802
            seen["host"].append(self.headers["Host"])
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"port": server.server_address[1], "cert": cert, "seen": seen}
    server.shutdown()
    server.server_close()


def test_https_keeps_the_trackers_name_for_the_certificate_and_the_host(app, tls_tracker, monkeypatch):
    """The client connects to the address it resolved, yet TLS asks for and checks the tracker's
    name, and the request names it in Host: the pinning costs HTTPS nothing."""
    import ssl

    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return real("127.0.0.1" if host in ("tracker.test", "elsewhere.test") else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    port = tls_tracker["port"]
    policy = Policy.from_config(f"tracker.test:{port}, elsewhere.test:{port}", allow_private=True)
    trusting = ssl.create_default_context(cadata=tls_tracker["cert"].decode())
    with tracker_client(policy, httpx.HTTPTransport(verify=trusting)) as client:
        answer = client.get(f"https://tracker.test:{port}/users/current.json")
        assert answer.json()["user"]["login"] == "ada"
        assert tls_tracker["seen"] == {"sni": ["tracker.test"], "host": [f"tracker.test:{port}"]}
        # The same address under a name the certificate does not carry is refused by TLS
        with pytest.raises(httpx.ConnectError, match="certificate"):
            client.get(f"https://elsewhere.test:{port}/users/current.json")


def test_an_import_updates_titles_by_look_and_stops_at_the_group_limit(app, owner, tracker):
    """#7 is in the group already: its title follows the tracker's and nothing else changes; #8
    would be the 1,001st issue and is skipped, saying why."""
    from estimator.groups.rules import NewIssue, add_issues
    from estimator.models import Group

    group_id = create_group(owner)
    with app.app_context():
        group = db.session.get_one(Group, group_id)
        add_issues(
            group, [NewIssue("#7", "Old title")] + [NewIssue(f"X-{number}", "") for number in range(999)]
        )
        db.session.commit()
    assert connect(owner, group_id, tracker["url"]).status_code == 302
    answer = owner.post(f"/groups/{group_id}/tracker/import", data={"query": "webshop"})
    assert answer.status_code == 200
    page = visible(answer)
    assert "Added 0, updated 1 titles, skipped 1." in page
    assert "#8 The group is full: a group holds at most 1000 issues." in page
    assert issues(app)[0] == ("#7", "Log in", "7")


def test_a_key_the_group_has_in_another_case_or_look_is_the_same_issue(app, owner):
    from estimator.groups.rules import NewIssue, add_issues
    from estimator.models import Group
    from estimator.trackers.base import TrackerIssue
    from estimator.trackers.sync import take_in

    group_id = create_group(owner)
    with app.test_request_context():
        group = db.session.get_one(Group, group_id)
        add_issues(group, [NewIssue("WEB-1", "Old"), NewIssue("WEB-2", "Same")])
        found = [
            TrackerIssue("web-1", "New", "", "5", "10001"),
            TrackerIssue("WЕB-2", "Same", "", None, "10002"),  # a Cyrillic Е
            TrackerIssue("WEB-3", "Third", "", "5", "10003"),
        ]
        result = take_in(group, found)
        db.session.commit()
    assert (result.added, result.updated, [skip.key for skip in result.skipped]) == (1, 1, ["WЕB-2"])
    assert result.estimated == 1
    assert issues(app) == [("WEB-1", "New", "10001"), ("WEB-2", "Same", "10002"), ("WEB-3", "Third", "10003")]


def test_redmine_fields_are_read_from_the_issues_when_the_list_is_for_administrators(app, owner, tracker):
    group_id = create_group(owner)
    answer = connect(owner, group_id, tracker["url"], test="1", submit="")
    page = visible(answer)
    assert "Connected to Redmine as Ada L (ada)." in page
    assert "Estimated time (hours)" in page and "Story points" in page
    options = re.findall(r"<option[^>]*>([^<]*)</option>", answer.get_data(as_text=True))
    assert "Story points" in options and "Team" not in options and "Components" not in options
    assert connections(app) == 0
    assert connect(owner, group_id, tracker["url"], estimate_field="cf_4").status_code == 302
    owner.post(f"/groups/{group_id}/tracker/import", data={"query": "webshop"})
    with app.app_context():
        estimates = db.session.execute(sa.select(Issue.key, Issue.final_estimate).order_by(Issue.id)).all()
    assert [tuple(row) for row in estimates] == [("#7", "5"), ("#8", None)]  # Story points, not hours


def test_redmine_issues_are_read_page_by_page(app, owner, tracker):
    group_id = create_group(owner)
    assert connect(owner, group_id, tracker["url"]).status_code == 302
    tracker["plan"]["/issues.json"] = "many"
    page = visible(owner.post(f"/groups/{group_id}/tracker/import", data={"query": "webshop 3"}))
    assert "Added 250, updated 0 titles, skipped 0." in page
    assert [key for key, _title, _ref in issues(app)][::100] == ["#1000", "#1100", "#1200"]


def test_a_send_the_tracker_refuses_is_a_warning_and_the_estimate_stays(app, owner, tracker):
    group_id = create_group(owner)
    assert connect(owner, group_id, tracker["url"], estimate_field="estimated_hours").status_code == 302
    owner.post(f"/groups/{group_id}/tracker/import", data={"query": "webshop"})
    with app.app_context():
        issue_id = db.session.scalar(sa.select(Issue.id).where(Issue.key == "#7"))
    tracker["plan"]["/issues/7.json"] = "html"
    page = visible(owner.post(f"/issues/{issue_id}/tracker/send", follow_redirects=True))
    assert "The estimate was not sent. The tracker's answer was not JSON while writing the estimate." in page
    assert issues(app)[0] == ("#7", "Log in", "7")
    with app.app_context():
        assert db.session.get_one(Issue, issue_id).final_estimate == "3"
