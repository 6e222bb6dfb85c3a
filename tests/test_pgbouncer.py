"""The app served through PgBouncer in transaction mode, as docs/deploy.md advises for several
machines: each transaction may land on another server connection, so nothing may rely on what a
connection remembers between transactions (prepared statements, session settings, locks)."""

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

from config import database_url
from estimator import create_app
from tests.conftest import make_config
from tests.helpers import wait_until
from tests.http import Person
from tests.server import WORKERS, free_port, start_gunicorn, stop
from tests.test_live import Listener, open_stream

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
ON_POSTGRESQL = (database_url(os.environ.get("DATABASE_URL")) or "").startswith("postgres")

postgresql_only = pytest.mark.skipif(
    not ON_POSTGRESQL, reason="PostgreSQL only: PgBouncer pools PostgreSQL connections"
)


def start_pgbouncer(folder: Path, server: sa.URL) -> tuple[subprocess.Popen[bytes], int]:
    """Debian's pgbouncer on a free port in front of the test's PostgreSQL server, in transaction
    mode with two server connections per database and user, so that successive transactions of
    one client really run on different server connections. It refuses to run as root."""
    port = free_port()
    (folder / "users.txt").write_text(f'"{server.username}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server.host} port={server.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 500\n"
        f"logfile = {folder / 'pgbouncer.log'}\n"
    )
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_owner:
        shutil.chown(folder, "postgres", "postgres")
        for path in folder.iterdir():
            shutil.chown(path, "postgres", "postgres")
    process = subprocess.Popen(
        [*as_owner, PGBOUNCER, str(folder / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    through = server.set(host="127.0.0.1", port=port)
    engine = sa.create_engine(through, poolclass=sa.pool.NullPool)

    def answers() -> bool:
        assert process.poll() is None, (folder / "pgbouncer.log").read_text()
        try:
            with engine.connect() as connection:
                return connection.exec_driver_sql("SELECT 1").scalar() == 1
        except sa.exc.OperationalError:
            return False

    try:
        wait_until(answers, 30, "pgbouncer answers")
    except BaseException:
        stop(process)
        raise
    finally:
        engine.dispose()
    return process, port


@pytest.fixture
def pgbouncer(schema) -> Iterator[str]:
    """The test database's URL through a PgBouncer of this test alone, stopped afterwards."""
    if not os.path.exists(PGBOUNCER):
        pytest.skip("pgbouncer is not installed (Debian package pgbouncer)")
    folder = Path(tempfile.mkdtemp(prefix="estimator-pgbouncer-"))
    server = sa.engine.make_url(schema)
    process, port = start_pgbouncer(folder, server)
    try:
        yield server.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        stop(process)
        shutil.rmtree(folder, ignore_errors=True)


VOTERS = 4
ISSUES = 3
CARDS = ["1", "2", "3", "5", "8", "13"]


class Attendee(Person):
    """A person who notes every answer's status and, when allowed, tries again after a 503 as
    its Retry-After asks (without the wait: the test's time is short)."""

    def __init__(self, url: str, statuses: Counter[int], retry: bool) -> None:
        super().__init__(url)
        self.statuses = statuses
        self.retry = retry

    def request(self, path: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None):
        for _ in range(10):
            status, body, answered = super().request(path, data, headers)
            self.statuses[status] += 1
            if status != 503 or not self.retry:
                break
            assert answered["Retry-After"], answered
        return status, body, answered


def hold_a_meeting(url: str, retry: bool = False) -> Counter[int]:
    """A facilitator and VOTERS members: a group, ISSUES issues, every member votes twice on each
    (the last card counts), the facilitator reveals and records the estimate, and a member's event
    stream hears every change. Returns the statuses of all answers."""
    statuses: Counter[int] = Counter()
    owner = Attendee(url, statuses, retry)
    assert owner.login("Facilitator") == 302
    assert owner.post("/groups", {"name": "Through the pool", "deck": "fibonacci"}, owner.token("/")) == 302
    group_id = max(int(x) for x in re.findall(r'href="/groups/(\d+)"', owner.request("/")[1]))
    group_page = f"/groups/{group_id}"
    for n in range(ISSUES):
        assert owner.post(f"{group_page}/issues", {"key": f"POOL-{n}"}, owner.token(group_page)) == 302
    issue_ids = sorted(issue["id"] for issue in owner.api(f"/api/groups/{group_id}")["issues"])
    invite = re.search(r"/join/[A-Za-z0-9_-]+", owner.request(group_page)[1])
    assert invite is not None
    voters = []
    for n in range(VOTERS):
        voter = Attendee(url, statuses, retry)
        assert voter.login(f"Voter {n}") == 302
        assert voter.post(invite.group(0), {"role": "member"}, voter.token(invite.group(0))) == 302
        voters.append(voter)
    listener = Listener(open_stream(url, voters[0], group_id))
    try:
        wait_until(lambda: listener.events, 30, "the event stream says the group's version")
        for round_number, issue_id in enumerate(issue_ids):
            page, status_page = f"/issues/{issue_id}/estimate", f"/issues/{issue_id}"
            expected: Counter[str] = Counter()
            for n, voter in enumerate(voters):
                first, last = CARDS[(n + round_number) % 6], CARDS[(n + round_number + 1) % 6]
                token = voter.token(page)
                assert voter.post(page, {"value": first}, token) == 302
                assert voter.post(page, {"value": last}, token) == 302
                expected[last] += 1
            assert owner.api(f"/api/issues/{issue_id}")["votes_cast"] == VOTERS
            assert owner.post(f"/issues/{issue_id}/reveal", {}, owner.token(status_page)) == 302
            result = owner.api(f"/api/issues/{issue_id}")["result"]
            assert result["votes"] == VOTERS and Counter(result["distribution"]) == expected
            heard = max(version for _, version in listener.events)
            recorded = {"estimate": "5"}
            assert owner.post(f"/issues/{issue_id}/accept", recorded, owner.token(status_page)) == 302
            assert owner.api(f"/api/issues/{issue_id}")["final_estimate"] == "5"
            wait_until(
                lambda: max(version for _, version in listener.events) > heard,  # noqa: B023
                10,
                "the event stream heard the estimate recorded",
            )
    finally:
        listener.close()
    return statuses


@pytest.mark.server
@postgresql_only
def test_a_meeting_through_pgbouncer_in_transaction_mode_answers_no_5xx(
    app, pgbouncer, key_store_uri, tmp_path
):
    """`app` empties the tables: the meeting's nicknames are free."""
    log_path = tmp_path / "gunicorn.log"
    process, url = start_gunicorn(
        pgbouncer, log_path, BALLOT_KEY_STORE_URI=key_store_uri, DATABASE_PREPARED_STATEMENTS="0"
    )
    try:
        statuses = hold_a_meeting(url)
    finally:
        stop(process)
    log_text = log_path.read_text()
    assert set(statuses) == {200, 302}, statuses
    assert statuses[302] >= VOTERS * ISSUES * 2 + ISSUES * 2  # enough to prepare, had it prepared
    assert "Traceback" not in log_text and "prepared" not in log_text, log_text[-3000:]


@pytest.mark.server
@postgresql_only
def test_without_the_setting_a_worker_answers_503_tells_the_operator_and_stops_preparing(
    app, pgbouncer, key_store_uri, tmp_path
):
    log_path = tmp_path / "gunicorn.log"
    process, url = start_gunicorn(pgbouncer, log_path, BALLOT_KEY_STORE_URI=key_store_uri)
    try:
        statuses = hold_a_meeting(url, retry=True)
    finally:
        stop(process)
    log_text = log_path.read_text()
    assert set(statuses) <= {200, 302, 503}, statuses
    told = [line for line in log_text.splitlines() if "set DATABASE_PREPARED_STATEMENTS=0" in line]
    # Once per worker process at most, and not at all where a worker never met the error.
    assert 1 <= len(told) <= WORKERS, log_text[-3000:]
    assert "Internal Server Error" not in log_text and "Exception on" not in log_text, log_text[-3000:]


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_a_prepared_statements_setting_that_is_neither_on_nor_off_is_refused_naming_it(schema, value):
    with pytest.raises(ValueError, match=f"DATABASE_PREPARED_STATEMENTS is '{value}': set it to 1"):
        create_app(make_config(schema, DATABASE_PREPARED_STATEMENTS=value))
