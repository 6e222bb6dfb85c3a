"""Live pages: what tells them the group changed, cheaply, whichever process served the change.

Every change anybody can see bumps the group's version (database.bump_version), so the version is
all a page needs to watch. Each process keeps one `VersionBoard`: the versions (and the open
rounds' ballot key ids) of the groups its visitors watch. One watcher per process reads them for
all watched groups in one query a few times a second and wakes the event streams of the groups
that changed, so the cost of waiting grows with processes, not with listeners; no broker is needed,
and it works on SQLite and PostgreSQL alike, across any number of processes and machines.

Entity tags are bound to the visitor's login (an HMAC of the session's user id and token with the
app's secret key), so an unchanged poll can be answered with 304 before Flask loads anybody
(`FastPolls`): a 304 only ever confirms a tag to the login it was issued to. The JSON states are
built once per version and process (`JsonCache`) and served, after one query that checks the
login and membership, before Flask runs too.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from flask import Flask, Request, Response, current_app, has_app_context, request, session, url_for
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from itsdangerous import BadSignature
from sqlalchemy.dialects import postgresql
from werkzeug.http import parse_cookie, parse_etags, unquote_etag

from .database import Readers, in_group, read_rows
from .extensions import db
from .models import Group, Issue, Membership, Round, User
from .observability import REQUEST_ID_HEADER, SANE_REQUEST_ID
from .sealing import ballot_keys

log = logging.getLogger(__name__)

#: How often a process's watcher reads the watched groups' versions, in seconds.
WATCH_INTERVAL = 0.25
#: How long a version read for a poll is trusted by the process that read it, in seconds.
VERSION_TTL = 0.5

TAG = re.compile(r'(?:W/)?"(issue|group)-(\d+)-g(\d+)-v(\d+)-k([0-9a-z]+)-([0-9a-f]{20})"')


def open_key_ids(group_id: int) -> set[str]:
    """The ballot key ids of the group's open rounds, in one query (a revealed round's is cleared)."""
    of_group = in_group(sa.literal(group_id, sa.Integer), db.session.get_bind().dialect.name)
    statement = sa.select(Round.key_id).where(Round.key_id.is_not(None), of_group)
    return {key_id for key_id in db.session.scalars(statement) if key_id}


def key_ids_of(rounds: Iterable[Round]) -> set[str]:
    """The ballot key ids of these rounds, as loaded (open rounds that have votes have one)."""
    return {r.key_id for r in rounds if r.key_id}


class Seen(NamedTuple):
    """A group's identity and version as one of its members asked for it, the ballot key ids of
    the open rounds the asked-for state shows, and the member's current session token."""

    group_id: int
    created_at: datetime
    version: int
    key_ids: set[str]
    session_token: str


def _seen_select(
    kind: str, dialect: str, user_id: sa.ColumnElement[int], object_id: sa.ColumnElement[int]
) -> sa.Select[int, datetime, int, str, str | None]:
    """What user `user_id` is shown of `/api/<kind>s/<object_id>`: no row unless they are a member
    of the group; a row per open round (of the issue, or of the group) with a key."""
    statement = (
        sa.select(Group.id, Group.created_at, Group.version, User.session_token, Round.key_id)
        .select_from(User)
        .join(Membership, Membership.user_id == User.id)
        .join(Group, Group.id == Membership.group_id)
        .where(User.id == user_id)
    )
    if kind == "issue":
        return statement.join(Issue, sa.and_(Issue.group_id == Group.id, Issue.id == object_id)).outerjoin(
            Round, sa.and_(Round.issue_id == Issue.id, Round.key_id.is_not(None))
        )
    keyed = sa.and_(Round.key_id.is_not(None), in_group(Group.id, dialect))
    return statement.outerjoin(Round, keyed).where(Group.id == object_id)


@functools.cache
def seen_statement(kind: str, dialect: str) -> sa.Select[int, datetime, int, str, str | None]:
    """One query for `/api/<kind>s/<object_id>` as user `user_id` sees it (parameters of those
    names). Built once per kind and dialect."""
    return _seen_select(kind, dialect, sa.bindparam("user_id"), sa.bindparam("object_id"))


