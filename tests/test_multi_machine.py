"""Several machines behind a load balancer, set up as docs/deploy.md says: three copies of the
project (each with an instance folder of its own, as on three machines), one PostgreSQL, one Redis
without persistence for the ballot keys and the rate limits, and the balancer configuration of
deploy/ in front (Debian's HAProxy, or nginx) doing round robin with no sticky sessions.

A meeting of a facilitator and ten members runs through the balancer, each member holding the
room's event stream; a machine is killed during the voting; then the database goes away and
comes back. A machine set up against the promise (another secret key, its own ballot key store)
is refused at its start, saying which setting to change."""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.sse import EventReader
from tests.helpers import start_redis, stop_redis, wait_until
from tests.http import Person, room_of_a_new_group
from tests.server import ROOT, ThrowawayPostgres, free_port, project_copy, serve, start_gunicorn, stop

DEPLOY = ROOT / "deploy"
MACHINES = 3
#: gunicorn workers per machine: three machines of two on this machine's two cores.
WORKERS = 2
MEMBERS = 10
#: Members voting, and changing their cards, while a machine is killed; the others vote afterwards.
EARLY = 6
SECRET = "the-same-long-random-secret-on-every-machine"
LIVE = 2.0  # seconds: a stream hears a change within this (what the spec promises)
#: How long the database stays down: longer than HAProxy takes to give up on a machine whose
#: check fails (fall 2 × inter 2 s in deploy/haproxy.cfg), so that a check asking the database
#: would show here as HAProxy's own 503.
OUTAGE = 8.0
CARDS = ("1", "2", "3", "5", "8", "13", "21")
DOWN_MESSAGE = "Estimator cannot reach its database right now."


@dataclass
class Machines:
    """The app served by several gunicorns on one database and one Redis, and what they share."""

    database_uri: str
    environment: dict[str, str]
    folder: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def start(self, name: str, **changes: str) -> tuple[subprocess.Popen[bytes], str]:
        """Another machine: a copy of the project of its own, the shared settings with `changes`."""
        return start_gunicorn(
            self.database_uri,
            self.folder / f"{name}.log",
            folder=project_copy(self.folder / name),
            workers=WORKERS,
            **{**self.environment, **changes},
        )


@pytest.fixture
def machines(throwaway_postgres: ThrowawayPostgres, tmp_path: Path) -> Iterator[Machines]:
    """Three machines serving, their schema brought up to date once by `flask db upgrade`."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("redis-server is not installed; several machines need a shared Redis")
    admin = sa.create_engine(throwaway_postgres.uri("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql("CREATE DATABASE estimator")
    admin.dispose()
    redis_port = free_port()
    redis = start_redis(redis_server, redis_port, tmp_path)
    store = f"redis://127.0.0.1:{redis_port}/0"
    site = Machines(
        throwaway_postgres.uri("estimator"),
        {
            "SECRET_KEY": SECRET,
            "BALLOT_KEY_STORE_URI": store,
            "RATELIMIT_STORAGE_URI": store,
            # machines × workers × pool within PostgreSQL's max_connections (100): 3 × 2 × 10
            "DATABASE_POOL_SIZE": "10",
        },
        tmp_path,
    )
    try:
        upgrade = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "estimator", "db", "upgrade"],
            cwd=ROOT,
            env={**os.environ, **site.environment, "DATABASE_URL": site.database_uri},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        with ThreadPoolExecutor(MACHINES) as pool:
            starts = [pool.submit(site.start, f"machine{n}") for n in range(1, MACHINES + 1)]
            for start in starts:
                if start.exception() is None:
                    process, url = start.result()
                    site.processes.append(process)
                    site.urls.append(url)
        for start in starts:
            start.result()  # the first failure to start, if any, with its log
        yield site
    finally:
        for process in site.processes:
            if process.poll() is None:
                stop(process)
        stop_redis(redis)


def balancer_settings(port: int, machines: list[str]) -> dict[str, str]:
    """The variables the configurations of deploy/ are written with: where the balancer listens,
    and each machine's address (URLs or host:port)."""
    addresses = {f"ESTIMATOR_MACHINE_{n}": url.removeprefix("http://") for n, url in enumerate(machines, 1)}
    return {"ESTIMATOR_LISTEN": f"127.0.0.1:{port}", **addresses}


def haproxy(settings: dict[str, str], folder: Path, check: bool) -> list[str]:
    """HAProxy on deploy/haproxy.cfg as it is: it reads the addresses from its environment."""
    return ["haproxy", "-c" if check else "-db", "-f", str(DEPLOY / "haproxy.cfg")]


