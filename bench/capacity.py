"""How many people one machine serves live: N participants, each a room page as a browser runs it.

    python bench/capacity.py --participants 500 2000 5000 [--seconds 30] [--interval 3] [--workers 2]

For each N the server is started as in production (`python run.py`: gunicorn, gevent workers with
10,000 connections each, the open-file limit raised) and N participants in groups of 10 each do what
the room page does (bench/page_model.py, which a browser test holds against Chromium): load the room
(`GET /groups/<id>/room`; its static files are left out, as a browser keeps them) and open the
stream it names (`data-live-events` plus `&since=<data-live-version>`). Every group's room has an
issue in it. Once all streams are open, every group changes once per --interval seconds for
--seconds: a member casts a first vote (`POST /issues/<id>/estimate`, as the page's script does),
which bumps the group's version every time (a changed card would not; members take turns; once all
ten have voted the facilitator moves the room on with `POST /groups/<id>/next`, the room's "Next
issue" button). A page asks for nothing when an event comes, and only for its vote when it votes:
the regions event that a change causes is what updates every screen, the voter's own included.

Prints per N the votes' round trip; the time from sending a vote until every screen of its group had
a `regions` event of the version the vote made (or a later one, which includes it); screens
updated against expected; errors (any answer but 2xx or the form's 302, any stream that ended or
failed, any page whose stream is not the model's); the server's CPU time, and per vote from the
first vote until the last screen was updated (the fan-out included); how busy the whole machine was
and how much of it the host of a virtual machine took away (from /proc): a run on a machine near
100 % measures the machine as much as the server.

The pages' streams come from one loopback address per 100 pages (127.0.1.1, 127.0.1.2, …), as
offices do: the server holds at most LIVE_STREAMS_PER_ADDRESS (500) streams of one address in each
process, and answers more with 429 (the page then polls).

Users, groups and issues are made directly in the database and the session cookies signed with
the server's key. Uses DATABASE_URL when set (PostgreSQL), else a fresh SQLite file. This script,
the server and anything else running share the machine's cores. Loopback only; every wait is
bounded.
"""

import argparse
import asyncio
import html
import json
import math
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench import page_model  # noqa: E402
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
from bench.sse import EventReader  # noqa: E402
from estimator.extensions import db  # noqa: E402
from estimator.models import Group, Issue  # noqa: E402

GROUP_SIZE = 10
CARDS = ["1", "2", "3", "5", "8", "13"]
#: At most this many pages are being loaded at once (a load holds one of a worker's database
#: connections, DATABASE_POOL_SIZE of them; more at once wait for one, and are refused after its
#: timeout), and this many streams are being opened (the server's listen backlog is 2,048).
LOADING = 20
CONNECTING = 200
#: The page the participants hold.
PAGE = "room"
#: The longest wait for every page to load and hold its stream, and for the last votes' screens.
CONNECT_WAIT = 300.0
DRAIN_WAIT = 10.0
SETTLE_WAIT = 30.0
PER_ADDRESS = 100  # pages behind one address: a large office's meeting
#: The body's attributes that link a live page to its stream.
BODY = re.compile(rb"<body\b[^>]*>", re.S)
ATTRIBUTE = re.compile(r'\s(data-live-[\w-]+)="([^"]*)"')


@dataclass
class Team:
    """One group: its id, its issues in backlog order, its members' logins, its version when its
    pages load, the issue in its room now (an index into `issues`) and the version its changes
    brought it to (each vote and each move of the room one step)."""

    group_id: int
    issues: list[int]
    members: list[Login]
    version: int = 0
    current: int = 0
    reached: int = 0

    def values(self) -> dict[str, object]:
        """The page model's placeholders for this group's room."""
        return {
            "group": self.group_id,
            "issue": self.issues[self.current],
            "view": page_model.view_of(PAGE),
            "version": self.version,
        }


