"""Inserts that race safely: the database's unique constraints decide, nobody sees an error."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db


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
