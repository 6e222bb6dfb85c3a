"""How many people one machine serves live: N participants each holding the group's event stream.

    python bench/capacity.py --participants 500 2000 5000 [--seconds 30] [--interval 3] [--workers 2]

For each N the server is started as in production (`python run.py`: gunicorn, gevent workers with
10,000 connections each, the open-file limit raised) and N participants in groups of 10 each open
`GET /api/groups/<id>/events`. Once all are connected, every group changes once per --interval
seconds for --seconds: a member casts a first vote (`POST /issues/<id>/estimate`, as the page's
script does), which bumps the group's version every time (a changed card would not; members take
turns, then the next issue). Prints per N the votes' round trip, the time from a vote's answer
to each listener of its group getting the new version (or a later one, which includes it), events
received against expected, errors, the server's CPU time, how busy the whole machine was and how
much of it the host of a virtual machine took away (from /proc): a run on a machine near 100 %
measures the machine as much as the server.

Users, groups and issues are made directly in the database and the session cookies signed with
the server's key. Uses DATABASE_URL when set (PostgreSQL), else a fresh SQLite file. This script,
the server and anything else running share the machine's cores.
"""

import argparse
import asyncio
import math
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench.fixtures import (  # noqa: E402
    Bench,
    Login,
    cpu_seconds,
    free_port,
    machine_ticks,
    percentile,
    process_tree,
    raise_open_file_limit,
    serve,
    stop,
)
from estimator.extensions import db  # noqa: E402
from estimator.models import Group, Issue  # noqa: E402

GROUP_SIZE = 10
CARDS = ["1", "2", "3", "5", "8", "13"]
#: At most this many streams are being opened at once (the server's listen backlog is 2,048).
CONNECTING = 200


@dataclass
class Team:
    """One group: its id, its issues in backlog order, its members' logins, its version at the start."""

    group_id: int
    issues: list[int]
    members: list[Login]
    version: int = 0


@dataclass
class Vote:
    """One vote: which group and which of its changes, when it was sent and answered, and how."""

    group_id: int
    number: int
    sent: float
    answered: float
    status: int  # 0: no answer

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class Figures:
    """What one N measured."""

    participants: int
    groups: int
    connected: int
    connect_s: float
    votes: int
    vote_errors: dict[str, int]
    vote_p50: float
    vote_p95: float
    event_p50: float
    event_p95: float
    received: int
    reached: int
    expected: int
    stream_errors: dict[str, int]
    reconnects: int
    idle_cpu: float
    cpu: float
    cpu_ms_per_vote: float
    client_cpu: float
    #: The share of the machine's cores busy while voting (the server, this script, the database,
    #: the rest), and the share the host gave to other virtual machines instead (steal).
    machine_busy: float
    machine_stolen: float
    memory: float


@dataclass
class Tally:
    """What the listeners saw: when each listener got each version, and what went wrong."""

    #: (group id, listener's user id) → the versions it got, with when.
    seen: dict[tuple[int, int], list[tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))
    connected: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    all_connected: asyncio.Event = field(default_factory=asyncio.Event)


def make_teams(bench: Bench, participants: int, changes: int) -> list[Team]:
    """participants // GROUP_SIZE groups, each with enough issues for `changes` first votes."""
    issues = math.ceil(changes / GROUP_SIZE) + 1
    teams = []
    with bench.app.app_context():
        users = bench.users(participants, f"Cap{participants}")
        groups = []
        for start in range(0, participants - GROUP_SIZE + 1, GROUP_SIZE):
            members = users[start : start + GROUP_SIZE]
            groups.append(bench.group(f"Capacity {start // GROUP_SIZE}", members[0], members[1:], issues))
        db.session.commit()
        issue_ids = [
            list(
                db.session.scalars(
                    sa.select(Issue.id).where(Issue.group_id == group.id).order_by(Issue.position)
                )
            )
            for group in groups
        ]
        group_ids = [group.id for group in groups]
        logins = bench.logins(users)  # last: each login's request context ends the session
    for number, (group_id, issues_of_group) in enumerate(zip(group_ids, issue_ids, strict=True)):
        start = number * GROUP_SIZE
        teams.append(Team(group_id, issues_of_group, logins[start : start + GROUP_SIZE]))
    return teams


def read_versions(bench: Bench, teams: list[Team]) -> None:
    """Each group's version now, from the database."""
    with bench.app.app_context():
        rows = db.session.execute(
            sa.select(Group.id, Group.version).where(Group.id.in_([t.group_id for t in teams]))
        )
        versions = {group_id: version for group_id, version in rows}
    for team in teams:
        team.version = versions[team.group_id]


