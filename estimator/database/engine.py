"""Setting the engines up: SQLite's and PostgreSQL's transactions as each request means to use them,
and reads straight through the driver."""

from __future__ import annotations

import functools
import logging
import os
import random
import sqlite3
import time
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa

V = TypeVar("V", bound=Callable[..., Any])


#: What a request means to do with the database, set for each request by the app (see
#: `register_request_intent` in estimator/__init__.py) so that nothing here reads the request:
#: READ for GET, HEAD and OPTIONS, WRITE for other methods, WRITE_LATER for a writing view marked
#: with `locks_later`. None outside requests (the command line, migrations, tests' set-up).
READ, WRITE, WRITE_LATER = "read", "write", "write-later"
INTENT: ContextVar[str | None] = ContextVar("estimator_database_intent", default=None)


def locks_later(view: V) -> V:
    """Mark a writing view that reads (the login, the CSRF check) before it locks, and locks before
    it writes: on SQLite it takes the write lock only when it locks (`take_sqlite_write_lock`), so
    that the lock is held for the write alone. The vote is the one that comes by the hundred."""
    view.locks_later = True  # type: ignore[attr-defined]
    return view


#: How long a writer waits for SQLite's write lock before the request fails, in seconds.
BUSY_TIMEOUT = 30
#: Pages of SQLite's write-ahead log after which a commit copies them into the database (about
#: 1 MiB; SQLite's own 1,000 pages, 4 MiB, are the whole of a small volume), and the size the log
#: is cut back to once copied.
WAL_PAGES = 250
WAL_BYTES = 1024 * 1024


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

    The write-ahead log is copied into the database every WAL_PAGES pages and cut back to
    WAL_BYTES, so that it never takes much more disk than the data: with SQLite's own 4 MiB, a
    log that had filled a small disk grew back over the space freed and filled it again. A write
    that finds the disk full leaves its connection for a fresh one.
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
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
        cursor.execute(f"PRAGMA journal_size_limit={WAL_BYTES}")
        cursor.close()
        owner_only(engine.url.database)

    @sa.event.listens_for(engine, "handle_error")
    def on_error(context: sa.engine.ExceptionContext) -> None:
        if disk_full(context.original_exception):
            context.is_disconnect = True  # a fresh connection next, in no state the failure left
            context.invalidate_pool_on_disconnect = False  # the others are fine

    @sa.event.listens_for(engine, "begin")
    def on_begin(connection: sa.Connection) -> None:
        intent = INTENT.get()
        writing = intent in (WRITE, WRITE_LATER)
        driver = connection.connection.driver_connection
        connection.info[LOCK_LATER] = intent == WRITE_LATER
        connection.info[CHANGES_AT_BEGIN] = driver.total_changes  # type: ignore[union-attr]
        connection.info[COOPERATIVE] = cooperative
        if connection.info[LOCK_LATER] or not writing:
            connection.exec_driver_sql("BEGIN")
        elif cooperative:
            begin_immediate(driver)
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


#: PostgreSQL's SQLSTATE for a full disk (disk_full).
DISK_FULL_SQLSTATE = "53100"


