"""What the benchmarks share: a database with members and groups made directly through the models,
session cookies signed by the app itself, gunicorn configured as run.py serves, and its CPU time.

Nothing here patches the standard library (run.py does, in the server's process only), so the
benchmarks can drive the server with threads, asyncio or wrk.
"""

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, g, session
from flask_login import login_user
from flask_migrate import upgrade
from flask_wtf.csrf import generate_csrf

from config import Config, database_url
from estimator import create_app
from estimator.auth.nicknames import nickname_key, nickname_skeleton
from estimator.extensions import db
from estimator.models import Group, Issue, Membership, Role, Round, User, new_token

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "bench-secret-key-not-for-production"
#: Sent with every request, as a browser sends its own: the login cookie is made for it.
USER_AGENT = "estimator-bench/1"
#: run.py's gunicorn settings (run.py itself cannot be imported: it patches the standard library).
WORKER_CONNECTIONS = 10_000


@dataclass(frozen=True)
class Login:
    """A member as the server sees them: their ids, signed session cookie and CSRF token."""

    user_id: int
    cookie: str
    csrf: str

    @property
    def headers(self) -> dict[str, str]:
        """What a browser holding this login sends with every request."""
        return {"Cookie": f"session={self.cookie}", "User-Agent": USER_AGENT}


class Bench:
    """A database for one benchmark run: SQLite in a fresh folder, or DATABASE_URL when set.

    The ballot keys live in a folder of their own under /dev/shm (the one-machine default's kind
    of store), removed by `close`.
    """

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="estimator-bench-"))
        #: Tells this run's nicknames apart from an earlier run's in the same PostgreSQL database.
        self.tag = str(time.time_ns())[-9:-3]
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.keys = Path(tempfile.mkdtemp(prefix="estimator-bench-keys-", dir=shm))
        self.uri = (
            database_url(os.environ.get("DATABASE_URL")) or f"sqlite:///{self.workdir / 'bench.sqlite'}"
        )
        config = type(
            "BenchConfig",
            (Config,),
            {
                "SQLALCHEMY_DATABASE_URI": self.uri,
                "SECRET_KEY": SECRET_KEY,
                "BALLOT_KEY_STORE_URI": f"shm://{self.keys}",
            },
        )
        self.app: Flask = create_app(config)
        with self.app.app_context():
            upgrade()

    @property
    def database(self) -> str:
        """The database's kind, as printed beside the figures."""
        return "PostgreSQL" if self.uri.startswith("postgresql") else "SQLite"

    @property
    def environment(self) -> dict[str, str]:
        """The server's environment: this database, key store and secret key."""
        return {
            **os.environ,
            "DATABASE_URL": self.uri,
            "SECRET_KEY": SECRET_KEY,
            "BALLOT_KEY_STORE_URI": f"shm://{self.keys}",
        }

    def close(self) -> None:
        shutil.rmtree(self.keys, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def users(self, count: int, prefix: str) -> list[User]:
        """`count` new users, committed, each with a known session token."""
        users = []
        for number in range(count):
            nickname = f"{prefix} {self.tag} {number}"
            users.append(
                User(
                    nickname=nickname,
                    nickname_key=nickname_key(nickname),
                    nickname_skeleton=nickname_skeleton(nickname),
                    session_token=new_token(),
                )
            )
        db.session.add_all(users)
        db.session.commit()
        return users

    def group(self, name: str, owner: User, members: list[User], issues: int, in_room: bool = False) -> Group:
        """A group facilitated by owner with these members and issues (each with its open first
        round), added to the session; the caller commits. With `in_room` its first issue is in
        the room, as if the facilitator had started it."""
        group = Group(name=name, deck="fibonacci", owner=owner)
        group.memberships.append(Membership(user=owner, role=Role.OWNER))
        group.memberships.extend(Membership(user=user, role=Role.MEMBER) for user in members)
        for position in range(1, issues + 1):
            issue = Issue(key=f"B-{position}", description=f"Issue number {position}", position=position)
            issue.rounds.append(Round(number=1))
            group.issues.append(issue)
        if in_room and group.issues:
            group.current_issue = group.issues[0]
        db.session.add(group)
        return group

    def logins(self, users: list[User]) -> list[Login]:
        """Each user's session cookie, as the login form would set it for a browser sending
        USER_AGENT from 127.0.0.1, signed by the app's own session serializer."""
        serializer = self.app.session_interface.get_signing_serializer(self.app)  # type: ignore[attr-defined]
        # Copies that outlive the session: each request context removes it when it ends.
        copies = [User(id=user.id, session_token=user.session_token) for user in users]
        found = []
        for user in copies:
            with self.app.test_request_context(
                "/login", environ_base={"REMOTE_ADDR": "127.0.0.1"}, headers={"User-Agent": USER_AGENT}
            ):
                login_user(user)
                session.permanent = True
                g.pop("csrf_token", None)  # generate_csrf keeps the app context's first token in g
                csrf = generate_csrf()
                found.append(Login(user.id, serializer.dumps(dict(session)), csrf))
        return found


def raise_open_file_limit() -> int:
    """Let this process (and the server it starts) hold as many connections as the system allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def gunicorn_command(app: str, port: int, workers: int, access_log: Path | None) -> list[str]:
    """gunicorn as run.py configures it: gevent workers holding WORKER_CONNECTIONS each."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--worker-class",
        "gevent",
        "--worker-connections",
        str(WORKER_CONNECTIONS),
        "--bind",
        f"127.0.0.1:{port}",
    ]
    if access_log is not None:
        command += ["--access-logfile", str(access_log)]
    return [*command, app]


def serve(command: list[str], environment: dict[str, str], log: Path, ready: str) -> subprocess.Popen[bytes]:
    """Start the server and wait until `ready` (a URL) answers 200."""
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(ready, timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError as error:
            if process.poll() is not None or time.monotonic() > deadline:
                stop(process)
                raise RuntimeError(f"the server did not start:\n{log.read_text()}") from error
            time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop gunicorn at once (SIGINT): its open event streams would hold a graceful stop."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def process_tree(pid: int) -> list[int]:
    """The process and its children (gunicorn's master and workers)."""
    found = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float:
    """User and system CPU time used so far by the process and its children that still run."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def machine_ticks() -> tuple[int, int, int]:
    """The machine's CPU time so far, every core and process included, in clock ticks: busy,
    stolen (wanted, but given by the host to another virtual machine) and all."""
    fields = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle, stolen = fields[3] + fields[4], fields[7]  # idle and iowait; steal
    return sum(fields) - idle - stolen, stolen, sum(fields)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: list[float], share: float) -> float:
    """The value below which `share` of the values lie (nearest rank); NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(share * len(ordered))) - 1))]