async def listen(
    http: aiohttp.ClientSession,
    url: str,
    login: Login,
    group_id: int,
    tally: Tally,
    gate: asyncio.Semaphore,
    total: int,
) -> None:
    """Hold the group's event stream as a browser does (reconnecting with Last-Event-ID)."""
    last: int | None = None
    first = True
    while True:
        headers = {**login.headers, "Accept": "text/event-stream"}
        if last is not None:
            headers["Last-Event-ID"] = str(last)
        holding_gate = first
        if holding_gate:
            await gate.acquire()
        try:
            async with http.get(url, headers=headers) as response:
                if response.status != 200:
                    tally.errors[f"stream answered {response.status}"] += 1
                    await asyncio.sleep(2)
                    continue
                pending = b""
                # Whatever arrived at once, read as whole lines: not a wake-up per line, so that
                # this process, which shares the machine's cores with the server, stays cheap.
                async for chunk in response.content.iter_any():
                    complete, _, pending = (pending + chunk).rpartition(b"\n")
                    for line in complete.split(b"\n"):
                        if not line.startswith(b"id:"):
                            continue
                        version = int(line[3:])
                        tally.seen[(group_id, login.user_id)].append((version, time.monotonic()))
                        last = version
                        if first:
                            first = False
                            tally.connected += 1
                            if tally.connected == total:
                                tally.all_connected.set()
                        if holding_gate:
                            holding_gate = False
                            gate.release()
            tally.reconnects += 1  # the server ended the stream (its lifetime): a browser reconnects
        except (aiohttp.ClientError, TimeoutError) as error:
            tally.errors[f"stream: {type(error).__name__}"] += 1
            await asyncio.sleep(1)
        finally:
            if holding_gate:
                gate.release()


async def vote_loop(
    http: aiohttp.ClientSession, base: str, team: Team, start: float, until: float, interval: float
) -> list[Vote]:
    """One change of the group every `interval` seconds: the next member's first vote on an issue."""
    votes = []
    due = start + random.uniform(0, interval)
    number = 0
    while due < until:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        login = team.members[number % GROUP_SIZE]
        issue_id = team.issues[number // GROUP_SIZE]
        headers = {
            **login.headers,
            "Accept": "application/json",
            "X-CSRFToken": login.csrf,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        sent = time.monotonic()
        try:
            async with http.post(
                f"{base}/issues/{issue_id}/estimate",
                data=f"value={CARDS[number % len(CARDS)]}".encode(),
                headers=headers,
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        votes.append(Vote(team.group_id, number, sent, time.monotonic(), status))
        number += 1
        due += interval
    return votes


def server_memory(pid: int) -> float:
    """Resident memory of gunicorn's master and workers, in MiB."""
    total = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


async def drive(base: str, server: int, teams: list[Team], args: argparse.Namespace) -> Figures:
    """Connect every listener, vote for args.seconds, and measure."""
    participants = sum(len(team.members) for team in teams)
    tally = Tally()
    gate = asyncio.Semaphore(CONNECTING)
    streams = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        cookie_jar=aiohttp.DummyCookieJar(),
        # No read timeout: re-arming it at every event cost this process a third of its time.
        # A stream that stops sending shows as events missing from the count.
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=None),
    )
    voters = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=500),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=60),
    )
    began = time.monotonic()
    listeners = [
        asyncio.create_task(
            listen(
                streams,
                f"{base}/api/groups/{team.group_id}/events",
                login,
                team.group_id,
                tally,
                gate,
                participants,
            )
        )
        for team in teams
        for login in team.members
    ]
    try:
        try:
            await asyncio.wait_for(tally.all_connected.wait(), timeout=300)
        except TimeoutError:
            pass
        connect_time = time.monotonic() - began
        quiet_cpu = cpu_seconds(server)
        await asyncio.sleep(5)
        idle = (cpu_seconds(server) - quiet_cpu) / 5
        client_cpu = time.process_time()
        ticks_before = machine_ticks()
        cpu_before, start = cpu_seconds(server), time.monotonic()
        until = start + args.seconds
        loops = [vote_loop(voters, base, team, start, until, args.interval) for team in teams]
        votes = [vote for batch in await asyncio.gather(*loops) for vote in batch]
        voting = time.monotonic() - start
        cpu = cpu_seconds(server) - cpu_before
        client_cpu = time.process_time() - client_cpu
        busy, stolen, ticks = (
            after - before for after, before in zip(machine_ticks(), ticks_before, strict=True)
        )
        machine = (busy / max(ticks, 1), stolen / max(ticks, 1))
        await asyncio.sleep(3)  # the last votes' events
        memory = server_memory(server)
    finally:
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        await streams.close()
        await voters.close()
    return summarize(teams, votes, tally, connect_time, idle, cpu, voting, client_cpu, machine, memory)