@functools.cache
def seen_together_statement(kind: str) -> sa.Select[Any]:
    """On PostgreSQL, the same for the pairs of the arrays `user_ids` and `object_ids` at once, each
    row led by its pair: looked up pair by pair (LATERAL), each by its indexes."""
    ids = postgresql.ARRAY(sa.Integer)
    asked = (
        sa.func.unnest(sa.bindparam("user_ids", type_=ids), sa.bindparam("object_ids", type_=ids))
        .table_valued(sa.column("user_id", sa.Integer), sa.column("object_id", sa.Integer))
        .render_derived("asked")
    )
    seen = _seen_select(kind, "postgresql", asked.c.user_id, asked.c.object_id).lateral("seen")
    return sa.select(asked.c.user_id, asked.c.object_id, *seen.c).select_from(asked).join(seen, sa.true())


def read_seen(connection: sa.Connection, kind: str, object_id: int, user_id: int) -> Seen | None:
    """What a member polling `/api/<kind>s/<object_id>` is shown, in one indexed query; None when
    there is no such issue or group, or the user is not a member of its group."""
    statement = seen_statement(kind, connection.dialect.name)
    return _seen_of(read_rows(connection, statement, {"user_id": user_id, "object_id": object_id}))


def _seen_of(rows: Sequence[Sequence[Any]]) -> Seen | None:
    """A Seen from the rows of one poll's question (group id, created, version, token, key id)."""
    if not rows:
        return None
    group_id, created_at, version, session_token, _key_id = rows[0]
    return Seen(group_id, created_at, int(version), {row[4] for row in rows if row[4]}, session_token)


Ask = tuple[str, int, int]  # kind, object id, user id


class _Batch:
    """Polls' questions read in one query, and the answers."""

    __slots__ = ("asks", "answers", "error", "done")

    def __init__(self, ask: Ask) -> None:
        self.asks = {ask}
        self.answers: dict[Ask, Seen | None] = {}
        self.error: BaseException | None = None
        self.done = threading.Event()


class SeenReads:
    """The polls' questions of one process (read_seen), read together on PostgreSQL: a poll that
    comes while another poll's read is on its way waits for it and is read, with every poll that
    came meanwhile, in the next query, which the first of them sends. A room of members polling at
    once after a change costs a round trip or two, not one each; a poll alone is read at once.
    Every answer comes from a query sent after its poll arrived, never from one already on its
    way: a login ended or a member removed before the poll is seen as such, as by a read of its
    own. Elsewhere (SQLite, a pool too small to keep connections) each poll reads on its own."""

    def __init__(self, readers: Readers) -> None:
        self.readers = readers
        self._lock = threading.Lock()
        self._flying: _Batch | None = None  # the query on its way
        self._next: _Batch | None = None  # the questions that wait for it to come back

    def seen(self, kind: str, object_id: int, user_id: int) -> Seen | None:
        """What read_seen answers, read with the polls that came at the same time."""
        if not self.readers.size:
            with self.readers.connection() as connection:
                return read_seen(connection, kind, object_id, user_id)
        ask = (kind, object_id, user_id)
        after: _Batch | None = None
        with self._lock:
            if self._flying is None:
                batch = self._flying = _Batch(ask)
                lead = True
            elif self._next is None:
                batch = self._next = _Batch(ask)
                after = self._flying
                lead = True
            else:
                batch = self._next
                batch.asks.add(ask)
                lead = False
        if lead:
            self._send(batch, after)
        elif not batch.done.wait(self.readers.timeout):
            raise sa.exc.TimeoutError("the polls' read did not come back in time")
        if batch.error is not None:
            raise batch.error
        return batch.answers[ask]

    def _send(self, batch: _Batch, after: _Batch | None) -> None:
        """Read the batch's questions once the query before it is back, and let its polls go on."""
        try:
            if after is not None and not after.done.wait(self.readers.timeout):
                raise sa.exc.TimeoutError("the polls' read did not come back in time")
            batch.answers = self._read(batch.asks)  # nobody adds to it once it is on its way
        except BaseException as error:
            # The others are told the read failed (a greenlet killed mid-read included), so that
            # Flask answers them as it would any failed read.
            batch.error = error if isinstance(error, Exception) else sa.exc.TimeoutError(str(error))
            raise
        finally:
            with self._lock:
                if self._flying is batch:
                    self._flying, self._next = self._next, None  # its leader waits on batch.done
                elif self._next is batch:  # gave up waiting: nobody sends it
                    self._next = None
            batch.done.set()

    def _read(self, asks: Collection[Ask]) -> dict[Ask, Seen | None]:
        answers: dict[Ask, Seen | None] = {}
        with self.readers.connection() as connection:
            for kind in {ask[0] for ask in asks}:
                pairs = [
                    (user_id, object_id) for asked_kind, object_id, user_id in asks if asked_kind == kind
                ]
                rows = read_rows(
                    connection,
                    seen_together_statement(kind),
                    {"user_ids": [p[0] for p in pairs], "object_ids": [p[1] for p in pairs]},
                )
                found: dict[tuple[int, int], list[Any]] = {}
                for row in rows:
                    found.setdefault((row[0], row[1]), []).append(row[2:])
                for user_id, object_id in pairs:
                    answers[(kind, object_id, user_id)] = _seen_of(found.get((user_id, object_id), []))
        return answers


