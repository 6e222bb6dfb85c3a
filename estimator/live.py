"""What links a live page to its JSON endpoint: the URL it polls and the ETag it starts from."""

from collections.abc import Collection, Iterable
from typing import Any

import sqlalchemy as sa
from flask import url_for

from .extensions import db
from .models import Issue, Round
from .sealing import ballot_keys


def open_key_ids(group_id: int) -> set[str]:
    """The ballot key ids of the group's open rounds, in one query (a revealed round's is cleared)."""
    statement = (
        sa.select(Round.key_id).join(Issue).where(Issue.group_id == group_id, Round.key_id.is_not(None))
    )
    return {key_id for key_id in db.session.scalars(statement) if key_id}


def key_ids_of(rounds: Iterable[Round]) -> set[str]:
    """The ballot key ids of these rounds, as loaded (open rounds that have votes have one)."""
    return {r.key_id for r in rounds if r.key_id}


def etag(kind: str, object_id: int, version: int, key_ids: Collection[str]) -> str:
    """The entity tag of an issue's or a group's state (unquoted): the group's version, and which
    of the open rounds' ballot keys (key_ids) still exist, since losing one changes what pages show
    without changing the version."""
    return f"{kind}-{object_id}-v{version}-k{ballot_keys.fingerprint(key_ids)}"


def live_context(kind: str, object_id: int, version: int, key_ids: Collection[str]) -> dict[str, str]:
    """Template variables that make a page poll `/api/<kind>s/<id>` from this version on."""
    values: dict[str, Any] = {f"{kind}_id": object_id}
    return {
        "live_api": url_for(f"api.{kind}", **values),
        "live_etag": f'"{etag(kind, object_id, version, key_ids)}"',
    }
