"""A group's version: every change somebody can see bumps it; and the rounds of a group, by index."""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.visitors import InternalTraversal

from ..extensions import db
from ..models import Group, Issue, Round


def bump_version(group_id: int, *along: UpdateBase, vote: bool = False, **values: Any) -> None:
    """Bump the group's version: live pages learn that something they show has changed.

    Only changes somebody can see bump it, so that watching the version tells nothing more than the
    pages do (re-submitting the same card, for one, changes nothing anyone can observe). The UPDATE
    runs at once (it takes the group's row lock) and the group, if loaded, reads its version again.

    `along` are the change's own writes, made of bound `values` named after no column, each to rows
    no other of them touches. On PostgreSQL they go in the same statement, as WITH clauses: a
    vote's writes are one round trip, not three.

    `vote`: the change is a vote, which changes one open round (its ballots, and its key and
    settings with its first ballot) and nothing else: the group's `vote_versions` counts these
    (live pages then read only that round again).
    """
    connection = db.session.connection()
    if along and connection.dialect.name == "postgresql":
        connection.execute(_bump_with(along, vote), {"bumped": group_id, **values})
    else:
        for write in along:
            connection.execute(write, values)
        connection.execute(_BUMPS[vote], {"bumped": group_id})
    loaded = db.session.identity_map.get(sa.inspect(Group).identity_key_from_primary_key((group_id,)))
    if loaded is not None:
        db.session.expire(loaded, ["version"])
    # Once committed, this process reads the version afresh rather than from its board (live.py).
    db.session.info.setdefault("bumped_groups", set()).add(group_id)


_BUMP = sa.update(Group).where(Group.id == sa.bindparam("bumped")).values(version=Group.version + 1)
#: The bump of any change, and of a vote.
_BUMPS = {False: _BUMP, True: _BUMP.values(vote_versions=Group.vote_versions + 1)}


@functools.cache
def _bump_with(along: tuple[UpdateBase, ...], vote: bool) -> UpdateBase:
    """The bump with these writes as its WITH clauses, built once per combination."""
    return _along(_BUMPS[vote], along)


def _along(statement: UpdateBase, writes: tuple[UpdateBase, ...]) -> UpdateBase:
    """The statement with these writes as its WITH clauses."""
    return statement.add_cte(*(write.cte(f"along_{number}") for number, write in enumerate(writes)))


def bump_version_unless_changed(
    group_id: int, seen: int, *along: UpdateBase, vote: bool = False, **values: Any
) -> bool:
    """On PostgreSQL, outside a transaction: bump the group's version and make its `along` writes
    in one statement, only if the version is still `seen`; True when they were made.

    The statement locks the group's row first (waiting for a change that holds it), and every
    write is guarded by that lock having found the version unchanged: if anything anyone can see
    changed since `seen` was read, nothing is written. Each `along` write must be guarded by
    `group_unchanged()`. One statement is its own transaction: no BEGIN, no COMMIT. `vote`
    as for bump_version.
    """
    parameters = {"bumped": group_id, "seen": seen, **values}
    if db.session.connection().execute(_guarded_bump(along, vote), parameters).first() is None:
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
def _guarded_bump(along: tuple[UpdateBase, ...], vote: bool) -> UpdateBase:
    """The guarded bump with these guarded writes as its WITH clauses, built once per combination."""
    bump = _BUMPS[vote].where(group_unchanged()).returning(Group.id)
    return _along(bump, along)


def change_group(group_id: int) -> None:
    """Lock the group and bump its version, for a change that everybody will see."""
    bump_version(group_id)  # the UPDATE takes the row lock, as lock_group does
    if group_id not in db.session.info.get("locked_groups", ()):
        db.session.expire_all()


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