def tag_matches(tag: str, if_none_match: str) -> bool:
    """Whether an If-None-Match header names this (quoted) entity tag, weakly or strongly."""
    return bool(if_none_match) and parse_etags(if_none_match).contains_weak(unquote_etag(tag)[0])


def login_key() -> str:
    """What identifies this login in the session cookie: the user id and session token."""
    return str(session.get("_user_id") or "")


def _mac(secret: str, login: str, body: str) -> str:
    return hmac.new(secret.encode(), f"{login}|{body}".encode(), hashlib.sha256).hexdigest()[:20]


def etag(
    kind: str,
    object_id: int,
    group_id: int,
    version: int,
    fingerprint: str,
    *,
    login: str | None = None,
    app: Flask | None = None,
) -> str:
    """The entity tag (quoted) of an issue's or a group's state as this login sees it.

    It names the group's version and which open rounds' ballot keys still exist (their
    `key_fingerprint`: losing one changes what pages show without changing the version), and is
    signed for the login it is served to, so that it can be checked before the login is loaded.
    """
    app = app or current_app
    body = f"{kind}-{object_id}-g{group_id}-v{version}-k{fingerprint}"
    mac = _mac(app.config["SECRET_KEY"], login_key() if login is None else login, body)
    return f'"{body}-{mac}"'


def key_fingerprint(key_ids: Collection[str], app: Flask | None = None) -> str:
    """Which of these open rounds' ballot keys the app's key store still holds, in a short name."""
    return ballot_keys.fingerprint(key_ids, (app or current_app).extensions["ballot_keys"])


def live_context(
    kind: str, object_id: int, group_id: int, version: int, key_ids: Collection[str]
) -> dict[str, Any]:
    """Template variables that make a page follow `/api/<kind>s/<id>` from this version on: the
    group's event stream, and the JSON to poll when the stream is unavailable."""
    values: dict[str, Any] = {f"{kind}_id": object_id}
    return {
        "live_api": url_for(f"api.{kind}", **values),
        "live_etag": etag(kind, object_id, group_id, version, key_fingerprint(key_ids)),
        "live_events": url_for("api.events", group_id=group_id),
        "live_version": version,
    }


# --- the per-process board of versions -----------------------------------------------------------


@dataclass
class Watched:
    """What a process knows of one group: its version, its open rounds' keys, who may listen."""

    version: int
    keys: dict[int, set[str]]  # issue id → key ids of its open rounds
    read_at: float
    changed: threading.Event = field(default_factory=threading.Event)
    logins: frozenset[str] | None = None  # "user id:session token" of its members, when asked for
    listeners: int = 0

    def key_ids(self, issue_id: int | None = None) -> set[str]:
        if issue_id is not None:
            return self.keys.get(issue_id, set())
        return set().union(*self.keys.values()) if self.keys else set()


