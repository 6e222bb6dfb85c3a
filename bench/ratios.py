"""What live pages cost next to bare Flask: requests per second and CPU per request, measured by wrk.

    python bench/ratios.py [--seconds 5] [--connections 32] [--repeat 3] [--workers 2]

Serves a minimal Flask app (bench/bare.py) and then Estimator with the same gunicorn settings as
run.py (gevent workers, 10,000 connections each, an access log) and loads each with wrk over
loopback: an unchanged poll of an issue's JSON (304), the issue's JSON (200) and the group page,
for a group of 31 members and 200 issues whose polled issue holds 10 sealed votes. Prints the
median of --repeat runs, the server's CPU time per request, and how many SQL statements a group
page and a 304 take (counted in this process with Flask's test client), also for a group at the
limits (1,000 issues, 200 members).

Uses DATABASE_URL when set (an existing, migrated or empty PostgreSQL database), else a fresh
SQLite file. wrk, the server and this script share the machine's cores.
"""

import argparse
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
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
from estimator.models import Issue  # noqa: E402

#: The least share of bare Flask's requests per second each endpoint should reach.
GOALS = {"poll": 0.7, "json": 0.4, "page": 0.1}
#: The most SQL statements a group page should take.
PAGE_QUERIES = 10
#: The pause before the last 304 counted: long enough that no process still trusts the group's
#: version it read for the earlier requests, so the 304 reads it again.
PAUSE = 1.0


@dataclass
class Run:
    """One wrk run: requests per second, requests, answers wrk counted as errors, server CPU."""

    rate: float
    requests: int
    bad: int
    cpu: float


@dataclass(frozen=True)
class Target:
    """A group to load: its id, the issue polled, and a login of its facilitator."""

    group_id: int
    issue_id: int
    login: Login


def make_group(bench: Bench, prefix: str, members: int, issues: int, votes: int) -> Target:
    """A group of `members` people (the facilitator included) and `issues` issues; `votes` of them
    vote on the first issue, so its round is open with sealed ballots."""
    with bench.app.app_context():
        users = bench.users(members, prefix)
        group = bench.group(prefix, users[0], users[1:], issues)
        db.session.commit()
        first = db.session.scalar(sa.select(Issue).where(Issue.group_id == group.id).order_by(Issue.position))
        assert first is not None
        group_id, issue_id = group.id, first.id
        logins = bench.logins(users[:votes])
    for login in logins:  # as the page's script votes
        post(bench, login, f"/issues/{issue_id}/estimate", {"value": "5"}, 200)
    return Target(group_id, issue_id, logins[0])


def post(bench: Bench, login: Login, path: str, data: dict[str, str], status: int) -> None:
    """A form sent as `login` with its CSRF token, in this process; it must answer `status`."""
    client = bench.app.test_client()
    client.set_cookie("session", login.cookie)
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json", "X-CSRFToken": login.csrf}
    response = client.post(path, data=data, headers=headers)
    if response.status_code != status:
        raise RuntimeError(f"{path} answered {response.status_code}, not {status}: {response.data[:300]!r}")