@dataclass
class Vote:
    """One vote: which group, the version it brought the group to, when it was sent and answered,
    and how."""

    group_id: int
    version: int
    sent: float
    answered: float
    status: int  # 0: no answer

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class Figures:
    """What one N measured."""

    participants: int
    groups: int
    connected: int
    connect_s: float
    votes: int
    moves: int
    vote_errors: dict[str, int]
    vote_p50: float
    vote_p95: float
    #: From sending a vote until the last screen of its group was updated (votes that reached all).
    screens_p50: float
    screens_p95: float
    #: From sending a vote until one screen was updated, over every screen.
    screen_p50: float
    screen_p95: float
    reached: int
    expected: int
    regions_events: int
    polled_regions: int
    version_events: int
    regions_kib: float
    errors: dict[str, int]
    version_mismatches: int
    reconnects: int
    idle_cpu: float
    cpu: float
    cpu_ms_per_vote: float
    cpu_ms_per_vote_above_idle: float
    client_cpu: float
    #: The share of the machine's cores busy while voting (the server, this script, the database,
    #: the rest), and the share the host gave to other virtual machines instead (steal).
    machine_busy: float
    machine_stolen: float
    memory: float


@dataclass
class Tally:
    """What the pages saw: when each page got each regions event, and what went wrong."""

    #: (group id, member's user id) → the versions of the regions events it got, with when.
    seen: dict[tuple[int, int], list[tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))
    #: (group id, member's user id) → the highest version of a regions event it got.
    latest: dict[tuple[int, int], int] = field(default_factory=dict)
    regions_events: int = 0
    polled_regions: int = 0
    version_events: int = 0
    regions_bytes: int = 0
    #: Pages in all, pages whose load and stream opening are over, and those whose stream opened.
    pages: int = 0
    settled: int = 0
    connected: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    all_connected: asyncio.Event = field(default_factory=asyncio.Event)


def make_teams(bench: Bench, participants: int, changes: int) -> list[Team]:
    """participants // GROUP_SIZE groups, each with enough issues for `changes` first votes, the
    first of them in the room."""
    issues = math.ceil(changes / GROUP_SIZE) + 1
    teams = []
    with bench.app.app_context():
        users = bench.users(participants, f"Cap{participants}")
        groups = []
        for start in range(0, participants - GROUP_SIZE + 1, GROUP_SIZE):
            members = users[start : start + GROUP_SIZE]
            groups.append(
                bench.group(f"Capacity {start // GROUP_SIZE}", members[0], members[1:], issues, in_room=True)
            )
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


def read_versions(bench: Bench, teams: list[Team]) -> dict[int, int]:
    """Each group's version now, from the database."""
    with bench.app.app_context():
        rows = db.session.execute(
            sa.select(Group.id, Group.version).where(Group.id.in_([t.group_id for t in teams]))
        )
        return {group_id: version for group_id, version in rows}


def live_attributes(page: bytes) -> dict[str, str]:
    """The data-live-* attributes of a page's body."""
    body = BODY.search(page)
    if body is None:
        return {}
    return {name: html.unescape(value) for name, value in ATTRIBUTE.findall(body.group().decode())}


async def ask(
    http: aiohttp.ClientSession,
    base: str,
    request: page_model.Ask,
    values: Mapping[str, object],
    login: Login,
    card: str | None = None,
) -> tuple[int, bytes]:
    """One request of the page model as the page makes it; (status, body), or (0, why) for no answer.
    A POST is the page's vote: fetch, the card as the form field `value`, the token in a header."""
    headers = dict(login.headers)
    data = None
    if request.method == "POST":
        headers |= {
            "Accept": "application/json",
            "X-CSRFToken": login.csrf,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        data = urlencode({"value": card or CARDS[0]}).encode()
    try:
        async with http.request(
            request.method, base + request.path(values), data=data, headers=headers, allow_redirects=False
        ) as response:
            return response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError) as error:
        return 0, type(error).__name__.encode()


