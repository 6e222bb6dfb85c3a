"""Database helpers shared by the blueprints: SQLite tuning, upserts and the per-group lock."""

from __future__ import annotations

import functools
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from flask import has_request_context, request
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.visitors import InternalTraversal

from .extensions import db
from .models import Group, Issue, Round

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


#: How long a writer waits for SQLite's write lock before the request fails, in seconds.
BUSY_TIMEOUT = 30


def configure_sqlite(engine: sa.Engine, cooperative: bool = False) -> None:
    """WAL, a busy timeout, foreign keys, secure delete; write requests take the lock up front.

    The database file is made readable by its owner only; SQLite gives its -wal and -shm files
    the same mode as the database file when it creates them.

    A write request starts its transaction with BEGIN IMMEDIATE, so two writers queue on the
    busy timeout instead of one of them failing when it upgrades a read lock.  Secure delete
    overwrites a revealed ballot's card on disk instead of leaving it in a free page.

    With `cooperative` (gevent workers), a writer waits for the lock held by another process in
    short sleeps that let the worker's other requests and event streams run (`begin_immediate`),
    not in SQLite's own busy wait, which would stall the whole worker.
    """

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # With WAL, NORMAL syncs at checkpoints rather than at every commit: a power cut may lose
        # the last commits, never corrupt the database.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()
        owner_only(engine.url.database)

    @sa.event.listens_for(engine, "begin")
    def on_begin(connection: sa.Connection) -> None:
        writing = has_request_context() and request.method not in SAFE_METHODS
        driver = connection.connection.driver_connection
        connection.info[LOCK_LATER] = writing and request.endpoint in LOCKS_LATER
        connection.info[CHANGES_AT_BEGIN] = driver.total_changes  # type: ignore[union-attr]
        connection.info[COOPERATIVE] = cooperative
        if connection.info[LOCK_LATER] or not writing:
            connection.exec_driver_sql("BEGIN")
        elif cooperative:
            begin_immediate(driver)
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


#: Writing endpoints that read (the login, the CSRF check) before they lock, and lock before they
#: write: on SQLite they take the write lock only when they lock (`take_sqlite_write_lock`), so
#: that the lock is held for the write alone. The vote is the one that comes by the hundred.
LOCKS_LATER = {"voting.estimate"}
LOCK_LATER = "estimator.lock_later"
CHANGES_AT_BEGIN = "estimator.changes_at_begin"
COOPERATIVE = "estimator.cooperative"


def take_sqlite_write_lock() -> None:
    """In a request of LOCKS_LATER, hold SQLite's write lock from here on: the transaction so far
    only read (or SQLite already holds the lock for what it wrote), so it is ended and begun again
    with BEGIN IMMEDIATE. What was read stays loaded: the login, read before, is all there is."""
    connection = db.session.connection()
    if not connection.info.get(LOCK_LATER):
        return
    connection.info[LOCK_LATER] = False
    driver = connection.connection.driver_connection
    if driver.total_changes != connection.info.get(CHANGES_AT_BEGIN):  # type: ignore[union-attr]
        return  # it wrote: SQLite upgraded the transaction and holds the lock already
    driver.execute("COMMIT")  # type: ignore[union-attr]
    if connection.info.get(COOPERATIVE):
        begin_immediate(driver)
    else:
        driver.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]