def count_statements(bench: Bench, target: Target) -> dict[str, Any]:
    """Page size and SQL statements of a group page, the issue's JSON and a 304, in this process."""
    client = bench.app.test_client()
    client.set_cookie("session", target.login.cookie)  # the test client's own jar overrides a Cookie header
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

        def counted(path: str, **extra: str) -> tuple[int, bytes, Any]:
            statements.clear()
            response = client.get(path, headers={**headers, **extra})
            found_statements = len(statements)
            return found_statements, response.data, response

        client.get(f"/groups/{target.group_id}", headers=headers)  # templates compiled, caches warm
        found["page_queries"], page, response = counted(f"/groups/{target.group_id}")
        assert response.status_code == 200, response.status_code
        found["page_bytes"] = len(page)
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
    """One wrk run against url; the server's CPU time is read from /proc around it."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    before = cpu_seconds(server)
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(server) - before
    rate = float(_field(r"Requests/sec:\s+([\d.]+)", output))
    requests = int(_field(r"(\d+) requests in", output))
    bad = int(_field(r"Non-2xx or 3xx responses: (\d+)", output, "0"))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    bad += sum(map(int, errors.groups())) if errors else 0
    return Run(rate, requests, bad, cpu)


def _field(pattern: str, text: str, default: str | None = None) -> str:
    match = re.search(pattern, text)
    if match is None:
        if default is None:
            raise RuntimeError(f"wrk said something unexpected:\n{text}")
        return default
    return match.group(1)


def measure(
    name: str, url: str, headers: dict[str, str], args: argparse.Namespace, server: int
) -> tuple[str, float, float, int]:
    """The median of args.repeat wrk runs: (name, req/s, CPU ms per request, errors)."""
    runs = [wrk(url, headers, args.seconds, args.connections, server) for _ in range(args.repeat)]
    rate = median([run.rate for run in runs])
    answered = [run for run in runs if run.requests]  # a page slower than the run answers nothing
    cpu_ms = median([1000 * run.cpu / run.requests for run in answered]) if answered else float("nan")
    print(f"  {name}: " + ", ".join(f"{run.rate:.0f} req/s" for run in runs), flush=True)
    return name, rate, cpu_ms, sum(run.bad for run in runs)


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
    parser.add_argument("--repeat", type=int, default=3, help="wrk runs per endpoint (the median counts)")
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
        f"{bench.database}; {args.workers} gevent workers; wrk -t2 -c{args.connections} "
        f"-d{args.seconds:g}s, median of {args.repeat}; data made in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    log = bench.workdir / "access.log" if not args.no_access_log else None
    results = []

    port = free_port()
    bare = serve(
        gunicorn_command("bench.bare:app", port, args.workers, log),
        bench.environment,
        bench.workdir / "bare.log",
        f"http://127.0.0.1:{port}/",
    )
    try:
        results.append(
            measure(
                "bare Flask (ok)", f"http://127.0.0.1:{port}/", {"User-Agent": USER_AGENT}, args, bare.pid
            )
        )
    finally:
        stop(bare)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = serve(
        gunicorn_command("estimator:create_app()", port, args.workers, log),
        bench.environment,
        bench.workdir / "estimator.log",
        base + "/healthz",
    )
    try:
        headers = team.login.headers
        issue = f"{base}/api/issues/{team.issue_id}"
        tag = check(issue, headers, 200)["ETag"]
        check(issue, {**headers, "If-None-Match": tag}, 304)
        check(f"{base}/groups/{team.group_id}", headers, 200)
        check(f"{base}/groups/{full.group_id}", full.login.headers, 200)
        results.append(
            measure("issue JSON, unchanged (304)", issue, {**headers, "If-None-Match": tag}, args, server.pid)
        )
        results.append(measure("issue JSON (200)", issue, headers, args, server.pid))
        results.append(
            measure("group page HTML", f"{base}/groups/{team.group_id}", headers, args, server.pid)
        )
        results.append(
            measure(
                "group page HTML, at the limits",
                f"{base}/groups/{full.group_id}",
                full.login.headers,
                args,
                server.pid,
            )
        )
    finally:
        stop(server)
    report(results, counts)


def report(results: list[tuple[str, float, float, int]], counts: dict[str, dict[str, Any]]) -> None:
    """The table, the goals beside it, and the SQL statements counted in-process."""
    bare_rate = results[0][1]
    goals = {
        "issue JSON, unchanged (304)": ("poll", f"≥ {GOALS['poll']}×"),
        "issue JSON (200)": ("json", f"≥ {GOALS['json']}×"),
        "group page HTML": ("page", f"≥ {GOALS['page']}×, ≤ {PAGE_QUERIES} queries"),
    }
    print()
    print(f"{'endpoint':<32}| {'req/s':>8} | {'ratio to bare Flask':>19} | {'CPU ms/request':>14} | goal")
    print(f"{'-' * 32}|{'-' * 10}|{'-' * 21}|{'-' * 16}|{'-' * 40}")
    for name, rate, cpu_ms, bad in results:
        ratio = rate / bare_rate
        verdict = ""
        if name in goals:
            key, text = goals[name]
            met = ratio >= GOALS[key] and (key != "page" or counts["team"]["page_queries"] <= PAGE_QUERIES)
            verdict = f"{text}: " + ("met" if met else f"MISSED ({ratio / GOALS[key]:.0%} of the goal)")
        errors = f" ({bad} errors)" if bad else ""
        print(f"{name:<32}| {rate:8.0f} | {ratio:18.2f}× | {cpu_ms:14.2f} | {verdict}{errors}")
    print()
    for key, label in (
        ("team", "31 members, 200 issues"),
        ("full", "200 members, 1,000 issues (the limits)"),
    ):
        c = counts[key]
        print(
            f"group of {label}: page {c['page_bytes']:,} bytes in {c['page_queries']} SQL "
            f"statement{'' if c['page_queries'] == 1 else 's'}; "
            f"issue JSON {c['json_bytes']:,} bytes in {c['json_queries']} "
            f"({c['json_cold_queries']} when first built for a version); 304 in {c['poll_queries']} "
            f"({c['poll_stale_queries']} after a pause of {PAUSE:g} s)"
        )
    print("(statements counted with a before_cursor_execute listener, transaction control left out)")


if __name__ == "__main__":
    main()
