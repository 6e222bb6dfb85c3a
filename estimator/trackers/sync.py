"""What crosses between a group and its tracker: issues in by query, final estimates out.

A tracker is slow or down at times, so nothing here talks to it while the database is locked:
what a call needs is read first into plain values (`Reach`, `Outgoing`), the transaction ends,
the tracker is asked, and only then is the group changed, in one short transaction.

Only keys, titles and final estimates cross: `write_estimate` is the one call that sends
anything of the group's, and it is given the issue's tracker reference, the field and the final
estimate, nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import sqlalchemy as sa
from flask_babel import gettext as _
from werkzeug.datastructures import MultiDict

from ..backlog_files import DETAILS_MAX
from ..extensions import db
from ..groups.forms import IssueForm
from ..groups.rules import MAX_ISSUES, NewIssue, add_issues
from ..models import Group, Issue, TrackerConnection
from ..text import looks
from . import CONNECTORS
from .base import ESTIMATE_FIELD_ATTRIBUTE, Connector, TrackerError, TrackerIssue
from .http import tracker_client
from .vault import unseal


@dataclass(frozen=True)
class Reach:
    """What a connector needs to reach a tracker, read from the database."""

    kind: str
    base_url: str
    secret: dict[str, str] = field(repr=False)
    estimate_field: str | None = None


def reach_of(connection: TrackerConnection) -> Reach:
    """The connection's address and opened credentials (VaultClosed when they cannot be opened)."""
    return Reach(
        connection.kind,
        connection.base_url,
        unseal(connection.group_id, connection.credentials),
        connection.estimate_field,
    )


@contextmanager
def connected(reach: Reach) -> Iterator[Connector]:
    """A connector for the tracker, on the guarded client (closed afterwards)."""
    connector_class = CONNECTORS.get(reach.kind)
    if connector_class is None:
        raise TrackerError(_("This server has no connector for %(kind)s trackers.", kind=reach.kind))
    with tracker_client() as client:
        connector = connector_class(client, reach.base_url, reach.secret)
        if reach.estimate_field and hasattr(connector, ESTIMATE_FIELD_ATTRIBUTE):
            setattr(connector, ESTIMATE_FIELD_ATTRIBUTE, reach.estimate_field)
        yield connector


def connection_of(group_id: int) -> TrackerConnection | None:
    """The group's tracker connection, if it has one."""
    return db.session.scalar(sa.select(TrackerConnection).where(TrackerConnection.group_id == group_id))


@dataclass
class Skip:
    """A tracker issue that was not added, and why."""

    key: str
    reason: str


@dataclass
class Imported:
    """What an import did."""

    added: int = 0
    updated: int = 0
    skipped: list[Skip] = field(default_factory=list)
    estimated: int = 0


def take_in(group: Group, found: list[TrackerIssue]) -> Imported:
    """Add the tracker's issues to the group (which the caller has locked), in the tracker's order.

    An issue whose key the group has (by look, as the group tells keys apart) keeps its votes and
    estimate; only its title follows the tracker's. New issues go to the end while the group has
    room; an estimate the tracker holds that is a card of the group's deck becomes the issue's
    final estimate, as if the team had recorded it.
    """
    result = Imported()
    issues = list(db.session.scalars(sa.select(Issue).where(Issue.group_id == group.id)))
    existing: dict[str, Issue] = {looks(issue.key): issue for issue in issues}
    room = MAX_ISSUES - len(issues)  # counted: two old keys may look alike
    new: list[tuple[TrackerIssue, str, str]] = []
    seen: set[str] = set()
    for item in found:
        form = IssueForm(
            formdata=MultiDict({"key": item.key, "description": item.title[:500]}), meta={"csrf": False}
        )
        if not form.validate():
            reason = next(error for errors in form.errors.values() for error in errors)
            result.skipped.append(Skip(item.key[:40], str(reason)))
            continue
        key, title = form.key.data or "", form.description.data or ""
        folded = looks(key)
        if folded in seen:
            result.skipped.append(Skip(key, _("The tracker listed this key twice.")))
            continue
        seen.add(folded)
        issue = existing.get(folded)
        if issue is not None:
            issue.tracker_ref = item.ref
            if issue.description != title:
                issue.description = title
                result.updated += 1
            else:
                result.skipped.append(Skip(key, _("The group already has this issue.")))
            continue
        if len(new) >= room:
            result.skipped.append(
                Skip(key, _("The group is full: a group holds at most %(max)d issues.", max=MAX_ISSUES))
            )
            continue
        new.append((item, key, title))
    deck = group.deck_rules
    rows = [
        NewIssue(key, title, item.details[:DETAILS_MAX], deck.fitting(item.estimate))
        for item, key, title in new
    ]
    for (item, _key, _title), issue in zip(new, add_issues(group, rows), strict=True):
        issue.tracker_ref = item.ref
        result.estimated += issue.final_estimate is not None
    result.added = len(new)
    return result


@dataclass(frozen=True)
class Outgoing:
    """A final estimate on its way to the tracker: where to, and the estimate alone."""

    reach: Reach
    ref: str
    field: str
    value: str


def outgoing(issue: Issue, connection: TrackerConnection | None) -> Outgoing:
    """What sending the issue's final estimate needs; TrackerError saying what is missing."""
    if connection is None or issue.tracker_ref is None:
        raise TrackerError(_("This issue was not imported from the group's tracker."))
    if not issue.final_estimate:
        raise TrackerError(_("Record a final estimate before sending it to the tracker."))
    if not connection.estimate_field:
        raise TrackerError(_("Choose the tracker's field for estimates on the tracker page first."))
    return Outgoing(reach_of(connection), issue.tracker_ref, connection.estimate_field, issue.final_estimate)


def deliver(sending: Outgoing) -> None:
    """Write the final estimate into the tracker's field (TrackerError when it refuses)."""
    with connected(sending.reach) as connector:
        connector.write_estimate(sending.ref, sending.field, sending.value)


def automatic(issue: Issue) -> Outgoing | None:
    """What to send once the issue's recorded final estimate is committed, when its group sends
    estimates automatically and the issue came from the tracker; None otherwise."""
    if issue.tracker_ref is None or not issue.final_estimate:
        return None
    connection = connection_of(issue.group_id)
    if connection is None or not connection.send_automatically:
        return None
    return outgoing(issue, connection)