def begin_immediate(connection: Any) -> None:
    """BEGIN IMMEDIATE on a pysqlite connection, waiting for the write lock in sleeps of 0.5 to 2 ms
    (cooperative under gevent) instead of SQLite's busy handler, for up to BUSY_TIMEOUT seconds."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    delay = 0.0005
    connection.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise sa.exc.OperationalError("BEGIN IMMEDIATE", None, error) from error
            time.sleep(delay * random.uniform(0.5, 1.5))  # jitter: waiting writers do not collide
            delay = min(delay * 2, 0.002)
    finally:
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT * 1000}")


def configure_postgresql(engine: sa.Engine) -> None:
    """Reading requests (GET, HEAD, OPTIONS) read in autocommit: no BEGIN and no ROLLBACK round
    trip around their few SELECTs, which under READ COMMITTED see what they would see in a
    transaction anyway (each statement its own snapshot). Writing requests keep their transaction.
    """

    @sa.event.listens_for(engine, "begin")
    def on_begin(connection: sa.Connection) -> None:
        if has_request_context() and request.method in SAFE_METHODS:
            read_in_autocommit(connection)

    @sa.event.listens_for(engine, "checkin")
    def on_checkin(driver: Any, record: Any) -> None:
        if record.info.pop(READ_AUTOCOMMIT, False) and driver is not None:
            driver.autocommit = False  # the next request may write


#: Marks a pooled PostgreSQL connection that a reading request switched to autocommit.
READ_AUTOCOMMIT = "estimator.read_autocommit"


def read_in_autocommit(connection: sa.Connection) -> bool:
    """Let this pooled PostgreSQL connection read in autocommit until it goes back to the pool,
    which then switches it back (configure_postgresql); True when it does. The driver's own
    switch: SQLAlchemy's isolation level, set and reset around every read, cost a poll's read a
    sixth of its time. A connection inside a transaction stays in it."""
    driver: Any = connection.connection.driver_connection
    if driver.autocommit:
        return True
    if driver.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return False
    driver.autocommit = True
    connection.connection.info[READ_AUTOCOMMIT] = True
    return True


class Readers:
    """Reads outside any request's transaction (the polls answered before Flask, the group page's
    query, the version watcher) on a few of the engine's PostgreSQL connections that this process
    keeps out of the pool and in autocommit for good: a pooled read paid a checkout, a checkin and
    two switches of autocommit, a third of the CPU of its own round trip. A read waits for a kept
    connection as it would for a pooled one. With a pool too small to spare one (fewer than SHARE
    connections) and on SQLite, where a transaction ends with its read, every read takes one from
    the pool.

    Two are enough: a read is one indexed round trip, and a few connections that stay busy cost
    PostgreSQL less than many that take turns (with five kept per worker instead of two or one,
    the JSON of a poll served 3,570 to 3,820 requests per second against 3,800 to 3,910).

    A read that fails closes its kept connection (the next read opens another), and
    `engine.dispose()` closes them all."""

    #: How many connections a process keeps, at most one for every SHARE of the pool's.
    KEPT = 2
    SHARE = 4

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        pool = engine.pool
        sized = engine.dialect.name == "postgresql" and isinstance(pool, sa.pool.QueuePool)
        self.size = min(self.KEPT, pool.size() // self.SHARE) if sized else 0  # type: ignore[attr-defined]
        self.timeout = float(pool.timeout()) if sized else 30.0  # type: ignore[attr-defined]
        self._idle: list[sa.Connection] = []
        self._generation = 0
        self._lock = threading.Lock()
        self._free = threading.BoundedSemaphore(max(self.size, 1))
        sa.event.listen(engine, "engine_disposed", self._close)

    @contextmanager
    def connection(self) -> Iterator[sa.Connection]:
        """A connection to read on, in autocommit on PostgreSQL."""
        if not self.size:
            with self.engine.connect() as connection:
                if connection.dialect.name == "postgresql":
                    read_in_autocommit(connection)
                yield connection
            return
        if not self._free.acquire(timeout=self.timeout):
            raise sa.exc.TimeoutError(f"no connection to read on within {self.timeout:g} s")
        try:
            connection, generation = self._take()
            try:
                yield connection
                if connection.in_transaction():
                    connection.rollback()  # SQLAlchemy's own begin: the driver is in autocommit
            except BaseException:
                self._discard(connection)  # it may be broken, or stopped in the middle of a read
                raise
            with self._lock:
                if generation == self._generation:
                    self._idle.append(connection)
                    return
            self._discard(connection)  # the engine was disposed of meanwhile
        finally:
            self._free.release()

    def _take(self) -> tuple[sa.Connection, int]:
        with self._lock:
            generation = self._generation
            if self._idle:
                return self._idle.pop(), generation
        connection = self.engine.connect()
        read_in_autocommit(connection)
        return connection, generation

    def _close(self, _engine: sa.Engine) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._generation += 1
        for connection in idle:
            self._discard(connection)

    @staticmethod
    def _discard(connection: sa.Connection) -> None:
        """Close a kept connection for good: given back, it would stay open in the disposed pool."""
        connection.invalidate()
        connection.close()


def read_rows(
    connection: sa.Connection, statement: sa.Select[*tuple[Any, ...]], parameters: dict[str, Any]
) -> list[Any]:
    """The rows of a SELECT whose columns need no conversion by SQLAlchemy (integers, text,
    timestamps), as tuples. On PostgreSQL it runs straight through the driver, its SQL compiled
    once: SQLAlchemy's execution and result objects cost a poll's one read as much CPU as the
    query's round trip itself. Listeners of `before_cursor_execute` still hear of it (the SQL
    counted in tests and benchmarks), a driver error is raised as SQLAlchemy's, and a connection
    found broken is invalidated as SQLAlchemy would."""
    if connection.dialect.name != "postgresql":
        return list(connection.execute(statement, parameters).all())
    sql, defaults = _driver_sql(statement, connection.dialect)
    parameters = {**defaults, **parameters}
    driver: Any = connection.connection.driver_connection
    try:
        with driver.cursor() as cursor:
            for listen in connection.dispatch.before_cursor_execute:
                listen(connection, cursor, sql, parameters, None, False)
            cursor.execute(sql, parameters)
            return cursor.fetchall()  # type: ignore[no-any-return]  # the driver's rows: tuples
    except psycopg.Error as error:
        broken = connection.dialect.is_disconnect(
            error,  # type: ignore[arg-type]  # psycopg's Error is the driver's DBAPI Error
            connection.connection.dbapi_connection,
            None,
        )
        if broken:
            connection.invalidate(error)
        raise sa.exc.DBAPIError.instance(
            sql, parameters, error, psycopg.Error, connection_invalidated=broken
        ) from error


@functools.lru_cache(maxsize=64)  # statements built once, as module constants
def _driver_sql(statement: sa.Select[*tuple[Any, ...]], dialect: sa.Dialect) -> tuple[str, dict[str, Any]]:
    """A statement's SQL in the driver's own parameter style (psycopg: %(name)s), with the values
    of the parameters it holds itself (a LIMIT, say). A parameter that SQLAlchemy spells out only
    when it runs (an IN list, a literal) has no place here."""
    compiled = statement.compile(dialect=dialect)
    if compiled.post_compile_params or compiled.literal_execute_params:
        raise ValueError("read_rows takes no IN-list or literal-execute parameters")
    return str(compiled), dict(compiled.params)


def loaded(model: Any, values: Sequence[Any]) -> Any:
    """An instance of `model` made from its columns' values (in the table's order) as a query of
    the caller's read them, and put in the session as if the session had loaded it: no query of
    its own. The instance the session holds already, when it holds one."""
    state = dict(zip((column.key for column in model.__table__.columns), values, strict=True))
    identity = tuple(state[column.key] for column in model.__table__.primary_key.columns)
    known = db.session.identity_map.get(db.session.identity_key(model, identity))
    if known is not None:
        return known
    instance = model(**state)
    sa.orm.make_transient_to_detached(instance)
    db.session.add(instance)
    return instance


def write_in_transaction(connection: sa.Connection) -> None:
    """Undo read_in_autocommit: what this PostgreSQL connection runs next is one transaction."""
    if connection.connection.info.pop(READ_AUTOCOMMIT, False):
        connection.connection.driver_connection.autocommit = False  # type: ignore[union-attr]


class ArrayOf(sa.ColumnElement[Any]):
    """PostgreSQL's `ARRAY(subquery)`: the subquery's ids as one array value."""

    inherit_cache = True
    _traverse_internals = [("query", InternalTraversal.dp_clauseelement)]
    type = postgresql.ARRAY(sa.Integer)

    def __init__(self, query: sa.Select[int]) -> None:
        self.query = query


@compiles(ArrayOf)
def _array_of(element: ArrayOf, compiler: Any, **kw: Any) -> str:
    return f"ARRAY({compiler.process(element.query, **kw)})"


def in_group(
    group_id: sa.ColumnElement[int] | sa.orm.InstrumentedAttribute[int], dialect: str
) -> sa.ColumnElement[bool]:
    """Whether a round belongs to one of the group's issues. On PostgreSQL as `= ANY(ARRAY(…))`,
    so that the planner looks up each of the group's issues in the rounds' index: for `IN (…)` it
    read every round with a ballot key in the database (a hash join, 1.2 ms of the group page's
    query at 12,000 rounds, growing with the table)."""
    issues = sa.select(Issue.id).where(Issue.group_id == group_id)
    if dialect == "postgresql":
        return Round.issue_id == sa.any_(ArrayOf(issues))
    return Round.issue_id.in_(issues)


def owner_only(database: str | None) -> None:
    """Make a SQLite database file and its -wal and -shm files readable by their owner only."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    for suffix in ("", "-wal", "-shm"):
        path = Path(database + suffix)
        try:
            if path.exists() and path.stat().st_mode & 0o777 != 0o600:
                os.chmod(path, 0o600)
        except OSError as error:  # not ours to change (another owner): say so, keep serving
            logging.getLogger(__name__).warning("Cannot make %s private: %s", path, error)