async def react(http: aiohttp.ClientSession, base: str, team: Team, login: Login, tally: Tally) -> None:
    """What the page does when an event comes: whatever the model lists for it (nothing, today)."""
    for request in page_model.ON_EVENT:
        status, _ = await ask(http, base, request, team.values(), login)
        if not 200 <= status < 300:
            tally.errors[f"on an event, {request}: {status or 'no answer'}"] += 1


async def load(http: aiohttp.ClientSession, base: str, team: Team, login: Login, tally: Tally) -> str | None:
    """Load the room page as the model says; the stream it names (data-live-events and
    `&since=<data-live-version>`), or None when something failed (counted)."""
    values = team.values()
    stream_url: str | None = None
    for request in page_model.load(PAGE):
        if request.kind == "stream":
            wanted = request.path(values)
            if stream_url != wanted:
                named = re.sub(r"\d+", "<n>", str(stream_url))
                tally.errors[f"the page names the stream {named}, the model {request}"] += 1
                return None
            continue
        status, body = await ask(http, base, request, values, login)
        if not 200 <= status < 300:
            tally.errors[f"on load, {request}: {status or 'no answer, ' + body.decode()}"] += 1
            return None
        if request.kind == "page":
            live = live_attributes(body)
            events, version = live.get("data-live-events"), live.get("data-live-version")
            stream_url = f"{events}&since={version}" if events and version else None
    return stream_url


async def page(
    loads: aiohttp.ClientSession,
    http: aiohttp.ClientSession,
    streams: aiohttp.ClientSession,
    base: str,
    team: Team,
    login: Login,
    tally: Tally,
    loading: asyncio.Semaphore,
    gate: asyncio.Semaphore,
    lifetime: float,
) -> None:
    """One member's room page: loaded as the model says, then holding its stream, counting the
    regions events; when the stream ends or fails, the page's steps of ON_STREAM_END."""
    key = (team.group_id, login.user_id)
    holding_gate = counted = False

    def settled(connected: bool) -> None:
        """The page's first stream answered (or it never will): counted once."""
        nonlocal holding_gate, counted
        if holding_gate:
            holding_gate = False
            gate.release()
        if not counted:
            counted = True
            tally.connected += connected
            tally.settled += 1
            if tally.settled == tally.pages:
                tally.all_connected.set()

    failures = 0
    try:
        async with loading:
            stream_url = await load(loads, base, team, login, tally)
        await gate.acquire()
        holding_gate = True
        while stream_url is not None:
            opened = time.monotonic()
            try:
                async with streams.get(
                    base + stream_url, headers={**login.headers, "Accept": "text/event-stream"}
                ) as response:
                    if response.status != 200:
                        tally.errors[f"stream answered {response.status}"] += 1
                    else:
                        settled(True)
                        failures = 0
                        await read_stream(response, http, base, team, login, key, tally)
                        if time.monotonic() - opened < lifetime - 1:
                            tally.errors["stream ended by the server"] += 1
                        else:
                            tally.reconnects += 1  # its lifetime: the page opens another
            except (aiohttp.ClientError, TimeoutError) as error:
                tally.errors[f"stream: {type(error).__name__}"] += 1
            settled(False)
            failures += 1
            stream_url = await stream_ended(http, base, team, login, key, tally, failures)
    finally:
        settled(False)  # a failed load, or cancelled while loading


