"""One permission check per role, used by every view that needs it."""

from typing import Protocol, TypeVar

import sqlalchemy as sa
from flask import abort
from flask_babel import gettext as _
from flask_login import current_user

from .extensions import db
from .models import Membership


def membership_of(group_id: int) -> Membership | None:
    """The current user's membership of a group, or None."""
    if not current_user.is_authenticated:
        return None
    return db.session.scalar(
        sa.select(Membership).where(Membership.group_id == group_id, Membership.user_id == current_user.id)
    )


def require_member(group_id: int) -> Membership:
    """The current user's membership; 404 for anyone else, so a group's existence never leaks."""
    membership = membership_of(group_id)
    if membership is None:
        abort(404)
    return membership


def ensure_owner(membership: Membership) -> Membership:
    """The membership if it is the owner's; 403 for other members."""
    if not membership.is_owner:
        abort(403, _("Only the group's facilitator can do that."))
    return membership


class Place(Protocol):
    """A member's place in a group, as a Membership or a vote's booth tells it."""

    @property
    def votes(self) -> bool: ...

    @property
    def is_owner(self) -> bool: ...


PlaceT = TypeVar("PlaceT", bound=Place)


def ensure_voter(membership: PlaceT) -> PlaceT:
    """The place if it votes; observers, and a facilitator who only facilitates, get 403."""
    if not membership.votes and membership.is_owner:
        abort(
            403, _("You facilitate this group without voting (see its settings): you have no card to give.")
        )
    if not membership.votes:
        abort(403, _("Observers watch the vote but do not take part in it."))
    return membership


def require_owner(group_id: int) -> Membership:
    """The owner's membership; 403 for other members, 404 for outsiders."""
    return ensure_owner(require_member(group_id))
