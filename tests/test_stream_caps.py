"""No burst of event streams from one login or one address starves the others: past a cap per
process, a stream is answered 429 at once (the page polls), never 500."""

import asyncio
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from tests.conftest import join
from tests.helpers import wait_until
from tests.http import started_meeting
from tests.server import WORKERS, start_gunicorn, stop


@pytest.fixture
def settings():
    return {"LIVE_STREAMS_PER_LOGIN": 2, "LIVE_STREAMS_PER_ADDRESS": 3, "LIVE_STREAM_SECONDS": 30}


class Held(threading.Thread):
    """A stream a client holds open, unread, as a browser waiting for the next event; in a thread
    of its own, as the request's context stays pushed in the thread that reads the stream."""

    def __init__(self, client, group_id: int, address: str) -> None:
        super().__init__(daemon=True)
        self.client, self.group_id, self.address = client, group_id, address
        self.opened = threading.Event()
        self.closing = threading.Event()
        self.status = 0
        self.body: dict[str, str] = {}
        self.headers: dict[str, str] = {}
        self.start()
        assert self.opened.wait(30), "the stream did not answer"

    def run(self) -> None:
        response = self.client.get(
            f"/api/groups/{self.group_id}/events?view=room",
            buffered=False,
            environ_base={"REMOTE_ADDR": self.address},
        )
        self.status, self.headers = response.status_code, dict(response.headers)
        if self.status != 200:
            self.body = json.loads(response.get_data())
        self.opened.set()
        self.closing.wait(30)
        response.close()

    def close(self) -> None:
        """Close the page: the stream ends."""
        self.closing.set()
        self.join(30)


@contextmanager
def streams(*opened: tuple[Any, int, str]) -> Iterator[list[Held]]:
    """Streams (client, group id, address) held open one after the other, closed at the end."""
    held: list[Held] = []
    try:
        for client, group_id, address in opened:
            held.append(Held(client, group_id, address))
        yield held
    finally:
        for stream in held:
            stream.close()


def test_a_login_holds_at_most_its_cap_of_streams_and_the_next_gets_429_json(app, team, streams_held):
    bob, carol, group_id = team["bob"], team["carol"], team["group"]
    with streams((bob, group_id, "192.0.2.1"), (bob, group_id, "192.0.2.2")) as held:
        assert [stream.status for stream in held] == [200, 200]
        with streams((bob, group_id, "192.0.2.3"), (carol, group_id, "192.0.2.4")) as (refused, other):
            assert refused.status == 429
            assert refused.body["error"].startswith("Too many live pages are open from here.")
            assert int(refused.headers["Retry-After"]) > 0
            assert other.status == 200  # somebody else is not held up
        assert bob.get(f"/api/groups/{group_id}").status_code == 200  # polling still works
        held.pop().close()  # a page closed: its slot is free again
        with streams((bob, group_id, "192.0.2.5")) as (again,):
            assert again.status == 200


def test_an_address_holds_at_most_its_cap_of_streams(app, team, streams_held, new_client):
    group_id = team["group"]
    dave = new_client("Dave")
    assert join(app, dave, group_id).status_code == 302
    address = "198.51.100.7"
    with streams(*((client, group_id, address) for client in (team["bob"], team["carol"], dave))) as held:
        assert [stream.status for stream in held] == [200, 200, 200]
        with streams((team["owner"], group_id, address), (team["owner"], group_id, "198.51.100.8")) as more:
            assert [stream.status for stream in more] == [429, 200]


def test_a_stream_the_database_fails_ends_quietly_instead_of_breaking(
    app, team, streams_held, monkeypatch, caplog
):
    board = app.extensions["live_board"]
    asked = []
    read = board.current

    def busy_pool(group_id):
        asked.append(group_id)
        if len(asked) > 1:  # the stream's own read, once its answer has begun
            raise sa.exc.TimeoutError("QueuePool limit of size 4 overflow 0 reached, connection timed out")
        return read(group_id)

    monkeypatch.setattr(board, "current", busy_pool)
    with caplog.at_level(logging.WARNING, logger="estimator.live"):
        response = team["bob"].get(f"/api/groups/{team['group']}/events?view=room")
    assert response.status_code == 200 and response.get_data() == b""  # the browser reconnects
    assert "a stream of group" in caplog.text and "connection timed out" in caplog.text
    assert "Traceback" not in caplog.text