def _insert(model: type[Any]) -> Any:
    """An INSERT for the session's dialect that supports ON CONFLICT."""
    dialect = db.session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def insert_unless_exists(model: type[Any], values: dict[str, Any], unique: list[str] | None) -> bool:
    """Insert a row unless one with the same unique columns exists; True when inserted.

    Safe when two requests race: the database's unique constraint decides, nobody sees an error.
    With `unique=None` a clash on any of the table's unique constraints stops the insert.
    """
    statement = (
        _insert(model)
        .values(**values)
        .on_conflict_do_nothing(index_elements=unique)
        .returning(model.__table__.c.id)  # rowcount is not reliable here; a returned id is
    )
    return db.session.execute(statement).first() is not None


def upsert(model: type[Any], values: dict[str, Any], unique: list[str], update: list[str]) -> None:
    """Insert a row, or update the given columns of the row with the same unique columns."""
    statement = _insert(model).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=unique, set_={name: statement.excluded[name] for name in update}
    )
    db.session.execute(statement)


def lock_group(group_id: int) -> None:
    """Lock the group's row until commit, so that changes to one group happen one after another.

    Every change to a group goes through here first: a late vote can never slip past a reveal.
    On SQLite a writing request already holds the database's write lock (BEGIN IMMEDIATE).
    Whatever was read before the lock may have changed meanwhile and is read again on next use,
    unless the group was locked before anything of it was read (as a vote does: voting/booth.py).
    """
    if group_id in db.session.info.get("locked_groups", ()):
        return
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.select(Group.id).where(Group.id == group_id).with_for_update())
    db.session.expire_all()