async def read_stream(
    response: aiohttp.ClientResponse,
    http: aiohttp.ClientSession,
    base: str,
    team: Team,
    login: Login,
    key: tuple[int, int],
    tally: Tally,
) -> None:
    """Read a page's stream until it ends: count its regions events, and do what the page does."""
    reader = EventReader()
    # Whatever arrived at once, read together: not a wake-up per line, so that this process,
    # which shares the machine's cores with the server, stays cheap.
    async for chunk in response.content.iter_any():
        for message in reader.feed(chunk):
            if message.event == "regions":
                seen_regions(message.id, message.data, key, tally)
                if page_model.ON_EVENT:
                    asyncio.create_task(react(http, base, team, login, tally))
            elif message.event == "version":
                tally.version_events += 1
                if message.id.isdigit() and int(message.id) > tally.latest.get(key, 0):
                    # Its regions did not come first: the page asks for them.
                    tally.errors["a version event without its regions"] += 1
                    asyncio.create_task(ask_regions(http, base, team, login, key, tally))


async def ask_regions(
    http: aiohttp.ClientSession, base: str, team: Team, login: Login, key: tuple[int, int], tally: Tally
) -> None:
    """The page's poll of its regions; a newer version in them updates its screen, as an event does."""
    values = {**team.values(), "version": tally.latest.get(key, team.version)}
    status, body = await ask(http, base, page_model.REGIONS, values, login)
    if not 200 <= status < 300:
        tally.errors[f"{page_model.REGIONS}: {status or 'no answer, ' + body.decode()}"] += 1
        return
    try:
        version = json.loads(body).get("version")
    except (ValueError, AttributeError):
        version = None
    seen_regions(str(version), body.decode(), key, tally, polled=True)


async def stream_ended(
    http: aiohttp.ClientSession,
    base: str,
    team: Team,
    login: Login,
    key: tuple[int, int],
    tally: Tally,
    failures: int,
) -> str:
    """What the page does when its stream ends or fails (ON_STREAM_END): its regions at once, then,
    after its pause, the stream's path from the version it shows. (The page polls again every
    second until the stream is back; this asks once.)"""
    stream = ""
    for request in page_model.ON_STREAM_END:
        if request is page_model.REGIONS:
            await ask_regions(http, base, team, login, key, tally)
        elif request.kind == "stream":
            await asyncio.sleep(min(30.0, 2.0 ** min(failures - 1, 5)) * random.uniform(0.75, 1.25))
            stream = request.path({**team.values(), "version": tally.latest.get(key, team.version)})
        else:
            status, _ = await ask(http, base, request, team.values(), login)
            if not 200 <= status < 300:
                tally.errors[f"when the stream ended, {request}: {status or 'no answer'}"] += 1
    return stream


def seen_regions(event_id: str, data: str, key: tuple[int, int], tally: Tally, polled: bool = False) -> None:
    """Count a regions event (or polled regions): the screen now shows its version."""
    version = regions_version(event_id, data)
    if version is None:
        tally.errors["regions without their version or regions"] += 1
        return
    if polled:
        tally.polled_regions += 1
    else:
        tally.regions_events += 1
        tally.regions_bytes += len(data)
    tally.seen[key].append((version, time.monotonic()))
    tally.latest[key] = max(version, tally.latest.get(key, 0))


def regions_version(event_id: str, data: str) -> int | None:
    """The version of a regions event, when its data says the same as its id and has regions."""
    try:
        payload = json.loads(data)
    except ValueError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("regions"), dict):
        return None
    if str(payload.get("version")) != event_id or not event_id.isdigit():
        return None
    return int(event_id)


