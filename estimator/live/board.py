"""Which groups changed, cheaply, whichever process served the change: one watcher per process.

Every change anybody can see bumps the group's version (database.bump_version), so the version is
all a live page needs to watch. Each process keeps one `VersionBoard`: the versions (and the open
rounds' ballot key ids) of the groups its visitors listen to. One watcher thread per process reads
them for all listened groups in one query a few times a second and wakes the streams of the groups
that changed, so the cost of waiting grows with processes, not with listeners; no broker is needed,
and it works on SQLite and PostgreSQL alike, across any number of processes and machines.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ..database import in_group, read_in_autocommit
from ..models import Group, Membership, Round, User
from ..sealing import KeyStore, KeyStoreError
from .presence import REFRESH_SECONDS, PresenceBook

log = logging.getLogger(__name__)

#: How often a process's watcher reads the listened groups' versions, in seconds.
WATCH_INTERVAL = 0.25
#: How long a version read for a request is trusted by the process that read it, in seconds.
VERSION_TTL = 0.5
#: How often a process's watcher asks the key store which of the listened open rounds' keys it
#: still holds (one question for all of them), in seconds.
KEY_CHECK_INTERVAL = 1.0


@dataclass
class Watched:
    """What a process knows of one group: its version, its open rounds' keys, who may listen."""

    version: int
    keys: dict[int, set[str]]  # issue id → key ids of its open rounds
    read_at: float
    #: The version less the versions that were a vote: versions with the same one differ only in
    #: their rounds' votes (reuse.py).
    settled: int | None = None
    changed: threading.Event = field(default_factory=threading.Event)
    logins: dict[str, str] | None = None  # "user id:session token" of its members → role, when asked
    listeners: int = 0
    #: The key ids the key store held at the watcher's last look; None before the first.
    held: frozenset[str] | None = None

    def key_ids(self, issue_id: int | None = None) -> set[str]:
        """The open rounds' key ids of one issue, or of the whole group."""
        if issue_id is not None:
            return self.keys.get(issue_id, set())
        return set().union(*self.keys.values()) if self.keys else set()


#: What a stream sends before the version event of a change, given the group as now read and the
#: listener's role (a view's regions, see regions.py); None sends nothing more.
OnChange = Callable[[Watched, str], bytes | None]