class VersionBoard:
    """The versions of the groups this process's visitors watch, and the wake-up of their streams."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.readers = Readers(engine)
        self.seen_reads = SeenReads(self.readers)
        self._lock = threading.Lock()
        self._groups: dict[int, Watched] = {}
        self._watcher: threading.Thread | None = None
        self._pid = 0

    def _read(self, group_ids: Collection[int], with_logins: Collection[int] = ()) -> dict[int, Watched]:
        """Read the versions and open keys of these groups (and the logins of their members)."""
        keyed = sa.and_(Round.key_id.is_not(None), in_group(Group.id, self.engine.dialect.name))
        statement = (
            sa.select(Group.id, Group.version, Round.issue_id, Round.key_id)
            .select_from(sa.outerjoin(Group.__table__, Round.__table__, keyed))
            .where(self._among(Group.id, group_ids))
        )
        now = time.monotonic()
        found: dict[int, Watched] = {}
        with self.readers.connection() as connection:
            for group_id, version, issue_id, key_id in connection.execute(statement):
                entry = found.setdefault(group_id, Watched(int(version), {}, now))
                if key_id:
                    entry.keys.setdefault(issue_id, set()).add(key_id)
            if with_logins:
                rows = connection.execute(
                    sa.select(Membership.group_id, User.id, User.session_token)
                    .join(User, User.id == Membership.user_id)
                    .where(self._among(Membership.group_id, with_logins))
                )
                logins: dict[int, set[str]] = {group_id: set() for group_id in with_logins}
                for group_id, user_id, token in rows:
                    logins[group_id].add(f"{user_id}:{token}")
                for group_id, members in logins.items():
                    if group_id in found:
                        found[group_id].logins = frozenset(members)
        return found

    def _among(
        self, column: sa.orm.InstrumentedAttribute[int], ids: Collection[int]
    ) -> sa.ColumnElement[bool]:
        """`column IN ids`. On PostgreSQL as `= ANY(array)`: one parameter, so the statement is the
        same whatever the number of groups and is prepared once, where an IN list of a few hundred
        parameters cost the watcher half of an idle worker's time, spelt out four times a second."""
        if self.engine.dialect.name == "postgresql":
            return column == sa.any_(sa.bindparam("ids", list(ids), type_=postgresql.ARRAY(sa.Integer)))
        return column.in_(list(ids))

    def _versions(self, group_ids: Collection[int]) -> dict[int, int]:
        """The versions of these groups that still exist, in one small query."""
        statement = sa.select(Group.id, Group.version).where(self._among(Group.id, group_ids))
        with self.readers.connection() as connection:
            return {group_id: int(version) for group_id, version in connection.execute(statement)}

    def _merge(self, fresh: dict[int, Watched], asked: Collection[int]) -> list[Watched]:
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
                    if new.logins is None and new.version == old.version:
                        new.logins = old.logins
                    self._groups[group_id] = new
                else:
                    old.read_at = new.read_at
                    if new.logins is not None:
                        old.logins = new.logins
        for entry in woken:
            entry.changed.set()
        return woken

    def current(self, group_id: int) -> Watched | None:
        """The group as read within VERSION_TTL (read now if not): None when it does not exist."""
        entry = self._groups.get(group_id)
        if entry is None or time.monotonic() - entry.read_at > VERSION_TTL:
            # Listened to here: who may listen is read along, in case the version moved on.
            listened = [group_id] if entry is not None and entry.listeners > 0 else []
            self._merge(self._read([group_id], with_logins=listened), [group_id])
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
        self, group_id: int, login: str, last_seen: int | None, lifetime: float, heartbeat: float
    ) -> Iterator[bytes]:
        """The event stream of one listener: the version whenever it changes, a comment between.

        Ends after `lifetime` seconds (the browser reconnects at once, sending Last-Event-ID, and
        is checked again), when the group goes away, or when the listener is no longer one of its
        members with this login (removed, or logged out everywhere) as seen at the group's next
        change. Raises LookupError at once when the group does not exist.
        """
        if self.current(group_id) is None:
            raise LookupError(group_id)
        return self._stream(group_id, login, last_seen, time.monotonic() + lifetime, heartbeat)

    def _stream(
        self, group_id: int, login: str, last_seen: int | None, until: float, heartbeat: float
    ) -> Iterator[bytes]:
        try:
            entry = self._enter(group_id)
        except LookupError:
            return
        try:
            yield b"retry: 2000\n\n"
            told: Watched | None = None
            while True:
                entry = self._groups.get(group_id) or entry
                if entry.logins is not None and login not in entry.logins:
                    return
                # A new entry means a new version, or a lost ballot key (same version, other view).
                if entry is not told and (last_seen is None or entry.version > last_seen or told):
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

    def _enter(self, group_id: int) -> Watched:
        entry = self.current(group_id)
        if entry is None:
            raise LookupError(group_id)
        with self._lock:
            entry = self._groups[group_id]
            entry.listeners += 1
        self._ensure_watcher()
        return entry

    def _leave(self, group_id: int) -> None:
        with self._lock:
            if entry := self._groups.get(group_id):
                entry.listeners -= 1

    def _ensure_watcher(self) -> None:
        if self._watcher is not None and self._watcher.is_alive() and self._pid == os.getpid():
            return
        with self._lock:
            if self._watcher is None or not self._watcher.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._watcher = threading.Thread(target=self._watch, name="version-watcher", daemon=True)
                self._watcher.start()

    def _watch(self) -> None:
        """One loop per process: read every listened group's version, wake who needs waking."""
        failing = False
        while True:
            time.sleep(WATCH_INTERVAL)
            with self._lock:
                listened = [gid for gid, entry in self._groups.items() if entry.listeners > 0]
            if not listened:
                continue
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