def nginx(settings: dict[str, str], folder: Path, check: bool) -> list[str]:
    """nginx on deploy/nginx.conf with the addresses filled in as envsubst would (nginx's own
    variables left alone), its pid file in folder and its error log on its standard error."""
    config = folder / "nginx.conf"
    config.write_text(string.Template((DEPLOY / "nginx.conf").read_text()).safe_substitute(settings))
    options = ["-t"] if check else []
    return [
        "nginx",
        *options,
        "-p",
        str(folder),
        "-c",
        str(config),
        "-e",
        "stderr",
        "-g",
        "daemon off; pid nginx.pid;",
    ]


BALANCERS = {"haproxy": haproxy, "nginx": nginx}


def balancer_environment(settings: dict[str, str]) -> dict[str, str]:
    """The balancer's environment: its settings, and a maxconn within this machine's open-file
    limit (HAProxy raises its own to twice maxconn)."""
    return {**os.environ, **settings, "ESTIMATOR_MAXCONN": "4000"}


def installed(program: str) -> None:
    """Skip the test when the balancer is not installed."""
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed (Debian's package {program}; .ci/run installs it)")


@pytest.fixture(params=sorted(BALANCERS))
def balancer(request, machines: Machines) -> Iterator[str]:
    """The URL of the balancer in front of the machines."""
    program = request.param
    installed(program)
    port = free_port()
    settings = balancer_settings(port, machines.urls)
    command = BALANCERS[program](settings, machines.folder, check=False)
    url = f"http://127.0.0.1:{port}"
    log = machines.folder / f"{program}.log"
    process = serve(command, balancer_environment(settings), log, url + "/healthz")
    try:
        yield url
    finally:
        stop(process)


def kill_machine(process: subprocess.Popen[bytes], url: str) -> None:
    """SIGKILL a gunicorn and its workers at once, as a machine that dies: nothing is finished.
    Returns once its address refuses connections: the last of its threads has closed the socket,
    and with it the connections accepted meanwhile."""
    workers = [pid for pid, parent in _processes() if parent == process.pid]
    for pid in [process.pid, *workers]:
        os.kill(pid, signal.SIGKILL)
    process.wait()
    wait_until(lambda: _refuses(url), 30, f"{url} refuses connections")


def _processes() -> list[tuple[int, int]]:
    """(pid, parent pid) of every process."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append(
                    (int(entry.name), int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1]))
                )
            except (OSError, IndexError, ValueError):
                pass  # gone meanwhile
    return found


def _refuses(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


class Listener:
    """A member's open room: its event stream through the balancer, opened again a second after it
    ends or fails, from the version it last heard, as the page's script does."""

    def __init__(self, person: Person, group_id: int, version: int) -> None:
        self.person = person
        self.path = f"/api/groups/{group_id}/events?view=room&since="
        self.version = version
        self.heard: list[tuple[float, int]] = []  # (time.monotonic(), version) of each version event
        self.opened: list[float] = []  # when each stream answered 200
        self.statuses: list[int] = []
        self.cut = 0  # streams that failed rather than end
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.listen()
            except (OSError, http.client.HTTPException):  # the machine holding it died
                self.cut += 1
            self.done.wait(1.0)

    def listen(self) -> None:
        request = urllib.request.Request(
            self.person.base_url + self.path + str(self.version), headers={"Accept": "text/event-stream"}
        )
        with self.person.opener.open(request, timeout=30) as response:
            self.statuses.append(response.status)
            if response.status != 200:
                return
            self.opened.append(time.monotonic())
            reader = EventReader()
            while not self.done.is_set():
                chunk = response.read1(65536)
                if not chunk:
                    return
                for message in reader.feed(chunk):
                    if message.event == "version":
                        self.version = json.loads(message.data)["version"]
                        self.heard.append((time.monotonic(), self.version))

    def heard_at(self, version: int) -> float | None:
        """When this stream first heard `version` or a later one."""
        return next((at for at, heard in self.heard if heard >= version), None)


@dataclass
class Vote:
    """One vote sent as the room's script sends it: its card, when, and its answer (None: the
    connection failed)."""

    card: str
    started: float
    finished: float
    status: int | None


def vote(person: Person, issue_id: int, token: str, card: str) -> Vote:
    started = time.monotonic()
    try:
        status, _, _ = person.request(
            f"/issues/{issue_id}/estimate",
            {"value": card},
            {"Accept": "application/json", "X-CSRFToken": token},
        )
    except (OSError, http.client.HTTPException):
        status = None
    return Vote(card, started, time.monotonic(), status)


def keep_voting(person: Person, issue_id: int, token: str, done: threading.Event, log: list[Vote]) -> None:
    """Vote and change one's card again and again until told to stop."""
    while not done.is_set():
        log.append(vote(person, issue_id, token, random.choice(CARDS)))
        time.sleep(0.1)


def member(url: str, nickname: str, invite: str) -> Person:
    """Somebody who logs in and joins the group through its invite link, all through the balancer."""
    person = Person(url)
    assert person.login(nickname) == 302
    assert person.join(invite) == 302
    return person


def version(owner: Person, group_id: int) -> int:
    """The group's version as the room shows it now."""
    return int(owner.api(f"/api/groups/{group_id}/regions?view=room")["version"])


def heard_within(listeners: list[Listener], owner: Person, group_id: int, changed: float) -> list[float]:
    """Seconds from a change's answer (`changed`) until each stream heard it."""
    now = version(owner, group_id)
    wait_until(lambda: all(listener.heard_at(now) for listener in listeners), 30, f"version {now} heard")
    return [round(float(listener.heard_at(now) or 0) - changed, 2) for listener in listeners]


@pytest.mark.server
def test_a_meeting_through_the_balancer_survives_a_killed_machine_and_a_database_outage(
    machines: Machines, balancer: str, throwaway_postgres: ThrowawayPostgres
):
    owner, group_id, invite = room_of_a_new_group(balancer)
    issue_id = owner.api(f"/api/groups/{group_id}")["issues"][0]["id"]
    people = [member(balancer, f"Member {n}", invite) for n in range(1, MEMBERS + 1)]
    tokens = [person.token(f"/issues/{issue_id}/estimate") for person in people]

    # Every member's room holds a stream; opened one after another, round robin spreads them
    # over the machines, so the machine killed below holds some.
    since = version(owner, group_id)
    listeners: list[Listener] = []
    done = threading.Event()  # the voters' signal to stop
    voters: list[threading.Thread] = []
    try:
        for person in people:
            listeners.append(Listener(person, group_id, since))
            wait_until(lambda: listeners[-1].opened, 60, "the stream answered")

        # Six members vote and change their cards while the second machine dies.
        votes: list[list[Vote]] = [[] for _ in range(EARLY)]
        for n in range(EARLY):
            voters.append(
                threading.Thread(target=keep_voting, args=(people[n], issue_id, tokens[n], done, votes[n]))
            )
            voters[-1].start()
        wait_until(lambda: all(sum(v.status == 200 for v in log) >= 2 for log in votes), 60, "votes")
        dying = time.monotonic()
        kill_machine(machines.processes[1], machines.urls[1])
        killed = time.monotonic()
        wait_until(
            lambda: all(sum(v.started > killed and v.status == 200 for v in log) >= 3 for log in votes),
            60,
            "every voter's votes acknowledged after the kill",
        )
        done.set()
        for thread in voters:
            thread.join(timeout=60)
        # A voter whose last vote went unanswered sends it again, as a person would.
        for n, log in enumerate(votes):
            if log[-1].status != 200:
                log.append(vote(people[n], issue_id, tokens[n], log[-1].card))
        answers = Counter(v.status for log in votes for v in log)
        in_flight = [v for log in votes for v in log if v.started <= killed and v.finished >= dying]
        failed = [v for log in votes for v in log if v.status != 200]
        assert set(answers) <= {200, 502, None}, answers
        assert all(v in in_flight for v in failed), (failed, dying, killed)  # what the dead machine held
        assert all(log[-1].status == 200 for log in votes), votes

        # The streams the dead machine held came back through the others; from then on every
        # stream hears every change within 2 s: the other members' first votes, then the reveal.
        assert sum(listener.cut for listener in listeners) >= 1, "no stream was on the killed machine"
        wait_until(
            lambda: all(listener.opened[-1] > killed for listener in listeners if listener.cut),
            30,
            "the cut streams were opened again",
        )
        delays = []
        cards = [log[-1].card for log in votes]
        for n in range(EARLY, MEMBERS):
            cards.append(random.choice(CARDS))
            assert vote(people[n], issue_id, tokens[n], cards[-1]).status == 200
            delays.append(heard_within(listeners, owner, group_id, time.monotonic()))
        token = owner.token(f"/issues/{issue_id}")
        assert owner.post(f"/issues/{issue_id}/reveal", {}, token) == 302
        delays.append(heard_within(listeners, owner, group_id, time.monotonic()))
        assert max(max(row) for row in delays) <= LIVE, delays
        assert {200} == {status for listener in listeners for status in listener.statuses}
    finally:
        done.set()
        for listener in listeners:
            listener.done.set()
        for thread in [*voters, *(listener.thread for listener in listeners)]:
            thread.join(timeout=60)

    # Every acknowledged card counted once: ten voters, each one's last card.
    result = owner.api(f"/api/issues/{issue_id}")["result"]
    assert result is not None and result["votes"] == MEMBERS, result
    assert Counter(result["distribution"]) == Counter(cards), (result, cards)

    # The database goes away: through the balancer, pages answer the site's own 503 page all along.
    throwaway_postgres.stop()
    went_down = time.monotonic()
    pages = []
    while time.monotonic() < went_down + OUTAGE:
        status, body, headers = owner.request("/")
        pages.append((status, headers.get("Retry-After"), _title(body), DOWN_MESSAGE in body))
        time.sleep(0.2)
    throwaway_postgres.start()
    assert set(pages) == {(503, "5", "503 · Estimator", True)}, Counter(pages)
    wait_until(lambda: owner.request("/")[0] == 200, 30, "the dashboard served again")
    assert owner.api(f"/api/issues/{issue_id}")["result"] == result


def _title(page: str) -> str:
    found = re.search(r"<title>([^<]*)</title>", page)
    return " ".join(found.group(1).split()) if found else page[:80]


#: Machines set up against the others, and the setting each refusal must name.
MISTAKES = [
    ({"SECRET_KEY": "another-secret"}, "SECRET_KEY"),
    ({"SECRET_KEY": ""}, "SECRET_KEY"),  # none: the machine would generate its own
    ({"BALLOT_KEY_STORE_URI": ""}, "BALLOT_KEY_STORE_URI"),  # the default: this machine's own
]


@pytest.mark.server
def test_a_machine_set_up_against_the_others_is_refused_saying_what_to_set(machines: Machines):
    accepted = []
    for n, (changes, setting) in enumerate(MISTAKES):
        try:
            process, _ = machines.start(f"mistaken{n}", **changes)
        except RuntimeError as refused:  # it stopped: its log says why
            assert setting in str(refused), str(refused)[-3000:]
        else:
            stop(process)
            accepted.append(changes)
    assert not accepted, f"machines started beside the others with {accepted}"
    for url in machines.urls:  # the machines set up right go on serving
        with urllib.request.urlopen(url + "/readyz", timeout=30) as response:
            assert response.status == 200


# --- the recipe as docs/deploy.md gives it ------------------------------------------------------------


def guide_section(title: str) -> str:
    """A section of docs/deploy.md, from its heading to the next heading of its level or above."""
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    _, found, rest = text.partition(f"\n### {title}\n")
    assert found, f"docs/deploy.md has no section {title!r}"
    return re.split(r"\n#{2,3} ", rest)[0]


def test_the_guide_binds_machines_where_a_balancer_reaches_them_and_names_what_the_configurations_read():
    section = guide_section("Behind a load balancer")
    assert "gunicorn -w 4 --bind 0.0.0.0:8000 'estimator:create_app()'" in section
    for path in ("deploy/haproxy.cfg", "deploy/nginx.conf"):
        assert f"`{path}`" in section and (ROOT / path).is_file(), path
        variables = set(re.findall(r"\$\{(ESTIMATOR_\w+?)(?:-[^}]*)?\}", (ROOT / path).read_text()))
        assert variables, path
        assert all(name in section for name in variables), (path, variables)
    assert "`/healthz`, not `/readyz`" in section
    arithmetic = guide_section("Database connections for N machines")
    assert "machines × workers per machine" in arithmetic and "`max_connections`" in arithmetic


def test_the_configurations_check_healthz_and_pass_events_on_at_once():
    haproxy_config = (DEPLOY / "haproxy.cfg").read_text()
    nginx_config = (DEPLOY / "nginx.conf").read_text()
    assert "http-check send meth GET uri /healthz" in haproxy_config and "uri /readyz" not in haproxy_config
    assert "option http-no-delay" in haproxy_config and "balance roundrobin" in haproxy_config
    assert "proxy_buffering off;" in nginx_config


@pytest.mark.parametrize("program", sorted(BALANCERS))
def test_the_balancer_accepts_its_configuration(program, tmp_path):
    installed(program)
    settings = balancer_settings(free_port(), [f"127.0.0.1:{free_port()}" for _ in range(MACHINES)])
    command = BALANCERS[program](settings, tmp_path, check=True)
    checked = subprocess.run(
        command, env=balancer_environment(settings), capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
