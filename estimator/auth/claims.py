"""A nickname belongs to the browser that first used it: the claim cookie and the claims table.

Every browser that logs in gets a long-lived cookie holding a random secret; the claims table
keeps the secret's hash beside each nickname that browser may use.  A nickname without a
password opens only in a browser holding its claim, so nobody becomes somebody else by typing
their nickname.  The cookie name and lifetime are constants here rather than settings: nothing
about them differs between deployments.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app, request
from werkzeug.wrappers import Response

from ..database import insert_unless_exists
from ..extensions import db
from ..models import Claim, User

CLAIM_COOKIE = "estimator_claim"
#: Browsers keep a cookie at most about 400 days; every login renews it.
CLAIM_COOKIE_MAX_AGE = timedelta(days=400)
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Browser:
    """The browser of the current request, known by the secret in its claim cookie."""

    secret: str

    @property
    def secret_hash(self) -> str:
        """What the database keeps instead of the secret."""
        return hashlib.sha256(self.secret.encode()).hexdigest()


def this_browser() -> Browser:
    """The browser sending this request; a new secret when it has no (well-formed) claim cookie."""
    secret = request.cookies.get(CLAIM_COOKIE, "")
    return Browser(secret if _SECRET.fullmatch(secret) else secrets.token_urlsafe(32))


def holds_claim(user: User, browser: Browser) -> bool:
    """Whether this browser holds a claim on the user's nickname."""
    mine = sa.exists().where(Claim.user_id == user.id, Claim.secret_hash == browser.secret_hash)
    return bool(db.session.scalar(sa.select(mine)))


def add_claim(user: User, browser: Browser) -> None:
    """Let this browser hold the user's nickname (again: holding it twice changes nothing)."""
    values = {"user_id": user.id, "secret_hash": browser.secret_hash}
    insert_unless_exists(Claim, values, unique=["user_id", "secret_hash"])


def may_use_without_password(user: User, browser: Browser) -> bool:
    """Whether this browser may log in as a password-less user, claiming it if nobody has.

    Users made before claims existed have none: the first browser that logs in with such a
    nickname claims it, exactly as if it had just created it.  The user's row is locked while
    deciding, so two browsers doing this at once cannot both win.
    """
    if holds_claim(user, browser):
        return True
    db.session.execute(sa.select(User.id).where(User.id == user.id).with_for_update())
    claimed = sa.exists().where(Claim.user_id == user.id)
    if db.session.scalar(sa.select(claimed)):
        return False
    add_claim(user, browser)
    return True


def remember_browser(response: Response, browser: Browser) -> None:
    """Send (or renew) the claim cookie; only the server ever reads it."""
    response.set_cookie(
        CLAIM_COOKIE,
        browser.secret,
        max_age=CLAIM_COOKIE_MAX_AGE,
        httponly=True,
        samesite="Lax",
        secure=current_app.config["HTTPS"],
    )
