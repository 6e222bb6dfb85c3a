"""A full disk: writes answer the site's 503 with one log line while reads go on, and once space
is freed writes work again at once, without the write-ahead log growing back over the space."""

import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

from estimator.extensions import db
from tests.conftest import add_issue, create_group, join, login, vote
from tests.helpers import group_json, issue_json, wait_until
from tests.server import POSTGRES_BIN, ThrowawayPostgres

FULL_MESSAGE = "Estimator cannot save anything right now."
VOLUME = "4m"


@pytest.fixture
def small_volume() -> Iterator[Path]:
    """A 4 MiB memory-backed volume of this test alone, unmounted afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="estimator-full-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={VOLUME},mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        folder.rmdir()


@pytest.fixture
def app(make_app, small_volume):
    """The app on a SQLite database in the small volume, its schema made by the migrations."""
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{small_volume / 'estimator.sqlite'}")
    with app.app_context():
        upgrade()
    return app


def fill(folder: Path) -> Path:
    """A junk file that takes every byte left on the volume."""
    junk = folder / "junk"
    descriptor = os.open(junk, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(descriptor, b"\0" * 65536)
    except OSError as error:
        assert error.errno == 28, error  # ENOSPC
    try:
        while True:
            os.write(descriptor, b"\0")
    except OSError:
        pass
    os.close(descriptor)
    return junk


def used(folder: Path) -> int:
    """Bytes the database's files take."""
    return sum(path.stat().st_size for path in folder.glob("estimator.sqlite*"))


def test_writes_answer_503_while_the_disk_is_full_and_work_again_once_it_is_freed(
    app, team, small_volume, caplog
):
    owner, bob, carol = team["owner"], team["bob"], team["carol"]
    group_id, issue_id = team["group"], team["issue"]
    assert vote(bob, issue_id, "3").status_code == 302
    junk = fill(small_volume)

    caplog.clear()
    with caplog.at_level(logging.INFO):
        refused_vote = vote(carol, issue_id, "5")
        refused_issue = owner.post(f"/groups/{group_id}/issues", data={"key": "FULL-1"})
        refused_json = carol.post(
            f"/issues/{issue_id}/estimate", data={"value": "8"}, headers={"Accept": "application/json"}
        )
        # Reads go on: the pages and the JSON state show what was saved before.
        page = owner.get(f"/groups/{group_id}")
        state = issue_json(owner, issue_id)
    for refused in (refused_vote, refused_issue):
        assert refused.status_code == 503, refused.get_data(as_text=True)[:2000]
        assert refused.headers["Retry-After"] == "5"
        assert FULL_MESSAGE in refused.get_data(as_text=True)
    assert refused_json.status_code == 503 and FULL_MESSAGE in refused_json.get_json()["error"]
    assert page.status_code == 200
    # Nothing half-written: Bob's vote alone, and no new issue.
    assert state["votes_cast"] == 1
    assert "FULL-1" not in [issue["key"] for issue in group_json(owner, group_id)["issues"]]
    lines = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(lines) == 3, [record.getMessage() for record in lines]
    assert all(re.search(r"database full: POST \S+ answered 503", record.getMessage()) for record in lines)
    assert all(record.exc_info is None and "\n" not in record.getMessage() for record in lines)

    junk.unlink()
    wait_until(lambda: vote(carol, issue_id, "5").status_code == 302, 5, "a vote is taken again")
    assert issue_json(owner, issue_id)["votes_cast"] == 2

    # A meeting goes on: the write-ahead log is given back to the database, not grown over the
    # space that was freed (it used to fill the volume again before its first checkpoint).
    for n in range(250):
        add_issue(app, owner, group_id, key=f"MORE-{n}", description="y" * 480)
        assert vote(bob, issue_id, str(n % 10 + 1)).status_code == 302
    assert used(small_volume) < 2 * 1024 * 1024, used(small_volume)
    assert issue_json(owner, issue_id)["votes_cast"] == 2