def hold_sqlite_write_lock() -> bool:
    """On SQLite, in a writing request, hold the database's write lock from here on: it holds every
    group, and what is read next is current. True when it is held."""
    if db.session.get_bind().dialect.name != "sqlite":
        return False
    if has_request_context() and request.method not in SAFE_METHODS:
        take_sqlite_write_lock()
        return True
    return False


def holding(group_id: int) -> None:
    """Note that this transaction holds the group's lock (lock_group need not take it again)."""
    db.session.info.setdefault("locked_groups", set()).add(group_id)


@sa.event.listens_for(sa.orm.Session, "after_commit")
@sa.event.listens_for(sa.orm.Session, "after_rollback")
def _unlocked(session: sa.orm.Session) -> None:
    """A transaction's end releases its locks."""
    session.info.pop("locked_groups", None)


def bump_version(group_id: int, *along: UpdateBase, **values: Any) -> None:
    """Bump the group's version: live pages learn that something they show has changed.

    Only changes somebody can see bump it, so that watching the version tells nothing more than the
    pages do (re-submitting the same card, for one, changes nothing anyone can observe). The UPDATE
    runs at once (it takes the group's row lock) and the group, if loaded, reads its version again.

    `along` are the change's own writes, made of bound `values` named after no column, each to rows
    no other of them touches. On PostgreSQL they go in the same statement, as WITH clauses: a
    vote's writes are one round trip, not three.
    """
    connection = db.session.connection()
    if along and connection.dialect.name == "postgresql":
        connection.execute(_bump_with(along), {"bumped": group_id, **values})
    else:
        for write in along:
            connection.execute(write, values)
        connection.execute(_BUMP, {"bumped": group_id})
    loaded = db.session.identity_map.get(sa.inspect(Group).identity_key_from_primary_key((group_id,)))
    if loaded is not None:
        db.session.expire(loaded, ["version"])
    # Once committed, this process reads the version afresh rather than from its board (live.py).
    db.session.info.setdefault("bumped_groups", set()).add(group_id)


