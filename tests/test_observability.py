"""Observability: JSON log lines with a request id, no card in any log line, and /metrics."""

from __future__ import annotations

import io
import json
import logging
import re
import urllib.request
from typing import Any

import pytest

from estimator.observability import LOG_HANDLER_NAME, REQUEST_ID_HEADER
from tests.conftest import add_issue, create_group, join, vote
from tests.server import start_gunicorn, stop

# Cards no timestamp, id or word of the app could contain by chance.
SECRET_CARDS = ["QZXJ", "WVKP", "JQZV"]


def app_log_handler(app) -> logging.StreamHandler[io.StringIO]:
    """The handler that writes the app's log lines, pointed at a buffer the test can read."""
    handler = next(h for h in app.logger.handlers if h.get_name() == LOG_HANDLER_NAME)
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(io.StringIO())
    return handler


def json_lines(handler) -> list[dict[str, Any]]:
    """Every line the handler wrote, each parsed as one JSON object."""
    return [json.loads(line) for line in handler.stream.getvalue().splitlines()]


@pytest.fixture
def failing_app(make_app):
    """A JSON-logging app with one route that fails, so a request logs a line (its traceback)."""
    # Not propagated: the failure is answered by the 500 page and logged, as in production.
    app = make_app(LOG_FORMAT="json", PROPAGATE_EXCEPTIONS=False)

    def broken() -> str:
        raise RuntimeError("deliberate failure")

    app.add_url_rule("/broken-for-test", view_func=broken)
    return app


def test_log_lines_are_json_with_the_request_id_of_the_response(failing_app):
    handler = app_log_handler(failing_app)
    response = failing_app.test_client().get("/broken-for-test")
    assert response.status_code == 500
    request_id = response.headers[REQUEST_ID_HEADER]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    lines = json_lines(handler)
    assert lines, "the failure was not logged"
    line = lines[0]
    assert {"timestamp", "level", "logger", "message", "request_id"} <= set(line)
    assert line["level"] == "ERROR" and line["logger"] == "estimator"
    assert line["request_id"] == request_id
    assert "deliberate failure" in line["exc_info"]


def test_a_sane_request_id_from_the_caller_is_kept(failing_app):
    handler = app_log_handler(failing_app)
    response = failing_app.test_client().get("/broken-for-test", headers={REQUEST_ID_HEADER: "lb-7f3a.2_x"})
    assert response.headers[REQUEST_ID_HEADER] == "lb-7f3a.2_x"
    assert json_lines(handler)[0]["request_id"] == "lb-7f3a.2_x"


@pytest.mark.parametrize(
    "hostile",
    [
        "x" * 65,
        "abc def",
        'a"}, {"level": "INFO',
        "id\u202etxt",
        "../../etc",  # slashes are not in the alphabet
        "",
    ],
)
def test_a_hostile_request_id_is_replaced(failing_app, hostile):
    handler = app_log_handler(failing_app)
    response = failing_app.test_client().get("/broken-for-test", headers={REQUEST_ID_HEADER: hostile})
    request_id = response.headers[REQUEST_ID_HEADER]
    assert request_id != hostile and re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert json_lines(handler)[0]["request_id"] == request_id


def test_every_request_gets_its_own_id(client):
    first, second = client.get("/login"), client.get("/login")
    assert first.headers[REQUEST_ID_HEADER] != second.headers[REQUEST_ID_HEADER]


def test_text_log_lines_carry_the_request_id_too(make_app):
    app = make_app(PROPAGATE_EXCEPTIONS=False)

    def broken() -> str:
        raise RuntimeError("deliberate failure")

    app.add_url_rule("/broken-for-test", view_func=broken)
    handler = app_log_handler(app)
    response = app.test_client().get("/broken-for-test")
    first_line = handler.stream.getvalue().splitlines()[0]
    assert f"[{response.headers[REQUEST_ID_HEADER]}]" in first_line and "ERROR estimator" in first_line


def test_an_unknown_log_format_is_refused_at_start(make_app):
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        make_app(LOG_FORMAT="xml")


def test_no_card_reaches_any_log_line_while_voting(make_app, caplog):
    app = make_app(LOG_FORMAT="json")

    @app.before_request
    def log_each_request() -> None:
        # A neutral line in every request, so every vote passes through the log pipeline: request id
        # filter and JSON formatter must add nothing of the request's body or form to it.
        app.logger.info("handling a request")

    handler = app_log_handler(app)
    caplog.set_level(logging.DEBUG)
    owner, bob, carol, dave = (app.test_client() for _ in range(4))
    for client, nickname in ((owner, "Olivia"), (bob, "Bob"), (carol, "Carol"), (dave, "Dave")):
        assert client.post("/login", data={"nickname": nickname}).status_code == 302
    response = owner.post("/groups", data={"name": "Team", "deck": "custom", "cards": " ".join(SECRET_CARDS)})
    assert response.status_code == 302
    group_id = int(response.headers["Location"].rsplit("/", 1)[1])
    for member in (bob, carol, dave):
        assert join(app, member, group_id).status_code == 302
    issue_id = add_issue(app, owner, group_id)
    for client, card in zip((dave, bob, carol), SECRET_CARDS, strict=True):
        assert vote(client, issue_id, card).status_code == 302
    vote(bob, issue_id, "not-a-card-QZXJ")  # a refused vote is not logged either
    assert owner.post(f"/issues/{issue_id}/reveal").status_code == 302
    assert owner.get(f"/api/issues/{issue_id}").get_json()["state"] == "revealed"
    lines = json_lines(handler)
    assert len(lines) >= 5 and all(re.fullmatch(r"[0-9a-f]{32}", line["request_id"]) for line in lines)
    logged = [record.getMessage() + repr(vars(record)) for record in caplog.records]
    logged.append(handler.stream.getvalue())
    for card in SECRET_CARDS:
        assert not [line for line in logged if card in line], f"card {card} in a log line"


