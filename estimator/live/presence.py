"""Who has a live page of a group open now, whichever process or machine serves them.

Each process counts its own open streams (and recent polls) per member and group, in memory, and
its version watcher writes what changed to the `presences` table: a row per member, group and
process. Arrivals and departures are written at the watcher's next turn (a page that reloads is
given a few seconds before it counts as gone); every process refreshes all of its rows in one
statement every REFRESH_SECONDS, and removes any row nobody refreshed for TTL_SECONDS (its
process died). Every arrival and departure (of someone no other process has there) and every
removal bumps the group's version, so pages learn of it as of any change, and what a page shows of
presence is read once per version, never per listener. Presence says who has the group open,
nothing of any card.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Collection
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..database import INTENT, WRITE
from ..extensions import db
from ..models import Group, Presence, utcnow

log = logging.getLogger(__name__)

#: How often a process refreshes its rows, in seconds.
REFRESH_SECONDS = 5.0
#: A row not refreshed for this long belongs to a process that is gone: whoever looks removes it.
#: With REFRESH_SECONDS and the stream's keep-alive, a closed page leaves within 30 seconds.
TTL_SECONDS = 20.0
#: A page whose stream closed counts as still open this long: a reload does not leave and come back.
GRACE_SECONDS = 3.0
#: A page that cannot hold a stream polls every 2 s; it counts as open this long after its last poll.
POLL_SECONDS = 10.0

Pair = tuple[int, int]  # (group id, user id)


class PresenceBook:
    """This process's open pages, per group and member, and their rows in the database."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: Counter[Pair] = Counter()
        self._closed: dict[Pair, float] = {}  # when a pair's last stream here closed
        self._polled: dict[Pair, float] = {}
        self._written: set[Pair] = set()
        self._refreshed = 0.0
        self._pid = 0
        self._instance = ""
        self._turning = threading.Lock()  # one turn at a time: the watcher's, or a test's
        self.due = threading.Event()  # something arrived: write it at the watcher's next turn

    @property
    def instance(self) -> str:
        """This process's name in the table: random, new after a fork."""
        if self._pid != os.getpid():
            self._pid, self._instance = os.getpid(), secrets.token_hex(16)
            self._written.clear()
        return self._instance

    def opened(self, group_id: int, user_id: int) -> None:
        """A stream of this member's page of the group opened here."""
        with self._lock:
            self._streams[group_id, user_id] += 1
            self._closed.pop((group_id, user_id), None)
            if (group_id, user_id) not in self._written:
                self.due.set()

    def closed(self, group_id: int, user_id: int) -> None:
        """A stream opened with `opened` closed."""
        with self._lock:
            self._streams[group_id, user_id] -= 1
            if self._streams[group_id, user_id] <= 0:
                del self._streams[group_id, user_id]
                self._closed[group_id, user_id] = time.monotonic()

    def polled(self, group_id: int, user_id: int) -> None:
        """This member's page of the group, one that polls, asked for changes here."""
        with self._lock:
            self._polled[group_id, user_id] = time.monotonic()
            if (group_id, user_id) not in self._written:
                self.due.set()

    def _open_pairs(self, now: float) -> set[Pair]:
        with self._lock:
            for table, keep in ((self._closed, GRACE_SECONDS), (self._polled, POLL_SECONDS)):
                for pair in [pair for pair, at in table.items() if now - at > keep]:
                    del table[pair]
            return set(self._streams) | set(self._closed) | set(self._polled)

    def turn(self, engine: sa.Engine) -> set[int]:
        """Write what changed here (and, every REFRESH_SECONDS, refresh this process's rows and
        remove the rows of processes gone); bump the versions of the groups whose presence
        changed, and return them. Cheap when nothing changed: no statement at all."""
        # A write, like a writing request's: on SQLite it takes the write lock up front, waiting
        # for it in sleeps that let a gevent worker's requests and streams run meanwhile, never
        # in SQLite's own busy wait, which would stall the whole worker.
        intent = INTENT.set(WRITE)
        try:
            with self._turning:
                return self._turn(engine)
        finally:
            INTENT.reset(intent)

    def _turn(self, engine: sa.Engine) -> set[int]:
        now = time.monotonic()
        instance = self.instance
        self.due.clear()
        open_pairs = self._open_pairs(now)
        arrived, left = open_pairs - self._written, self._written - open_pairs
        # A process with no page open writes nothing at all: nothing of its own to refresh, and
        # the rows of processes gone are left to those still serving pages (reads skip them).
        refresh = bool(open_pairs) and now - self._refreshed >= REFRESH_SECONDS
        if not (arrived or left or refresh):
            return set()
        moment = utcnow()
        with engine.begin() as connection:
            # Who comes or goes here while another process has them too changes nobody's presence.
            elsewhere = self._elsewhere(connection, arrived | left, instance, moment)
            changed = {
                group_id for group_id, user_id in arrived | left if (group_id, user_id) not in elsewhere
            }
            self._insert(connection, arrived, instance, moment)
            for group_id, user_id in sorted(left):
                connection.execute(
                    sa.delete(Presence).where(
                        Presence.group_id == group_id,
                        Presence.user_id == user_id,
                        Presence.instance == instance,
                    )
                )
            if refresh:
                mine = sa.update(Presence).where(Presence.instance == instance).values(seen_at=moment)
                if connection.execute(mine).rowcount != len(open_pairs):
                    # Some of this process's rows were removed as stale (it could not refresh them
                    # in time, say while the database was away): write them all again.
                    connection.execute(sa.delete(Presence).where(Presence.instance == instance))
                    self._insert(connection, open_pairs, instance, moment)
                    changed |= {group_id for group_id, _user in open_pairs}
                gone = connection.execute(
                    sa.delete(Presence)
                    .where(Presence.seen_at < moment - timedelta(seconds=TTL_SECONDS))
                    .returning(Presence.group_id)
                )
                changed |= set(gone.scalars())
            if changed:
                bump_versions(connection, changed)
        self._written = open_pairs
        if refresh:
            self._refreshed = now
        return changed

    @staticmethod
    def _elsewhere(connection: sa.Connection, pairs: set[Pair], instance: str, moment: datetime) -> set[Pair]:
        """Which of these pairs another process has a page of, as its rows read now."""
        if not pairs:
            return set()
        rows = connection.execute(
            sa.select(Presence.group_id, Presence.user_id).where(
                Presence.group_id.in_(sorted({group_id for group_id, _user in pairs})),
                Presence.instance != instance,
                Presence.seen_at >= moment - timedelta(seconds=TTL_SECONDS),
            )
        )
        return {(group_id, user_id) for group_id, user_id in rows} & pairs

    @staticmethod
    def _insert(connection: sa.Connection, pairs: set[Pair], instance: str, moment: datetime) -> None:
        if pairs:
            rows = [{"group_id": g, "user_id": u, "instance": instance} for g, u in sorted(pairs)]
            connection.execute(sa.insert(Presence).values(seen_at=moment), rows)


def bump_versions(connection: sa.Connection, group_ids: Collection[int]) -> None:
    """A change of these groups that no request made (who has them open): pages follow it."""
    connection.execute(
        sa.update(Group).where(Group.id.in_(sorted(group_ids))).values(version=Group.version + 1)
    )


#: Who has a live page of a group open now: their user ids. Made once: SQLAlchemy keeps a
#: statement's cache key with it, instead of building and keying it again for every build.
PRESENT = (
    sa.select(Presence.user_id)
    .where(Presence.group_id == sa.bindparam("group_id"), Presence.seen_at >= sa.bindparam("cutoff"))
    .distinct()
)


def present_users(group_id: int) -> set[int]:
    """The ids of the members who have a live page of the group open now."""
    cutoff = utcnow() - timedelta(seconds=TTL_SECONDS)
    return set(db.session.scalars(PRESENT, {"group_id": group_id, "cutoff": cutoff}))