async def vote_loop(
    http: aiohttp.ClientSession,
    base: str,
    team: Team,
    start: float,
    until: float,
    interval: float,
    tally: Tally,
) -> tuple[list[Vote], int]:
    """One change of the group every `interval` seconds: the next member's first vote on the room's
    issue, as the model says a page votes; once everybody voted, the facilitator moves the room on.
    The votes, and how many times the room moved on."""
    votes = []
    moves = 0
    due = start + random.uniform(0, interval)
    number = 0
    team.reached = team.version
    while due < until:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if number and number % GROUP_SIZE == 0:
            status = await move_on(http, base, team)
            if status != 302:
                tally.errors[f"next issue: {status or 'no answer'}"] += 1
                break  # the room's issue is no longer known
            team.current += 1
            team.reached += 1
            moves += 1
        login = team.members[number % GROUP_SIZE]
        card = CARDS[number % len(CARDS)]
        sent = time.monotonic()
        status = 0
        answered = sent
        for request in page_model.ON_OWN_VOTE:
            got, _ = await ask(http, base, request, team.values(), login, card)
            if request.method == "POST":
                status, answered = got, time.monotonic()
            elif not 200 <= got < 300:
                tally.errors[f"after a vote, {request}: {got or 'no answer'}"] += 1
        if 200 <= status < 300:
            team.reached += 1
        votes.append(Vote(team.group_id, team.reached, sent, answered, status))
        number += 1
        due += interval
    return votes, moves


async def move_on(http: aiohttp.ClientSession, base: str, team: Team) -> int:
    """The facilitator's "Next issue" button: a form posted with its CSRF token (answered 302)."""
    owner = team.members[0]
    headers = {**owner.headers, "Content-Type": "application/x-www-form-urlencoded"}
    try:
        async with http.post(
            f"{base}/groups/{team.group_id}/next",
            data=urlencode({"csrf_token": owner.csrf}).encode(),
            headers=headers,
            allow_redirects=False,
        ) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


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


def every_screen_reached(teams: list[Team], votes: list[Vote], tally: Tally) -> bool:
    """Whether every page has a regions event of its group's last version reached by a vote."""
    last: dict[int, int] = {}
    for vote in votes:
        if vote.ok:
            last[vote.group_id] = max(vote.version, last.get(vote.group_id, 0))
    return all(
        tally.latest.get((team.group_id, login.user_id), 0) >= last[team.group_id]
        for team in teams
        if team.group_id in last
        for login in team.members
    )


async def drive(
    base: str,
    server: int,
    teams: list[Team],
    args: argparse.Namespace,
    lifetime: float,
    versions: Callable[[], dict[int, int]],
) -> Figures:
    """Load every page and open its stream, vote for args.seconds, and measure. `versions` reads
    each group's version from the database."""
    participants = sum(len(team.members) for team in teams)
    tally = Tally(pages=participants)
    loading, gate = asyncio.Semaphore(LOADING), asyncio.Semaphore(CONNECTING)
    # People come from many addresses (the server holds at most LIVE_STREAMS_PER_ADDRESS streams of
    # one address in each process): an office of PER_ADDRESS pages on each loopback address.
    streams = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, local_addr=(address, 0)),
            cookie_jar=aiohttp.DummyCookieJar(),
            # No read timeout: re-arming it at every event cost this process a third of its time.
            # A stream that stops sending shows as screens missing from the count.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=None),
        )
        for address in client_addresses(math.ceil(participants / PER_ADDRESS))
    ]
    # A connection of its own per page load: one kept from an earlier load may be closed by the
    # server (gunicorn keeps an idle one 2 s) just as it is reused, which the load would not survive.
    loads = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=LOADING, force_close=True),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=60),
    )
    requests = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=500),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=60),
    )
    began = time.monotonic()
    pages = [
        asyncio.create_task(
            page(
                loads, requests, streams[n % len(streams)], base, team, login, tally, loading, gate, lifetime
            )
        )
        for n, (team, login) in enumerate((team, login) for team in teams for login in team.members)
    ]
    try:
        try:
            await asyncio.wait_for(tally.all_connected.wait(), timeout=CONNECT_WAIT)
        except TimeoutError:
            pass
        connect_time = time.monotonic() - began
        # Each member's arrival is a change of their group (who is here): the votes count from
        # the versions once everybody's arrival has been written.
        await settle(teams, versions)
        quiet_cpu = cpu_seconds(server)
        await asyncio.sleep(5)
        idle = (cpu_seconds(server) - quiet_cpu) / 5
        client_cpu = time.process_time()
        ticks_before = machine_ticks()
        cpu_before, start = cpu_seconds(server), time.monotonic()
        until = start + args.seconds
        loops = [vote_loop(requests, base, team, start, until, args.interval, tally) for team in teams]
        done = await asyncio.gather(*loops)
        votes = [vote for batch, _ in done for vote in batch]
        moves = sum(count for _, count in done)
        # The last votes' fan-out belongs to them: the window ends when every screen has them.
        drained = time.monotonic() + DRAIN_WAIT
        while not every_screen_reached(teams, votes, tally) and time.monotonic() < drained:
            await asyncio.sleep(0.05)
        voting = time.monotonic() - start
        cpu = cpu_seconds(server) - cpu_before
        client_cpu = time.process_time() - client_cpu
        busy, stolen, ticks = (
            after - before for after, before in zip(machine_ticks(), ticks_before, strict=True)
        )
        machine = (busy / max(ticks, 1), stolen / max(ticks, 1))
        memory = server_memory(server)
    finally:
        for task in pages:
            task.cancel()
        await asyncio.gather(*pages, return_exceptions=True)
        for session in streams:
            await session.close()
        await requests.close()
        await loads.close()
    return summarize(teams, votes, moves, tally, connect_time, idle, cpu, voting, client_cpu, machine, memory)