def disk_full(error: BaseException | None) -> bool:
    """Whether the database said its disk is full: SQLite's SQLITE_FULL ("database or disk is
    full"), PostgreSQL's disk_full."""
    if isinstance(error, sqlite3.Error):
        return (getattr(error, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL
    return getattr(error, "sqlstate", None) == DISK_FULL_SQLSTATE


LOCK_LATER = "estimator.lock_later"
CHANGES_AT_BEGIN = "estimator.changes_at_begin"
COOPERATIVE = "estimator.cooperative"


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


def configure_postgresql(engine: sa.Engine, prepare: bool = True) -> None:
    """Reading requests (GET, HEAD, OPTIONS) read in autocommit: no BEGIN and no ROLLBACK round
    trip around their few SELECTs, which under READ COMMITTED see what they would see in a
    transaction anyway (each statement its own snapshot). Writing requests keep their transaction.

    With `prepare`, psycopg prepares a statement on the server once a connection has run it five
    times: planned once, a vote's statements cost PostgreSQL a third of the CPU. Behind a pooler
    that runs each transaction on whichever server connection is free (PgBouncer in transaction
    mode) the next transaction lacks the statement or has another of that name, so
    DATABASE_PREPARED_STATEMENTS=0 turns preparing off; a process that meets the error turns it
    off itself (`lost_prepared_statement`). Nothing else here outlives a transaction: no session setting,
    advisory lock, temporary table or LISTEN.
    """
    if not prepare:
        UNPREPARED.add(engine)

    @sa.event.listens_for(engine, "checkout")
    def on_checkout(driver: Any, _record: Any, _proxy: Any) -> None:
        if engine in UNPREPARED:
            driver.prepare_threshold = None  # statements prepared before are not used either

    @sa.event.listens_for(engine, "handle_error")
    def on_error(context: sa.engine.ExceptionContext) -> None:
        if context.engine is not None and lost_prepared_statement(context.engine, context.original_exception):
            context.is_disconnect = True  # a fresh connection, without the statements it had
            context.invalidate_pool_on_disconnect = False

    @sa.event.listens_for(engine, "begin")
    def on_begin(connection: sa.Connection) -> None:
        if INTENT.get() == READ:
            read_in_autocommit(connection)

    @sa.event.listens_for(engine, "checkin")
    def on_checkin(driver: Any, record: Any) -> None:
        if record.info.pop(READ_AUTOCOMMIT, False) and driver is not None:
            driver.autocommit = False  # the next request may write


def switched_on(name: str, value: str | bool) -> bool:
    """A setting that is 1 or 0 (or true/false, yes/no, on/off); anything else is refused with a
    message naming it."""
    if isinstance(value, bool):
        return value
    spelled = value.strip().lower()
    if spelled in {"1", "true", "yes", "on"}:
        return True
    if spelled in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name} is {value!r}: set it to 1 (on) or 0 (off)")


#: Engines whose connections prepare no statement on the server (configure_postgresql).
UNPREPARED: weakref.WeakSet[sa.Engine] = weakref.WeakSet()

#: PostgreSQL's codes for a prepared statement that the server connection lacks (26000) or has
#: already, under the same name (42P05).
PREPARED_STATEMENT_SQLSTATES = ("26000", "42P05")


def lost_prepared_statement(engine: sa.Engine, error: BaseException) -> bool:
    """Whether the error says a statement prepared on one server connection was looked for on
    another (a pooler in transaction mode in between). The first time, the engine stops
    preparing statements, and the operator is told what to set."""
    if getattr(error, "sqlstate", None) not in PREPARED_STATEMENT_SQLSTATES:
        return False
    if engine not in UNPREPARED:
        UNPREPARED.add(engine)
        logging.getLogger(__name__).error(
            "database: a statement prepared on one PostgreSQL connection was run on another (%s): a "
            "pooler in transaction mode, such as PgBouncer, sits in between. This process prepares "
            "no more statements; set DATABASE_PREPARED_STATEMENTS=0 so that none ever does.",
            str(error).strip().splitlines()[0][:200],
        )
    return True


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


def write_in_transaction(connection: sa.Connection) -> None:
    """Undo read_in_autocommit: what this PostgreSQL connection runs next is one transaction."""
    if connection.connection.info.pop(READ_AUTOCOMMIT, False):
        connection.connection.driver_connection.autocommit = False  # type: ignore[union-attr]


def read_rows(
    connection: sa.Connection, statement: sa.Select[*tuple[Any, ...]], parameters: dict[str, Any]
) -> list[Any]:
    """The rows of a SELECT whose columns need no conversion by SQLAlchemy (integers, text,
    timestamps), as tuples. On PostgreSQL it runs straight through the driver, its SQL compiled
    once: SQLAlchemy's execution and result objects cost a vote's reads as much CPU as
    their round trips. Listeners of `before_cursor_execute` still hear of it (the SQL
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
        ) or lost_prepared_statement(connection.engine, error)
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