class VersionBoard:
    """The versions of the groups this process's visitors listen to, and the wake-up of their streams."""

    def __init__(self, engine: sa.Engine, key_store: KeyStore | None = None) -> None:
        self.engine = engine
        self.key_store = key_store
        self._lock = threading.Lock()
        self._groups: dict[int, Watched] = {}
        self._watcher: threading.Thread | None = None
        self._pid = 0
        self.presence = PresenceBook()
        self._stopping = threading.Event()

    def _connect(self) -> sa.Connection:
        connection = self.engine.connect()
        if connection.dialect.name == "postgresql":
            read_in_autocommit(connection)
        return connection

    def _read(self, group_ids: Collection[int], with_logins: Collection[int] = ()) -> dict[int, Watched]:
        """Read the versions and open keys of these groups (and the logins of their members)."""
        keyed = sa.and_(Round.key_id.is_not(None), in_group(Group.id, self.engine.dialect.name))
        statement = (
            sa.select(Group.id, Group.version, Group.vote_versions, Round.issue_id, Round.key_id)
            .select_from(sa.outerjoin(Group.__table__, Round.__table__, keyed))
            .where(self._among(Group.id, group_ids))
        )
        now = time.monotonic()
        found: dict[int, Watched] = {}
        with self._connect() as connection:
            for group_id, version, ballots, issue_id, key_id in connection.execute(statement):
                entry = found.setdefault(group_id, Watched(int(version), {}, now, int(version - ballots)))
                if key_id:
                    entry.keys.setdefault(issue_id, set()).add(key_id)
            if with_logins:
                rows = connection.execute(
                    sa.select(Membership.group_id, User.id, User.session_token, Membership.role)
                    .join(User, User.id == Membership.user_id)
                    .where(self._among(Membership.group_id, with_logins))
                )
                logins: dict[int, dict[str, str]] = {group_id: {} for group_id in with_logins}
                for group_id, user_id, token, role in rows:
                    logins[group_id][f"{user_id}:{token}"] = str(role)
                for group_id, members in logins.items():
                    if group_id in found:
                        found[group_id].logins = members
        return found

    def _among(
        self, column: sa.orm.InstrumentedAttribute[int], ids: Collection[int]
    ) -> sa.ColumnElement[bool]:
        """`column IN ids`. On PostgreSQL as `= ANY(array)`: one parameter, so the statement is the
        same whatever the number of groups and is prepared once."""
        if self.engine.dialect.name == "postgresql":
            return column == sa.any_(sa.bindparam("ids", list(ids), type_=postgresql.ARRAY(sa.Integer)))
        return column.in_(list(ids))

    def _versions(self, group_ids: Collection[int]) -> dict[int, int]:
        """The versions of these groups that still exist, in one small query."""
        statement = sa.select(Group.id, Group.version).where(self._among(Group.id, group_ids))
        with self._connect() as connection:
            return {group_id: int(version) for group_id, version in connection.execute(statement)}

    def _merge(self, fresh: dict[int, Watched], asked: Collection[int]) -> None:
        """Store what was read; wake the listeners of groups that changed or went away."""
        woken = []
        with self._lock:
            for group_id in asked:
                old = self._groups.get(group_id)
                new = fresh.get(group_id)
                if new is None:
                    self._groups.pop(group_id, None)
                    if old is not None:
                        woken.append(old)  # deleted: its listeners stop
                    continue
                if old is None:
                    self._groups[group_id] = new
                    continue
                if new.version != old.version or new.keys != old.keys:
                    woken.append(old)
                    new.listeners = old.listeners
                    if new.keys == old.keys:
                        new.held = old.held  # a lost key is not announced again with each change
                    if new.logins is None and new.version == old.version:
                        new.logins = old.logins
                    self._groups[group_id] = new
                else:
                    old.read_at = new.read_at
                    if new.logins is not None:
                        old.logins = new.logins
        for entry in woken:
            entry.changed.set()

    def current(self, group_id: int) -> Watched | None:
        """The group as read within VERSION_TTL (read now if not): None when it does not exist."""
        entry = self._groups.get(group_id)
        if entry is None or entry.logins is None or time.monotonic() - entry.read_at > VERSION_TTL:
            self._merge(self._read([group_id], with_logins=[group_id]), [group_id])
            entry = self._groups.get(group_id)
        return entry

    def forget(self, group_ids: Iterable[int]) -> None:
        """This process changed these groups: read them afresh on next use."""
        with self._lock:
            for group_id in group_ids:
                if entry := self._groups.get(group_id):
                    entry.read_at = float("-inf")

    # --- event streams ---

    def listen(
        self,
        group_id: int,
        login: str,
        last_seen: int | None,
        lifetime: float,
        heartbeat: float,
        on_change: OnChange | None = None,
    ) -> Iterator[bytes]:
        """The event stream of one listener: the version whenever it changes, a comment between.

        Before each version event it sends what `on_change` makes of the change; a listener with
        one is a page of the group, and counts as its member's presence while it is open (a bare
        stream of versions is a script's, and does not). It ends after
        `lifetime` seconds (the browser reconnects at once, sending Last-Event-ID, and is checked
        again), when the group goes away, or when the listener is no longer one of its members with
        this login (removed, or logged out everywhere) as seen at the group's next change. Raises
        LookupError at once when the group does not exist.
        """
        if self.current(group_id) is None:
            raise LookupError(group_id)
        return self._stream(group_id, login, last_seen, time.monotonic() + lifetime, heartbeat, on_change)

    def _stream(
        self,
        group_id: int,
        login: str,
        last_seen: int | None,
        until: float,
        heartbeat: float,
        on_change: OnChange | None,
    ) -> Iterator[bytes]:
        try:
            entry = self._enter(group_id)
        except LookupError:
            return
        user_id = int(login.partition(":")[0] or 0) if on_change is not None else 0
        if user_id:
            self.presence.opened(group_id, user_id)
        try:
            yield b"retry: 2000\n\n"
            told: Watched | None = None
            while True:
                entry = self._groups.get(group_id) or entry
                role = entry.logins.get(login) if entry.logins is not None else None
                if entry.logins is not None and role is None:
                    return
                # A new entry means a new version, or a lost ballot key (same version, other view).
                if entry is not told and (last_seen is None or entry.version > last_seen or told):
                    if on_change is not None and role is not None:
                        extra = on_change(entry, role)
                        if extra:
                            yield extra
                    version = entry.version
                    yield f'id: {version}\nevent: version\ndata: {{"version": {version}}}\n\n'.encode()
                told = entry
                left = until - time.monotonic()
                if left <= 0:
                    return
                if not entry.changed.wait(min(heartbeat, left)):
                    if until - time.monotonic() > 0:
                        yield b": keep-alive\n\n"
                elif group_id not in self._groups:
                    return
        finally:
            self._leave(group_id)
            if user_id:
                self.presence.closed(group_id, user_id)

    def _enter(self, group_id: int) -> Watched:
        entry = self.current(group_id)
        if entry is None:
            raise LookupError(group_id)
        with self._lock:
            entry = self._groups[group_id]
            entry.listeners += 1
        self.ensure_watcher()
        return entry

    def _leave(self, group_id: int) -> None:
        with self._lock:
            if entry := self._groups.get(group_id):
                entry.listeners -= 1

    def stop(self) -> None:
        """End this process's watcher (an app that stops serving: its pages' presence ends too)."""
        self._stopping.set()
        if self._watcher is not None and self._watcher.is_alive() and self._pid == os.getpid():
            self._watcher.join(timeout=5)

    def ensure_watcher(self) -> None:
        """Start this process's watcher unless it runs: it also writes who has which group open."""
        if self._watcher is not None and self._watcher.is_alive() and self._pid == os.getpid():
            return
        with self._lock:
            if self._watcher is None or not self._watcher.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._watcher = threading.Thread(target=self._watch, name="version-watcher", daemon=True)
                self._watcher.start()

    def _check_keys(self, group_ids: Collection[int]) -> None:
        """Ask the key store, in one look, which of these groups' open rounds' keys it still holds.

        A key lost from the store (it restarted, the key expired or was deleted) changes nothing in
        the database, so no version tells of it: a group that lost one gets a new entry of the same
        version and its streams are woken, which sends their pages the regions as they now read
        (the lost votes no longer counted, their voters asked to vote again) and a version event.
        """
        if self.key_store is None:
            return
        with self._lock:
            entries = {gid: entry for gid in group_ids if (entry := self._groups.get(gid)) and entry.keys}
        wanted = set().union(*(entry.key_ids() for entry in entries.values()))
        if not wanted:
            return
        try:
            held = self.key_store.present(wanted)
        except KeyStoreError:
            return  # unreachable: votes answer 503 meanwhile, and no key is known to be lost
        woken = []
        with self._lock:
            for gid, entry in entries.items():
                now_held = frozenset(entry.key_ids() & held)
                before = entry.held if entry.held is not None else frozenset(entry.key_ids())
                if now_held == before or self._groups.get(gid) is not entry:
                    entry.held = now_held
                    continue
                self._groups[gid] = dataclasses.replace(entry, changed=threading.Event(), held=now_held)
                woken.append(entry)
        for entry in woken:
            entry.changed.set()

    def _watch(self) -> None:
        """One loop per process: read every listened group's version, wake who needs waking; once a
        second, see whether their open rounds' keys are still in the key store."""
        failing = False
        keys_checked = presence_written = 0.0
        while not self._stopping.wait(WATCH_INTERVAL):
            if self.presence.due.is_set() or time.monotonic() - presence_written >= REFRESH_SECONDS:
                presence_written = time.monotonic()
                try:
                    self.presence.turn(self.engine)
                except sa.exc.SQLAlchemyError as error:
                    log.warning("Live updates: cannot write who has which group open: %s", error)
            with self._lock:
                listened = [gid for gid, entry in self._groups.items() if entry.listeners > 0]
            if not listened:
                continue
            if time.monotonic() - keys_checked >= KEY_CHECK_INTERVAL:
                keys_checked = time.monotonic()
                self._check_keys(listened)
            try:
                versions = self._versions(listened)
                now = time.monotonic()
                changed = []
                with self._lock:
                    for gid in listened:
                        entry = self._groups.get(gid)
                        if entry is not None and versions.get(gid) == entry.version:
                            entry.read_at = now  # open rounds' keys change only with the version
                        else:
                            changed.append(gid)
                if changed:  # the rest, and who may still listen, is read only for what changed
                    self._merge(self._read(changed, with_logins=changed), changed)
                if failing:
                    log.info("Live updates: the database answers again")
                failing = False
            except sa.exc.SQLAlchemyError as error:
                if not failing:
                    log.warning("Live updates: cannot read the group versions: %s", error)
                failing = True