def summarize(
    teams: list[Team],
    votes: list[Vote],
    tally: Tally,
    connect_time: float,
    idle: float,
    cpu: float,
    voting: float,
    client_cpu: float,
    machine: tuple[float, float],
    memory: float,
) -> Figures:
    """The figures of one N."""
    by_group = {team.group_id: team for team in teams}
    round_trips = [1000 * (v.answered - v.sent) for v in votes if v.ok]
    delays = []
    expected = received = reached = 0
    for vote in votes:
        if not vote.ok:
            continue
        team = by_group[vote.group_id]
        version = team.version + vote.number + 1
        for login in team.members:
            expected += 1
            seen = tally.seen.get((vote.group_id, login.user_id), [])
            received += any(got == version for got, _ in seen)
            # A later version includes this change: the screen shows it from then on.
            first = next((at for got, at in seen if got >= version), None)
            if first is not None:
                reached += 1
                delays.append(1000 * (first - vote.answered))
    return Figures(
        participants=sum(len(team.members) for team in teams),
        groups=len(teams),
        connected=tally.connected,
        connect_s=connect_time,
        votes=len(round_trips),
        vote_errors=dict(
            Counter(f"answered {v.status}" if v.status else "no answer" for v in votes if not v.ok)
        ),
        vote_p50=percentile(round_trips, 0.5),
        vote_p95=percentile(round_trips, 0.95),
        event_p50=percentile(delays, 0.5),
        event_p95=percentile(delays, 0.95),
        received=received,
        reached=reached,
        expected=expected,
        stream_errors=dict(tally.errors),
        reconnects=tally.reconnects,
        idle_cpu=idle,
        cpu=cpu / voting,
        cpu_ms_per_vote=1000 * cpu / max(len(votes), 1),
        client_cpu=client_cpu / voting,
        machine_busy=machine[0],
        machine_stolen=machine[1],
        memory=memory,
    )


def measure(bench: Bench, participants: int, args: argparse.Namespace) -> Figures:
    """Make the groups, start the server as production does, drive it, stop it."""
    made = time.monotonic()
    teams = make_teams(bench, participants, math.ceil(args.seconds / args.interval) + 1)
    read_versions(bench, teams)
    print(f"N={participants}: {len(teams)} groups made in {time.monotonic() - made:.1f} s", flush=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        args.run,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
    ]
    server = serve(
        command, bench.environment, bench.workdir / f"server-{participants}.log", base + "/healthz"
    )
    try:
        return asyncio.run(drive(base, server.pid, teams, args))
    finally:
        stop(server)


def report(database: str, f: Figures) -> None:
    """One N's figures in words."""
    print(
        f"N={f.participants} ({f.groups} groups of {GROUP_SIZE}, {database}): "
        f"{f.connected}/{f.participants} streams open after {f.connect_s:.1f} s; "
        f"votes {f.votes} ok, failed {f.vote_errors or 0}, round trip p50 {f.vote_p50:.0f} ms, "
        f"p95 {f.vote_p95:.0f} ms; vote→event p50 {f.event_p50:.0f} ms, p95 {f.event_p95:.0f} ms; "
        f"events {f.received}/{f.expected} (the change reached {f.reached}, some in a later version); "
        f"stream errors {f.stream_errors or 0}, "
        f"reconnects {f.reconnects}; server CPU {f.idle_cpu:.0%} of a core while idle, "
        f"{f.cpu:.0%} while voting ({f.cpu_ms_per_vote:.1f} ms per vote); "
        f"server memory {f.memory:.0f} MiB; this script used {f.client_cpu:.0%} of a core; "
        f"the machine's cores were {f.machine_busy:.0%} busy while voting, and {f.machine_stolen:.0%} "
        "taken by the host (steal)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--participants", type=int, nargs="+", default=[500, 2000, 5000])
    parser.add_argument("--seconds", type=float, default=30, help="how long the groups vote")
    parser.add_argument("--interval", type=float, default=3, help="seconds between a group's changes")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (run.py --workers)")
    parser.add_argument("--run", default="run.py", help="the script that serves, with run.py's options")
    args = parser.parse_args()
    limit = raise_open_file_limit()
    needed = max(args.participants) + 1000
    if limit < needed:
        sys.exit(f"The open-file limit is {limit}; {needed} are needed (ulimit -n).")
    bench = Bench()
    print(
        f"{bench.database}; {args.run} with {args.workers} gevent workers; groups of {GROUP_SIZE}, "
        f"one vote per group every {args.interval:g} s for {args.seconds:g} s; open-file limit {limit}",
        flush=True,
    )
    results = []
    try:
        for participants in args.participants:
            results.append(measure(bench, participants, args))
            report(bench.database, results[-1])
    finally:
        bench.close()
    print()
    print(
        "N     | vote p50/p95 ms | vote→event p50/p95 ms | events recv/expected | errors | server CPU"
        " | machine busy (stolen)"
    )
    for f in results:
        errors = sum(f.vote_errors.values()) + sum(f.stream_errors.values())
        print(
            f"{f.participants:<6}| {f.vote_p50:6.0f} / {f.vote_p95:<6.0f} | "
            f"{f.event_p50:8.0f} / {f.event_p95:<10.0f} | {f.received:>9}/{f.expected:<10} | "
            f"{errors:>6} | {f.cpu:.0%} of a core ({f.idle_cpu:.0%} idle) | "
            f"{f.machine_busy:.0%} ({f.machine_stolen:.0%})"
        )


if __name__ == "__main__":
    main()