# Metrics ---------------------------------------------------------------------------------------


def test_metrics_are_off_by_default(client):
    response = client.get("/metrics")
    assert response.status_code == 404
    assert "flask_http" not in response.get_data(as_text=True)


@pytest.fixture
def metered(make_app):
    """An app with metrics on."""
    return make_app(METRICS_ENABLED=True)


def test_metrics_count_requests_by_endpoint_without_names_or_ids(metered):
    app = metered
    owner, bob = app.test_client(), app.test_client()
    assert owner.post("/login", data={"nickname": "Olivia"}).status_code == 302
    assert bob.post("/login", data={"nickname": "Bobby McBob"}).status_code == 302
    group_id = create_group(owner, name="Secret Project Falcon")
    assert join(app, bob, group_id).status_code == 302
    issue_id = add_issue(app, owner, group_id, key="FALCON-4711")
    for _ in range(3):
        assert owner.get(f"/issues/{issue_id}").status_code == 200
    scraper = app.test_client()
    response = scraper.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "Set-Cookie" not in response.headers  # a scrape starts no session
    body = response.get_data(as_text=True)
    status_count = re.search(
        r'^flask_http_request_duration_seconds_count\{(?=[^}]*endpoint="voting\.status")'
        r'(?=[^}]*method="GET")(?=[^}]*status="200")[^}]*\} (\S+)$',
        body,
        re.MULTILINE,
    )
    assert status_count and float(status_count.group(1)) == 3.0, body
    assert re.search(r'^flask_http_request_total\{[^}]*status="200"[^}]*\} ', body, re.MULTILINE)
    labels = " ".join(re.findall(r"\{([^}]*)\}", body))
    for private in ("Olivia", "Bobby", "Falcon", "FALCON", f"/issues/{issue_id}", f"/groups/{group_id}"):
        assert private not in labels
    label_names = set(re.findall(r'(\w+)="', labels))
    assert not label_names & {"user", "nickname", "group", "issue", "path", "group_id", "issue_id"}


def test_a_scrape_is_not_counted_as_a_request(metered):
    scraper = metered.test_client()
    for _ in range(3):
        assert scraper.get("/metrics").status_code == 200
    body = scraper.get("/metrics").get_data(as_text=True)
    assert 'endpoint="metrics"' not in body
    assert not re.search(r"^flask_http_request_total\{", body, re.MULTILINE)


def test_an_unknown_path_is_counted_without_its_path(metered):
    client = metered.test_client()
    assert client.get("/no/such/page/12345").status_code == 404
    body = client.get("/metrics").get_data(as_text=True)
    assert 'endpoint="unmatched"' in body and "12345" not in body


@pytest.mark.server
def test_gunicorn_workers_share_their_counts_and_log_json(schema, key_store_uri, tmp_path):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    log = tmp_path / "gunicorn.log"
    process, url = start_gunicorn(
        schema,
        log,
        BALLOT_KEY_STORE_URI=key_store_uri,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        METRICS_ENABLED="1",
        LOG_FORMAT="json",
        GUNICORN_CMD_ARGS="--access-logfile - --logger-class estimator.observability.GunicornJsonLogger",
    )
    try:
        for _ in range(30):
            request = urllib.request.Request(url + "/login", headers={REQUEST_ID_HEADER: "probe-1"})
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.headers[REQUEST_ID_HEADER] == "probe-1"
        with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
            body = response.read().decode()
        assert any(metrics_dir.iterdir()), "the workers wrote no metrics files"
    finally:
        stop(process)
    count = re.search(
        r'^flask_http_request_duration_seconds_count\{(?=[^}]*endpoint="auth\.login")[^}]*\} (\S+)$',
        body,
        re.MULTILINE,
    )
    # 30 probes, and the start-up check of start_gunicorn asked for /login too.
    assert count and float(count.group(1)) >= 30.0, body
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert all({"timestamp", "level", "logger", "message", "request_id"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    probes = [line for line in access if line["request_id"] == "probe-1"]
    assert len(probes) == 30 and all(line["path"] == "/login" for line in probes)
    assert any(line["logger"] == "gunicorn.error" for line in lines), "the master's lines are missing"