# --- a flood under gunicorn ------------------------------------------------------------------------

FLOOD = 200
PER_LOGIN = 20


class Flood(threading.Thread):
    """Opens count streams at once and holds those that opened until closed: their statuses, and
    the whole answers of those refused."""

    def __init__(self, url: str, path: str, cookie: str, count: int) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.request = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nCookie: {cookie}\r\n\r\n".encode()
        self.count = count
        self.statuses: list[int] = []
        self.refusals: list[str] = []
        self.opened = threading.Event()
        self.closing = threading.Event()
        self.start()
        assert self.opened.wait(180), "the streams did not all answer"

    def run(self) -> None:
        asyncio.run(self.flood())

    async def flood(self) -> None:
        answers = await asyncio.gather(*(self.one() for _ in range(self.count)))
        self.statuses = [status for status, _, _ in answers]
        self.refusals = [answer for status, answer, _ in answers if status != 200]
        self.opened.set()
        await asyncio.get_running_loop().run_in_executor(None, self.closing.wait, 180)
        for _, _, writer in answers:
            writer.close()

    async def one(self) -> tuple[int, str, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(self.request)
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        status = int(head.split(" ", 2)[1])
        if status == 200:
            return status, head, writer
        length = re.search(r"(?im)^content-length: *(\d+)", head)
        return (
            status,
            head + (await reader.readexactly(int(length.group(1)))).decode() if length else head,
            writer,
        )

    def close(self) -> list[int]:
        """Close the streams that opened; the statuses they all had."""
        self.closing.set()
        self.join(30)
        return self.statuses


@pytest.mark.server
@pytest.mark.quiet
def test_one_login_opening_hundreds_of_streams_gets_429s_and_starves_nobody(schema, key_store_uri, tmp_path):
    log = tmp_path / "gunicorn.log"
    process, url = start_gunicorn(
        schema, log, BALLOT_KEY_STORE_URI=key_store_uri, LIVE_STREAMS_PER_LOGIN=str(PER_LOGIN)
    )
    flood = None
    try:
        _, group_id, issue_id, (mallory, bob) = started_meeting(url, ["Mallory", "Bob"])
        cookie = "; ".join(f"{c.name}={c.value}" for c in mallory.cookies)

        flood = Flood(url, f"/api/groups/{group_id}/events?view=room", cookie, FLOOD)
        statuses, refusals = flood.statuses, flood.refusals
        counted = Counter(statuses)
        assert set(counted) <= {200, 429}, counted
        assert PER_LOGIN <= counted[200] <= PER_LOGIN * WORKERS, counted
        assert counted[429] == FLOOD - counted[200]
        assert all('{"error":' in body.replace(" ", "") and "Retry-After" in body for body in refusals)

        for card in ("3", "5"):
            began = time.monotonic()
            status, room, _ = bob.request(f"/groups/{group_id}/room")
            assert status == 200 and "M-1" in room
            token = bob.token(f"/groups/{group_id}/room")
            assert bob.post(f"/issues/{issue_id}/estimate", {"value": card}, token) == 302
            assert time.monotonic() - began < 5, "a page and a vote took too long beside the flood"
        assert bob.api(f"/api/issues/{issue_id}")["votes_cast"] == 1

        # Closed pages give their places back (each worker notices at its next heartbeat, 1 s here).
        flood.close()
        flood = None
        wait_until(
            lambda: set(Flood(url, f"/api/groups/{group_id}/events", cookie, PER_LOGIN).close()) == {200},
            30,
            "a full set of streams again once the flood's were closed",
            interval=3,  # a try's own streams are given back, too, before the next
        )
    finally:
        if flood is not None:
            flood.close()
        stop(process)
    served = log.read_text()
    assert "Traceback" not in served
    assert not re.search(r'" 500 ', served)


def test_the_caps_are_read_from_the_environment_and_bad_values_are_named(monkeypatch):
    import config

    monkeypatch.setenv("LIVE_STREAMS_PER_LOGIN", "7")
    assert config.env_count("LIVE_STREAMS_PER_LOGIN", 20) == 7
    monkeypatch.setenv("LIVE_STREAMS_PER_LOGIN", "many")
    with pytest.raises(ValueError, match="LIVE_STREAMS_PER_LOGIN must be a whole number"):
        config.env_count("LIVE_STREAMS_PER_LOGIN", 20)
