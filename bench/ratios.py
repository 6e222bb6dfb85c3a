"""What live pages cost next to bare Flask: requests per second and CPU per request, measured by wrk.

    python bench/ratios.py [--seconds 5] [--connections 32] [--repeat 3] [--workers 2] [--no-access-log]

Serves a minimal Flask app (bench/bare.py) and Estimator side by side, both with run.py's gunicorn
settings (gevent workers, 10,000 connections each, an access log), and loads one of them at a time
with wrk over loopback. Endpoints: an unchanged poll of an issue's JSON (304), the issue's JSON
(200) and the group page, as the facilitator of a group of 31 members and 200 issues sees them; the
group page of a group at the limits (1,000 issues, 200 members); and the room and the issue's
status page as a member of the first group sees them. The facilitator has put the polled issue in
the room (POST /issues/<id>/start), and 10 members, the facilitator and that member among them,
have voted on it (sealed ballots, cast through the vote URL as the page's script does).

Each endpoint is loaded between two runs of bare Flask (sent the same headers), so that the
machine's drift shows: bare Flask, Estimator, bare Flask, and with --repeat N Estimator and bare
Flask again until Estimator has run N times. Each row gives the median req/s of Estimator's runs,
of the bare runs just before them and of those just after them, and beside each the server's CPU
time per request: what gunicorn's master and workers used from the run's start until they had
served the requests still in flight when it ended (one per connection), over the requests wrk
counted and those; a PostgreSQL server's own processes are not in it. The next run starts once the
server has settled. The ratio is the median, over Estimator's runs, of its req/s to the mean of
the two bare runs around it.

The polls have no goal: their rows say what they cost. The group page's goal (at least 0.1x bare
Flask, at most 10 SQL statements) is judged met or missed only when the verdict is the same
against either bare run around each of Estimator's and no request failed.

Below the table: the SQL statements and bytes of a group page, the room, the status page, the
issue's JSON and a 304 (counted in this process with Flask's test client), for both groups.

Uses DATABASE_URL when set (an existing, migrated or empty PostgreSQL database), else a fresh
SQLite file. wrk, both servers, the database and this script share the machine's cores: anything
else running there moves the figures, which is what the bare runs around each row show.
"""

import argparse
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from bench.fixtures import (  # noqa: E402
    USER_AGENT,
    Bench,
    Login,
    cpu_seconds,
    free_port,
    gunicorn_command,
    median,
    raise_open_file_limit,
    serve,
    stop,
)
from estimator.extensions import db  # noqa: E402
from estimator.models import Group, Issue  # noqa: E402

#: The least share of bare Flask's requests per second the group page should reach, and the most SQL
#: statements it should take. The polls have no goal: what they cost is reported.
PAGE_GOAL = 0.1
PAGE_QUERIES = 10
#: The pause before the last 304 counted: long enough that no process still trusts the group's
#: version it read for the earlier requests, so the 304 reads it again.
PAUSE = 1.0


@dataclass
class Run:
    """One wrk run: requests per second, requests, answers wrk counted as errors, server CPU, and
    the requests still in flight when wrk stopped (one per connection): the server serves them
    after it, and `cpu` includes them."""

    rate: float
    requests: int
    bad: int
    cpu: float
    in_flight: int

    @property
    def cpu_ms(self) -> float:
        """The server's CPU time per request served, in ms; NaN when the run answered nothing."""
        return 1000 * self.cpu / (self.requests + self.in_flight) if self.requests else float("nan")


@dataclass
class Row:
    """One endpoint's runs: Estimator's, and bare Flask's around them (bare[i] ran just before
    app[i], bare[i + 1] just after it)."""

    name: str
    app: list[Run]
    bare: list[Run]
    goal: bool = False

    def ratio(self, bare: Callable[[float, float], float]) -> float:
        """The median, over Estimator's runs, of its req/s to `bare` of the two bare runs around it."""
        return median(
            [
                run.rate / reference if (reference := bare(before.rate, after.rate)) else float("nan")
                for run, before, after in zip(self.app, self.bare[:-1], self.bare[1:], strict=True)
            ]
        )


def summary(runs: list[Run]) -> tuple[float, float]:
    """The median req/s and the median CPU ms per request of the runs that answered anything."""
    answered = [run.cpu_ms for run in runs if run.requests]  # a page slower than the run answers nothing
    return median([run.rate for run in runs]), median(answered) if answered else float("nan")