class PostgresOnSmallVolume(ThrowawayPostgres):
    """A throwaway cluster whose data folder (and write-ahead log) lies on a small tmpfs of its own,
    with 1 MiB log segments so that the cluster fits."""

    def __init__(self, root: Path, size: str) -> None:
        super().__init__(root)
        self.data.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(self.data)],
            check=True,
            capture_output=True,
        )
        if self.as_owner:
            shutil.chown(self.data, "postgres", "postgres")

    def init(self) -> None:
        self.run(
            str(POSTGRES_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "--wal-segsize=1", "--no-sync",
        )  # fmt: skip

    def running(self) -> bool:
        """Whether the postmaster runs (after a PANIC it restarts by itself, or gives up)."""
        status = subprocess.run(
            [*self.as_owner, str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
        )
        return status.returncode == 0

    def remove(self) -> None:
        """Stop the cluster if it runs (whatever state a full disk left it in), unmount its volume
        and remove its folder."""
        if self.running():
            subprocess.run(
                [
                    *self.as_owner,
                    str(POSTGRES_BIN / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                    "stop",
                ],
                check=False,
                capture_output=True,
            )
        subprocess.run(["umount", "-l", str(self.data)], check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def postgres_on_small_volume() -> Iterator[PostgresOnSmallVolume]:
    """A running cluster on a 96 MiB tmpfs, stopped, unmounted and removed afterwards."""
    if not (POSTGRES_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL's initdb is not installed ({POSTGRES_BIN}); the test needs its own cluster")
    root = Path(tempfile.mkdtemp(prefix="estimator-pgfull-"))
    try:
        cluster = PostgresOnSmallVolume(root, "96m")
    except subprocess.CalledProcessError as error:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {error.stderr.decode().strip()}")
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.mark.server
def test_postgresql_with_a_full_disk_answers_503_and_writes_work_again_once_it_is_freed(
    postgres_on_small_volume, make_app, caplog
):
    cluster = postgres_on_small_volume
    admin = sa.create_engine(
        cluster.uri("postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )
    with admin.connect() as connection:
        connection.exec_driver_sql("CREATE DATABASE estimator")
    admin.dispose()
    app = make_app(SQLALCHEMY_DATABASE_URI=cluster.uri("estimator"))
    with app.app_context():
        upgrade()
    owner, bob, carol, dave = (app.test_client() for _ in range(4))
    for client, nickname in ((owner, "Olivia"), (bob, "Bob"), (carol, "Carol"), (dave, "Dave")):
        assert login(client, nickname).status_code == 302
    group_id = create_group(owner)
    for member in (bob, carol, dave):  # three votes besides the facilitator's, for the reveal
        assert join(app, member, group_id).status_code == 302
    issue_id = add_issue(app, owner, group_id)
    assert vote(bob, issue_id, "3").status_code == 302
    junk = fill(cluster.data)

    statuses: Counter[int] = Counter()
    with caplog.at_level(logging.INFO):
        # New issues need new pages (refused: disk_full); changed cards only more write-ahead log,
        # taken while its segments have room, after which PostgreSQL would stop (PANIC).
        for n in range(100):
            for answer in (
                owner.post(f"/groups/{group_id}/issues", data={"key": f"FULL-{n}", "description": "y" * 480}),
                vote(bob, issue_id, str(n % 10 + 1)),
            ):
                statuses[answer.status_code] += 1
                if answer.status_code == 503:
                    assert answer.headers["Retry-After"] == "5"
    assert set(statuses) <= {302, 503} and statuses[503], statuses
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]

    junk.unlink()
    if not cluster.running():  # it gave up after the PANIC: the operator starts it again
        cluster.start()
    wait_until(lambda: vote(bob, issue_id, "5").status_code == 302, 15, "a vote is taken again")
    assert vote(carol, issue_id, "5").status_code == 302 and vote(dave, issue_id, "8").status_code == 302
    assert issue_json(owner, issue_id)["votes_cast"] == 3
    assert owner.post(f"/issues/{issue_id}/reveal").status_code == 302
    assert issue_json(owner, issue_id)["result"]["distribution"] == {"5": 2, "8": 1}
    with app.app_context():
        db.engine.dispose()