def board() -> VersionBoard:
    """The current app's board."""
    return current_app.extensions["live_board"]  # type: ignore[no-any-return]  # extensions: dict[str, Any]


# --- JSON built once per version ----------------------------------------------------------------


class JsonCache:
    """Serialized JSON states by (kind, id, version, key fingerprint): built once per version by
    each process rather than once per watcher; they hold nothing personal (no card, no viewer)."""

    def __init__(self, size: int = 256) -> None:
        self._items: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    @staticmethod
    def key(kind: str, object_id: int, seen: Seen, fingerprint: str) -> tuple[Any, ...]:
        """The state's key: the group's creation time is part of it, as SQLite may give a deleted
        group's id to a new one."""
        return (kind, object_id, seen.created_at.isoformat(), seen.version, fingerprint)

    def peek(self, key: tuple[Any, ...]) -> bytes | None:
        """The JSON if it was built already."""
        with self._lock:
            return self._items.get(key)

    def get(self, key: tuple[Any, ...], build: Callable[[], dict[str, Any]]) -> bytes:
        with self._lock:
            if (body := self._items.get(key)) is not None:
                self._items.move_to_end(key)
                return body
        body = json.dumps(build(), separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        with self._lock:
            self._items[key] = body
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return body


def json_cache(app: Flask) -> JsonCache:
    """The app's cache of JSON states."""
    return app.extensions["live_json"]  # type: ignore[no-any-return]  # extensions: dict[str, Any]


# --- the unchanged poll, answered before Flask ---------------------------------------------------

API_PATH = re.compile(r"/api/(issue|group)s/([1-9][0-9]{0,9})")


class FastPolls:
    """WSGI middleware: the polls of `/api/issues/<id>` and `/api/groups/<id>` answered before
    Flask runs, when that is safe; anything else goes to Flask as usual.

    - An unchanged poll gets 304 without a query when its tag is still current for its login (the
      login comes from the signed session cookie; the version from the process's board, read at
      most VERSION_TTL ago and at once after this process changed the group). A 304 tells nothing
      the tag's holder did not know.
    - Any other poll costs one indexed query (`read_seen`; on PostgreSQL shared with the polls
      that come at the same time, `SeenReads`) that checks the login's session token and
      membership as Flask would, and is answered 304, or 200 with the JSON this process built for
      that version already (`JsonCache`). State is never served from anything older than that
      query, which is sent after the poll arrived: a removed member or a logged-out cookie gets
      what Flask answers (404 or 401).
    """

    def __init__(self, app: Flask, board: VersionBoard) -> None:
        self.app = app
        self.board = board
        self.next = app.wsgi_app
        self.cookie = app.config.get("SESSION_COOKIE_NAME", "session")
        self.headers: list[tuple[str, str]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD") and not environ.get("QUERY_STRING"):
            answer = self.answer(environ)
            if answer is not None:
                status, headers, body = answer
                offered = environ.get("HTTP_X_REQUEST_ID", "")
                request_id = offered if SANE_REQUEST_ID.fullmatch(offered) else secrets.token_hex(16)
                start_response(status, [*headers, (REQUEST_ID_HEADER, request_id), *self.headers])
                return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]
        return self.next(environ, start_response)

    def answer(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes] | None:
        path = API_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if path is None:
            return None
        kind, object_id = path.group(1), int(path.group(2))
        login = self.login(environ)
        if not login:
            return None
        offered = environ.get("HTTP_IF_NONE_MATCH", "")
        if offered and (tag := self.unchanged(kind, object_id, login, offered)):
            return "304 NOT MODIFIED", [("ETag", tag)], b""
        user, _, token = login.partition(":")
        try:
            seen = self.board.seen_reads.seen(kind, object_id, int(user))
        except (ValueError, sa.exc.SQLAlchemyError):
            return None  # Flask answers: a bad login, or the database is down
        if seen is None or not token or not hmac.compare_digest(seen.session_token, token):
            return None  # Flask answers 401 or 404
        fingerprint = key_fingerprint(seen.key_ids, self.app)
        tag = etag(kind, object_id, seen.group_id, seen.version, fingerprint, login=login, app=self.app)
        if tag_matches(tag, offered):
            return "304 NOT MODIFIED", [("ETag", tag)], b""
        body = json_cache(self.app).peek(JsonCache.key(kind, object_id, seen, fingerprint))
        if body is None:
            return None  # Flask builds it, once for this version
        return "200 OK", [*JSON_HEADERS, ("Content-Length", str(len(body))), ("ETag", tag)], body

    def unchanged(self, kind: str, object_id: int, login: str, offered: str) -> str | None:
        """The offered tag, if the board says it is still current for this login."""
        for match in TAG.finditer(offered):
            tag_kind, tag_id, group_id, version = match.group(1), *map(int, match.group(2, 3, 4))
            if (tag_kind, tag_id) != (kind, object_id):
                continue
            try:
                entry = self.board.current(group_id)
            except sa.exc.SQLAlchemyError:
                return None  # Flask answers, and says the database is down
            if entry is None or entry.version != version:
                return None
            expected = etag(
                kind,
                object_id,
                group_id,
                version,
                key_fingerprint(entry.key_ids(object_id if kind == "issue" else None), self.app),
                login=login,
                app=self.app,
            )
            if hmac.compare_digest(expected, match.group(0).removeprefix("W/")):
                return expected
        return None

    def login(self, environ: dict[str, Any]) -> str | None:
        """The user id and session token in the signed session cookie, if any."""
        value = parse_cookie(environ.get("HTTP_COOKIE", "")).get(self.cookie)
        if not value:
            return None
        cookie = self.app.session_interface.read_cookie(  # type: ignore[attr-defined]
            self.app, value, for_session=False
        )
        user = cookie[0].get("_user_id") if cookie is not None else None
        return str(user) if user else None


#: The headers of a JSON state, as Flask sends them (the locale and the login were looked at).
JSON_HEADERS = [("Content-Type", "application/json"), ("Vary", "Accept-Language, Cookie")]


class QuietSessionInterface(SecureCookieSessionInterface):
    """Signed cookie sessions that are sent again only when they changed or their expiry is due
    for a refresh: a page refreshes it at most once every REFRESH_SESSION_AFTER (a login lasts
    PERMANENT_SESSION_LIFETIME after the last visit, give or take that much), and a poll, an
    event stream or any other API answer never does. Signing a cookie on every request, a vote
    included, cost more than a tenth of the vote."""

    def __init__(self) -> None:
        #: Cookies whose signature this process checked: text → (secret key, contents, signing time).
        self._checked: OrderedDict[str, tuple[Any, dict[str, Any], datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def read_cookie(
        self, app: Flask, value: str, *, for_session: bool = True
    ) -> tuple[dict[str, Any], datetime] | None:
        """The contents of a session cookie and when it was signed; None when it is not one this
        app signed or it has expired. Each cookie's signature is checked once (a key derivation, an
        HMAC and tagged JSON: a quarter of a JSON poll's CPU), then it is found by its text until
        it expires. The contents are a copy each time they are `for_session`, as a session is
        changed in place; a caller that only looks (and must not change them) gets them as kept."""
        lifetime = app.permanent_session_lifetime
        with self._lock:
            checked = self._checked.get(value)
        if checked is not None:
            secret, data, signed_at = checked
            if secret == app.secret_key and timedelta(0) <= cookie_clock() - signed_at <= lifetime:
                return (copy.deepcopy(data) if for_session else data), signed_at
        serializer = self.get_signing_serializer(app)
        if serializer is None:
            return None
        try:
            data, signed_at = serializer.loads(
                value, max_age=int(lifetime.total_seconds()), return_timestamp=True
            )
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        with self._lock:
            self._checked[value] = (app.secret_key, copy.deepcopy(data), signed_at)
            while len(self._checked) > CHECKED_COOKIES:
                self._checked.popitem(last=False)
        return data, signed_at

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        value = request.cookies.get(self.get_cookie_name(app))
        if self.get_signing_serializer(app) is None or not value:
            return super().open_session(app, request)
        cookie = self.read_cookie(app, value)
        if cookie is None:
            return self.session_class()
        session = self.session_class(cookie[0])
        session.signed_at = cookie[1]  # type: ignore[attr-defined]  # read by should_set_cookie
        return session

    def should_set_cookie(self, app: Flask, session: SessionMixin) -> bool:
        if session.modified:
            return True
        if request.path.startswith("/api/") or not super().should_set_cookie(app, session):
            return False
        signed_at = getattr(session, "signed_at", None)
        return signed_at is None or cookie_clock() - signed_at >= REFRESH_SESSION_AFTER


#: How old a page's session cookie may be before the page sends it again with a later expiry.
REFRESH_SESSION_AFTER = timedelta(hours=1)
#: How many checked session cookies a process remembers (the least recently checked go first).
CHECKED_COOKIES = 10_000


def cookie_clock() -> datetime:
    """Now, for the age of session cookies that were checked already."""
    return datetime.now(UTC)


def register_live(app: Flask) -> None:
    """Bind the board to the app's database, answer unchanged polls up front, and keep the API's
    answers free of session cookies."""
    from .security import add_security_headers

    with app.app_context():
        app.extensions["live_board"] = board = VersionBoard(db.engine)
    app.extensions["live_json"] = JsonCache()
    app.session_interface = QuietSessionInterface()
    middleware = FastPolls(app, board)
    sample = add_security_headers(Response(status=304), bool(app.config.get("HTTPS")))
    middleware.headers = [("Cache-Control", "private, no-cache")] + [
        (name, value)
        for name, value in sample.headers.items()
        if name not in ("Content-Type", "Cache-Control")
    ]
    app.wsgi_app = middleware  # type: ignore[method-assign]  # Flask's documented way


@sa.event.listens_for(sa.orm.Session, "after_commit")
def _forget_committed(session: sa.orm.Session) -> None:
    bumped = session.info.pop("bumped_groups", ())
    if bumped and has_app_context() and "live_board" in current_app.extensions:
        board().forget(bumped)


@sa.event.listens_for(sa.orm.Session, "after_rollback")
def _drop_uncommitted(session: sa.orm.Session) -> None:
    session.info.pop("bumped_groups", None)