def mean(first: float, second: float) -> float:
    return (first + second) / 2


@dataclass(frozen=True)
class Target:
    """A group to load: its id, the issue polled (the room's current one), a login of its
    facilitator and one of a member who voted on that issue."""

    group_id: int
    issue_id: int
    login: Login
    member: Login


def make_group(bench: Bench, prefix: str, members: int, issues: int, votes: int) -> Target:
    """A group of `members` people (the facilitator included) and `issues` issues; the facilitator
    puts the first issue in the room and `votes` of them (at least two) vote on it, so its round is
    open with sealed ballots."""
    with bench.app.app_context():
        users = bench.users(members, prefix)
        group = bench.group(prefix, users[0], users[1:], issues)
        db.session.commit()
        first = db.session.scalar(sa.select(Issue).where(Issue.group_id == group.id).order_by(Issue.position))
        assert first is not None
        group_id, issue_id = group.id, first.id
        logins = bench.logins(users[:votes])
    post(bench, logins[0], f"/issues/{issue_id}/start", {}, 302)  # to the room
    for login in logins:  # as the page's script votes
        post(bench, login, f"/issues/{issue_id}/estimate", {"value": "5"}, 200)
    with bench.app.app_context():
        current = db.session.scalar(sa.select(Group.current_issue_id).where(Group.id == group_id))
        assert current == issue_id, current
    return Target(group_id, issue_id, logins[0], logins[1])


def post(bench: Bench, login: Login, path: str, data: dict[str, str], status: int) -> None:
    """A form sent as `login` with its CSRF token, in this process; it must answer `status`."""
    client = bench.app.test_client()
    client.set_cookie("session", login.cookie)
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json", "X-CSRFToken": login.csrf}
    response = client.post(path, data={**data, "csrf_token": login.csrf}, headers=headers)
    if response.status_code != status:
        raise RuntimeError(f"{path} answered {response.status_code}, not {status}: {response.data[:300]!r}")