def client_addresses(count: int) -> list[str]:
    """This many loopback addresses to send from (all of 127.0.0.0/8 reaches this machine)."""
    return [f"127.0.{1 + n // 250}.{1 + n % 250}" for n in range(count)]


async def settle(teams: list[Team], versions: Callable[[], dict[int, int]]) -> None:
    """Wait until no group's version has moved for a second (at most SETTLE_WAIT seconds), and
    take those versions as where the groups start."""
    now, deadline = versions(), time.monotonic() + SETTLE_WAIT
    while time.monotonic() < deadline:
        await asyncio.sleep(1)
        now, before = versions(), now
        if now == before:
            break
    for team in teams:
        team.version = team.reached = now[team.group_id]


def summarize(
    teams: list[Team],
    votes: list[Vote],
    moves: int,
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
    ok = [vote for vote in votes if vote.ok]
    round_trips = [1000 * (v.answered - v.sent) for v in ok]
    every: list[float] = []
    each: list[float] = []
    expected = reached = 0
    for vote in ok:
        team = by_group[vote.group_id]
        last: float | None = 0.0
        for login in team.members:
            expected += 1
            seen = tally.seen.get((vote.group_id, login.user_id), [])
            # A later version includes this change: the screen shows it from then on.
            first = next((at for got, at in seen if got >= vote.version), None)
            if first is None:
                last = None
                continue
            reached += 1
            each.append(1000 * (first - vote.sent))
            if last is not None:
                last = max(last, first - vote.sent)
        if last is not None:
            every.append(1000 * last)
    return Figures(
        participants=sum(len(team.members) for team in teams),
        groups=len(teams),
        connected=tally.connected,
        connect_s=connect_time,
        votes=len(ok),
        moves=moves,
        vote_errors=dict(
            Counter(f"answered {v.status}" if v.status else "no answer" for v in votes if not v.ok)
        ),
        vote_p50=percentile(round_trips, 0.5),
        vote_p95=percentile(round_trips, 0.95),
        screens_p50=percentile(every, 0.5),
        screens_p95=percentile(every, 0.95),
        screen_p50=percentile(each, 0.5),
        screen_p95=percentile(each, 0.95),
        reached=reached,
        expected=expected,
        regions_events=tally.regions_events,
        polled_regions=tally.polled_regions,
        version_events=tally.version_events,
        regions_kib=tally.regions_bytes / max(tally.regions_events, 1) / 1024,
        errors=dict(tally.errors),
        version_mismatches=0,
        reconnects=tally.reconnects,
        idle_cpu=idle,
        cpu=cpu / voting,
        cpu_ms_per_vote=1000 * cpu / max(len(ok), 1),
        cpu_ms_per_vote_above_idle=1000 * max(0.0, cpu - idle * voting) / max(len(ok), 1),
        client_cpu=client_cpu / voting,
        machine_busy=machine[0],
        machine_stolen=machine[1],
        memory=memory,
    )


def measure(bench: Bench, participants: int, args: argparse.Namespace) -> Figures:
    """Make the groups, start the server as production does, drive it, stop it."""
    made = time.monotonic()
    teams = make_teams(bench, participants, math.ceil(args.seconds / args.interval) + 1)
    versions = read_versions(bench, teams)
    for team in teams:
        team.version = team.reached = versions[team.group_id]
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
        lifetime = bench.app.config["LIVE_STREAM_SECONDS"]
        figures = asyncio.run(
            drive(base, server.pid, teams, args, lifetime, lambda: read_versions(bench, teams))
        )
    finally:
        stop(server)
    figures.version_mismatches = count_mismatches(bench, teams)
    return figures


def count_mismatches(bench: Bench, teams: list[Team]) -> int:
    """Groups whose version in the database is not the one this script counted: the versions it
    waited for were then not those the votes made (a vote without an answer may have counted)."""
    versions = read_versions(bench, teams)
    return sum(1 for team in teams if versions[team.group_id] != team.reached)


def report(database: str, f: Figures) -> None:
    """One N's figures in words."""
    print(
        f"N={f.participants} ({f.groups} groups of {GROUP_SIZE}, {database}): "
        f"{f.connected}/{f.participants} pages loaded and streaming after {f.connect_s:.1f} s; "
        f"votes {f.votes} ok, failed {f.vote_errors or 0}, round trip p50 {f.vote_p50:.0f} ms, "
        f"p95 {f.vote_p95:.0f} ms; vote→every screen of its group updated p50 {f.screens_p50:.0f} ms, "
        f"p95 {f.screens_p95:.0f} ms (vote→one screen p50 {f.screen_p50:.0f} ms, p95 {f.screen_p95:.0f} ms); "
        f"screens updated {f.reached}/{f.expected}; {f.regions_events} regions events of "
        f"{f.regions_kib:.1f} KiB on average, {f.version_events} version events, regions polled "
        f"{f.polled_regions} times; "
        f"the room moved on {f.moves} times; errors {f.errors or 0}; "
        f"groups whose version was not as counted {f.version_mismatches}; "
        f"reconnects {f.reconnects}; server CPU {f.idle_cpu:.0%} of a core while idle, "
        f"{f.cpu:.0%} while voting, {f.cpu_ms_per_vote:.1f} ms per vote with its fan-out "
        f"({f.cpu_ms_per_vote_above_idle:.1f} ms above idle); "
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
        f"{bench.database}; {args.run} with {args.workers} gevent workers; groups of {GROUP_SIZE} in "
        f"their rooms, one vote per group every {args.interval:g} s for {args.seconds:g} s; "
        f"open-file limit {limit}",
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
        "N     | vote p50/p95 ms | vote→all screens p50/p95 ms | screens updated/expected | errors"
        " | server CPU, per vote | machine busy (stolen)"
    )
    for f in results:
        errors = sum(f.vote_errors.values()) + sum(f.errors.values()) + f.version_mismatches
        print(
            f"{f.participants:<6}| {f.vote_p50:6.0f} / {f.vote_p95:<6.0f} | "
            f"{f.screens_p50:10.0f} / {f.screens_p95:<14.0f} | {f.reached:>11}/{f.expected:<12} | "
            f"{errors:>6} | {f.cpu:.0%} of a core ({f.idle_cpu:.0%} idle), {f.cpu_ms_per_vote:.1f} ms | "
            f"{f.machine_busy:.0%} ({f.machine_stolen:.0%})"
        )


if __name__ == "__main__":
    main()
