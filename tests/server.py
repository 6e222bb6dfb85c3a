"""The app served by gunicorn with several workers, for browser and concurrency tests."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 3
STARTUP_SECONDS = 180  # at most, until the first answer
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_gunicorn(
    database_uri: str, log_path: Path, *, folder: Path = ROOT, workers: int = WORKERS, **env: str
) -> tuple[subprocess.Popen[bytes], str]:
    """Serve the app from `folder` (the project's, or a copy: see project_copy) on a free port with
    `workers` gunicorn workers; returns the process and its URL."""
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": database_uri,
        "SECRET_KEY": "served-test-secret",
        "LOGIN_RATE_LIMIT": "100000 per minute",
        "LIVE_HEARTBEAT_SECONDS": "1",  # so that a test sees quiet streams' heartbeats soon
        # The served app's row in `instances` is written at start and not every 15 s: a write from
        # another process in between would fail a test's own SQLite transaction that read first
        # ("database is locked"), and the other servers of the test database have its settings.
        "INSTANCE_HEARTBEAT_SECONDS": "3600",
        **env,
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--worker-class",
        "gevent",
        "--bind",
        f"127.0.0.1:{port}",
        # No control socket: every gunicorn would take the same $HOME/.gunicorn/gunicorn.ctl, and
        # one stopping would remove the socket of another that runs meanwhile (a parallel test).
        "--no-control-socket",
        "estimator:create_app()",
    ]
    url = f"http://127.0.0.1:{port}"
    return serve(command, environment, log_path, url + "/login", folder=folder), url


def project_copy(folder: Path) -> Path:
    """A copy of the project in folder, as another machine has one: every file and folder of the
    project linked, but no instance folder, so that the app served from it makes its own (its
    generated secret key, its default ballot key store)."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in ROOT.iterdir():
        if entry.name not in {"instance", ".git", ".venv"}:
            (folder / entry.name).symlink_to(entry)
    return folder


def serve(
    command: list[str],
    environment: dict[str, str],
    log_path: Path,
    ready: str,
    within: float = STARTUP_SECONDS,
    folder: Path = ROOT,
) -> subprocess.Popen[bytes]:
    """Run a server command from folder, its output in log_path, until `ready` (a URL)
    answers 200. The first answer waits for the workers to load the app: seconds on an idle
    machine, a minute and more on one that parallel tests keep busy. A request is not given up
    before the deadline (a worker would answer it all the same, and then each retry); refused ones
    are tried again."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=folder, env=environment, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + within
    while True:
        try:
            left = max(1.0, deadline - time.monotonic())
            with urllib.request.urlopen(ready, timeout=left) as response:
                if response.status == 200:
                    return process
        except OSError as error:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(f"{command} did not start:\n" + log_path.read_text()) from error
            time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary folder on a free port, run by its own pg_ctl."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        # initdb refuses to run as root; the cluster then belongs to the postgres OS user.
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_owner:
            shutil.chown(root, "postgres", "postgres")

    def run(self, *command: str) -> None:
        subprocess.run([*self.as_owner, *command], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self.run(str(POSTGRES_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        log = str(self.root / "postgres.log")
        self.run(str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self.run(str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def uri(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"