def count_statements(bench: Bench, target: Target) -> dict[str, Any]:
    """Size and SQL statements of a group page, the issue's JSON and a 304 (as the facilitator) and
    of the room and the issue's status page (as a member), in this process."""
    client = bench.app.test_client()
    client.set_cookie("session", target.login.cookie)  # the test client's own jar overrides a Cookie header
    member = bench.app.test_client()
    member.set_cookie("session", target.member.cookie)
    headers = {"User-Agent": USER_AGENT}
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.strip().upper() not in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"):
            statements.append(statement)

    with bench.app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        found: dict[str, Any] = {}

        def counted(path: str, by: Any = client, **extra: str) -> tuple[int, bytes, Any]:
            statements.clear()
            response = by.get(path, headers={**headers, **extra})
            found_statements = len(statements)
            return found_statements, response.data, response

        client.get(f"/groups/{target.group_id}", headers=headers)  # templates compiled, caches warm
        found["page_queries"], page, response = counted(f"/groups/{target.group_id}")
        assert response.status_code == 200, response.status_code
        found["page_bytes"] = len(page)
        for key, path in (
            ("room", f"/groups/{target.group_id}/room"),
            ("status", f"/issues/{target.issue_id}"),
        ):
            member.get(path, headers=headers)  # templates compiled
            found[f"{key}_queries"], page, response = counted(path, member)
            assert response.status_code == 200, response.status_code
            found[f"{key}_bytes"] = len(page)
        found["json_cold_queries"], body, response = counted(f"/api/issues/{target.issue_id}")
        assert response.status_code == 200, response.status_code
        # Later 200s find the JSON built once per version, as wrk's do.
        found["json_queries"], body, response = counted(f"/api/issues/{target.issue_id}")
        assert response.status_code == 200, response.status_code
        found["json_bytes"] = len(body)
        tag = response.headers["ETag"]
        counted(f"/api/issues/{target.issue_id}", **{"If-None-Match": tag})
        found["poll_queries"], _, response = counted(
            f"/api/issues/{target.issue_id}", **{"If-None-Match": tag}
        )
        assert response.status_code == 304, response.status_code
        time.sleep(PAUSE)
        found["poll_stale_queries"], _, response = counted(
            f"/api/issues/{target.issue_id}", **{"If-None-Match": tag}
        )
        assert response.status_code == 304, response.status_code
        return found
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def wrk(url: str, headers: dict[str, str], seconds: float, connections: int, server: int) -> Run:
    """One wrk run against url. The server's CPU time is read from /proc before it and once the
    server has finished the requests wrk left in flight, so they do not weigh on the next run."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    before = cpu_seconds(server)
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    cpu = settled(server) - before
    rate = float(_field(r"Requests/sec:\s+([\d.]+)", output))
    requests = int(_field(r"(\d+) requests in", output))
    bad = int(_field(r"Non-2xx or 3xx responses: (\d+)", output, "0"))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    bad += sum(map(int, errors.groups())) if errors else 0
    return Run(rate, requests, bad, cpu, connections)


def settled(server: int, interval: float = 0.25, timeout: float = 60) -> float:
    """The server's CPU time once it has settled: when it grew by less than a tenth of a core over
    `interval` (an idle server's background work is far less), or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(server)
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = cpu_seconds(server)
        if now - last < interval / 10:
            return now
        last = now
    return last


def _field(pattern: str, text: str, default: str | None = None) -> str:
    match = re.search(pattern, text)
    if match is None:
        if default is None:
            raise RuntimeError(f"wrk said something unexpected:\n{text}")
        return default
    return match.group(1)


def measure(
    name: str, url: str, headers: dict[str, str], args: argparse.Namespace, app: int, bare: str, bare_pid: int
) -> Row:
    """Bare Flask, then Estimator at url and bare Flask again, args.repeat times, each with these
    headers; app and bare_pid are the servers' process ids."""
    row = Row(name, [], [wrk(bare, headers, args.seconds, args.connections, bare_pid)])
    for _ in range(args.repeat):
        row.app.append(wrk(url, headers, args.seconds, args.connections, app))
        row.bare.append(wrk(bare, headers, args.seconds, args.connections, bare_pid))
    runs = [f"bare {row.bare[0].rate:.0f}"]
    for run, after in zip(row.app, row.bare[1:], strict=True):
        runs += [f"Estimator {run.rate:.0f}", f"bare {after.rate:.0f}"]
    print(f"  {name}: " + ", ".join(runs) + " req/s", flush=True)
    return row


def check(url: str, headers: dict[str, str], status: int) -> dict[str, str]:
    """One request with urllib: it must answer `status`, and a poll must not set the cookie."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            got, answer = response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        got, answer = error.code, dict(error.headers)
    if got != status:
        raise RuntimeError(f"{url} answered {got}, not {status}")
    if "/api/" in url and "Set-Cookie" in answer:
        raise RuntimeError(f"{url} set a cookie")
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5, help="length of one wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk's open connections")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="Estimator's wrk runs per endpoint, each between two of bare Flask (medians count)",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, as run.py's default")
    parser.add_argument("--no-access-log", action="store_true", help="serve without run.py's access log")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    raise_open_file_limit()
    bench = Bench()
    try:
        run(bench, args)
    finally:
        bench.close()


def run(bench: Bench, args: argparse.Namespace) -> None:
    started = time.monotonic()
    team = make_group(bench, "Ratio", members=31, issues=200, votes=10)
    full = make_group(bench, "Limit", members=200, issues=1000, votes=10)
    counts = {"team": count_statements(bench, team), "full": count_statements(bench, full)}
    print(
        f"{bench.database}; {args.workers} gevent workers; wrk -t2 -c{args.connections} -d{args.seconds:g}s; "
        f"per endpoint bare Flask, then Estimator and bare Flask again, {args.repeat} "
        f"time{'' if args.repeat == 1 else 's'}; data made in {time.monotonic() - started:.1f} s",
        flush=True,
    )

    def access_log(name: str) -> Path | None:
        return None if args.no_access_log else bench.workdir / name

    port = free_port()
    bare = f"http://127.0.0.1:{port}/"
    bare_server = serve(
        gunicorn_command("bench.bare:app", port, args.workers, access_log("bare-access.log")),
        bench.environment,
        bench.workdir / "bare.log",
        bare,
    )
    try:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = serve(
            gunicorn_command("estimator:create_app()", port, args.workers, access_log("access.log")),
            bench.environment,
            bench.workdir / "estimator.log",
            base + "/healthz",
        )
        try:
            rows = load(base, team, full, args, server.pid, bare, bare_server.pid)
        finally:
            stop(server)
    finally:
        stop(bare_server)
    report(rows, counts)


def load(
    base: str, team: Target, full: Target, args: argparse.Namespace, app: int, bare: str, bare_pid: int
) -> list[Row]:
    """Check what each endpoint answers, then measure them one after the other."""
    headers = team.login.headers
    issue = f"{base}/api/issues/{team.issue_id}"
    tag = check(issue, headers, 200)["ETag"]
    check(issue, {**headers, "If-None-Match": tag}, 304)
    check(f"{base}/groups/{team.group_id}", headers, 200)
    check(f"{base}/groups/{full.group_id}", full.login.headers, 200)
    room = f"{base}/groups/{team.group_id}/room"
    status = f"{base}/issues/{team.issue_id}"
    check(room, team.member.headers, 200)
    check(status, team.member.headers, 200)
    endpoints = [
        ("issue JSON, unchanged (304)", issue, {**headers, "If-None-Match": tag}),
        ("issue JSON (200)", issue, headers),
        ("group page", f"{base}/groups/{team.group_id}", headers),
        ("group page, at the limits", f"{base}/groups/{full.group_id}", full.login.headers),
        ("room, as a member", room, team.member.headers),
        ("issue status page, as a member", status, team.member.headers),
    ]
    rows = [measure(name, url, sent, args, app, bare, bare_pid) for name, url, sent in endpoints]
    rows[2].goal = True
    return rows


def report(rows: list[Row], counts: dict[str, dict[str, Any]]) -> None:
    """The table, the group page's goal beside it, and the SQL statements counted in-process."""
    print()
    print("req/s and the server's CPU ms per request; the ratio is Estimator's req/s to the mean of the")
    print("bare Flask runs just before and just after it (medians over the runs)")
    print()
    cells = ("Estimator", "bare Flask before", "bare Flask after")
    print(f"{'':<32}|" + "|".join(f" {cell:^21} " for cell in cells) + f"|{'':9}|")
    print(f"{'endpoint':<32}|" + f" {'req/s':>7} {'CPU ms/req':>13} |" * 3 + f" {'ratio':>7} | goal")
    print(f"{'-' * 32}|" + f"{'-' * 23}|" * 3 + f"{'-' * 9}|{'-' * 48}")
    for row in rows:
        figures = [summary(row.app), summary(row.bare[:-1]), summary(row.bare[1:])]
        line = f"{row.name:<32}|" + "".join(f" {rate:7.0f} {cpu:13.2f} |" for rate, cpu in figures)
        line += f" {row.ratio(mean):6.3f}× | "  # the slowest pages are under 0.01×
        if row.goal:
            line += verdict(row, counts["team"]["page_queries"])
        errors = [
            f"{bad} from {server}"
            for server, bad in (
                ("Estimator", sum(run.bad for run in row.app)),
                ("bare Flask", sum(run.bad for run in row.bare)),
            )
            if bad
        ]
        print((line + (f" (errors: {', '.join(errors)})" if errors else "")).rstrip())
    print()
    for key, label in (
        ("team", "31 members, 200 issues"),
        ("full", "200 members, 1,000 issues (the limits)"),
    ):
        c = counts[key]
        print(
            f"group of {label}: page {c['page_bytes']:,} bytes in {statements(c['page_queries'])}; "
            f"room {c['room_bytes']:,} bytes in {statements(c['room_queries'])}; "
            f"status page {c['status_bytes']:,} bytes in {statements(c['status_queries'])}; "
            f"issue JSON {c['json_bytes']:,} bytes in {c['json_queries']} "
            f"({c['json_cold_queries']} when first built for a version); 304 in {c['poll_queries']} "
            f"({c['poll_stale_queries']} after a pause of {PAUSE:g} s)"
        )
    print("(statements counted with a before_cursor_execute listener, transaction control left out)")


def statements(count: int) -> str:
    return f"{count} SQL statement{'' if count == 1 else 's'}"


def verdict(row: Row, queries: int) -> str:
    """Whether the group page met its goal: only said when it holds against both bare runs around
    each of Estimator's (medians over the runs) and nothing failed."""
    text = f"≥ {PAGE_GOAL}×, ≤ {PAGE_QUERIES} statements: "
    if any(run.bad for run in row.app + row.bare):
        return text + "no verdict (requests failed)"
    if queries > PAGE_QUERIES:
        return text + f"MISSED ({queries} statements)"
    if row.ratio(max) >= PAGE_GOAL:
        return text + "met"
    if row.ratio(min) < PAGE_GOAL:
        return text + f"MISSED ({row.ratio(mean) / PAGE_GOAL:.0%} of the goal)"
    return text + "no verdict (met against one bare run, missed against the other)"


if __name__ == "__main__":
    main()
