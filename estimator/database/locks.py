"""Changes to one group happen one after another: its row lock, and SQLite's write lock."""

from __future__ import annotations

import sqlalchemy as sa

from ..extensions import db
from ..models import Group
from .engine import CHANGES_AT_BEGIN, COOPERATIVE, INTENT, LOCK_LATER, WRITE, WRITE_LATER, begin_immediate


def take_sqlite_write_lock() -> None:
    """In a request of a view that `locks_later`, hold SQLite's write lock from here on: the
    transaction so far only read (or SQLite already holds the lock for what it wrote), so it is
    ended and begun again with BEGIN IMMEDIATE. What was read stays loaded: the login, read
    before, is all there is."""
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
    if INTENT.get() in (WRITE, WRITE_LATER):
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
