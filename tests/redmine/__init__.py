"""A real Redmine for the tests: Debian's `redmine` package, served by `thin` on loopback.

Each test run (each pytest-xdist worker) gets a Redmine of its own: a copy of the installed
SQLite database in a temporary folder, prepared by `setup.rb` (REST API on, logins required, a
project with three issues and a "Story points" field) and served on a free port. Nothing of the
installed Redmine is changed. Starting takes some 10 seconds, once per run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REDMINE = Path("/usr/share/redmine")
INSTALLED_DATABASE = Path("/var/lib/dbconfig-common/sqlite3/redmine/instances/default/redmine_default")
THIN = Path("/usr/bin/thin")
SETUP = Path(__file__).with_name("setup.rb")
#: The user Debian's Redmine runs as: its folders (log, tmp, files) are that user's.
RUN_AS = "www-data"


@dataclass
class Redmine:
    """A running Redmine, its administrator's API key and what setup.rb made."""

    url: str
    port: int
    key: str
    project: str
    story_points: int
    issues: list[int]
    process: subprocess.Popen[bytes]
    folder: Path

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        """Redmine's own answer to GET path, as the administrator."""
        response = httpx.get(
            self.url + path, params=params, headers={"X-Redmine-API-Key": self.key}, timeout=10
        )
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def put(self, path: str, body: dict[str, Any]) -> None:
        """Change something in Redmine directly, as the administrator."""
        response = httpx.put(self.url + path, json=body, headers={"X-Redmine-API-Key": self.key}, timeout=10)
        response.raise_for_status()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create something in Redmine directly, as the administrator."""
        response = httpx.post(self.url + path, json=body, headers={"X-Redmine-API-Key": self.key}, timeout=10)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def new_project(self, identifier: str, issues: list[tuple[str, float | None]]) -> list[int]:
        """A project of one test, with these issues (subject, estimated hours); their ids."""
        project = self.post(
            "/projects.json",
            {"project": {"name": identifier.title(), "identifier": identifier, "is_public": False,
                         "tracker_ids": [1], "enabled_module_names": ["issue_tracking", "time_tracking"]}},
        )["project"]  # fmt: skip
        return [
            self.post(
                "/issues.json",
                {
                    "issue": {
                        "project_id": project["id"],
                        "tracker_id": 1,
                        "subject": subject,
                        "estimated_hours": hours,
                    }
                },
            )["issue"]["id"]
            for subject, hours in issues
        ]

    def issue(self, number: int) -> dict[str, Any]:
        """One issue as Redmine's API shows it."""
        issue: dict[str, Any] = self.get(f"/issues/{number}.json")["issue"]
        return issue


def installed() -> str | None:
    """None when Redmine and thin are installed, else what is missing."""
    for path in (REDMINE / "config.ru", INSTALLED_DATABASE, THIN):
        if not path.exists():
            return f"{path} is missing: install Debian's redmine, redmine-sqlite and thin (.ci/run does)"
    return None


def free_port() -> int:
    """A port nobody listens on at the moment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def as_user(user: str | None) -> dict[str, Any]:
    """Popen's arguments to run as user, in that user's group alone (Redmine's files are theirs)."""
    return {} if user is None else {"user": user, "group": user, "extra_groups": []}


def start() -> Redmine:
    """Prepare a copy of the installed database and serve it; answers before this returns."""
    folder = Path(tempfile.mkdtemp(prefix="estimator-redmine-"))
    database = folder / "redmine.db"
    shutil.copyfile(INSTALLED_DATABASE, database)
    shutil.copyfile(SETUP, folder / "setup.rb")
    user = RUN_AS if os.geteuid() == 0 else None
    if user is not None:
        shutil.chown(folder, user)
        shutil.chown(database, user)
    folder.chmod(0o755)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(folder),
        "RAILS_ENV": "production",
        "DATABASE_URL": f"sqlite3:{database}",
    }
    prepared = subprocess.run(
        ["bin/rails", "runner", str(folder / "setup.rb")],
        cwd=REDMINE,
        env=env,
        **as_user(user),
        capture_output=True,
        timeout=120,
        check=False,
    )
    if prepared.returncode != 0:
        raise RuntimeError(f"Redmine's setup failed: {prepared.stderr.decode(errors='replace')[-2000:]}")
    made = json.loads(prepared.stdout.decode().strip().splitlines()[-1])
    port = free_port()
    with (folder / "thin.log").open("wb") as log:  # the server writes to its own copy
        process = subprocess.Popen(
            [str(THIN), "start", "-R", "config.ru", "-e", "production", "-a", "127.0.0.1", "-p", str(port)],
            cwd=REDMINE,
            env=env,
            **as_user(user),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    redmine = Redmine(
        f"http://127.0.0.1:{port}", port, made["key"], made["project"], made["story_points"], made["issues"],
        process, folder,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            redmine.get("/users/current.json")
            return redmine
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop(redmine)
                raise RuntimeError(
                    f"Redmine did not start: {(folder / 'thin.log').read_text()[-2000:]}"
                ) from None
            time.sleep(0.2)


def stop(redmine: Redmine) -> None:
    """Stop the Redmine this run started, by its pid, and remove its folder."""
    redmine.process.terminate()
    try:
        redmine.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        redmine.process.kill()
        redmine.process.wait()
    shutil.rmtree(redmine.folder, ignore_errors=True)