_BUMP = sa.update(Group).where(Group.id == sa.bindparam("bumped")).values(version=Group.version + 1)


@functools.cache
def _bump_with(along: tuple[UpdateBase, ...]) -> UpdateBase:
    """The bump with these writes as its WITH clauses, built once per combination."""
    return _along(_BUMP, along)


def _along(statement: UpdateBase, writes: tuple[UpdateBase, ...]) -> UpdateBase:
    """The statement with these writes as its WITH clauses."""
    return statement.add_cte(*(write.cte(f"along_{number}") for number, write in enumerate(writes)))


def bump_version_unless_changed(group_id: int, seen: int, *along: UpdateBase, **values: Any) -> bool:
    """On PostgreSQL, outside a transaction: bump the group's version and make its `along` writes
    in one statement, only if the version is still `seen`; True when they were made.

    The statement locks the group's row first (waiting for a change that holds it), and every
    write is guarded by that lock having found the version unchanged: if anything anyone can see
    changed since `seen` was read, nothing is written. Each `along` write must be guarded by
    `group_unchanged()`. One statement is its own transaction: no BEGIN, no COMMIT.
    """
    parameters = {"bumped": group_id, "seen": seen, **values}
    if db.session.connection().execute(_guarded_bump(along), parameters).first() is None:
        return False
    db.session.info.setdefault("bumped_groups", set()).add(group_id)
    return True


#: The group's row, locked, if its version is still the one a change was decided on.
_UNCHANGED = (
    sa.select(Group.id)
    .where(Group.id == sa.bindparam("bumped"), Group.version == sa.bindparam("seen"))
    .with_for_update()
    .cte("unchanged")
    .prefix_with("MATERIALIZED")  # evaluated once, before any write that asks for it
)


def group_unchanged() -> sa.ColumnElement[bool]:
    """The guard of a write made by bump_version_unless_changed."""
    return sa.exists(sa.select(_UNCHANGED.c.id))


@functools.cache
def _guarded_bump(along: tuple[UpdateBase, ...]) -> UpdateBase:
    """The guarded bump with these guarded writes as its WITH clauses, built once per combination."""
    bump = (
        sa.update(Group)
        .where(Group.id == sa.bindparam("bumped"), group_unchanged())
        .values(version=Group.version + 1)
        .returning(Group.id)
    )
    return _along(bump, along)


def change_group(group_id: int) -> None:
    """Lock the group and bump its version, for a change that everybody will see."""
    bump_version(group_id)  # the UPDATE takes the row lock, as lock_group does
    if group_id not in db.session.info.get("locked_groups", ()):
        db.session.expire_all()
