"""Who a browser becomes at login: find_or_create_user, claims and passwords."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.security import check_password_hash, generate_password_hash

from ..changes import RuleError
from ..database import insert_unless_exists
from ..extensions import db
from ..models import User, new_token
from .claims import Browser, add_claim, holds_claim, may_use_without_password
from .lockout import count_failure, locked_out
from .nicknames import (
    MIXED_SCRIPTS,
    TOO_SIMILAR,
    NicknameError,
    clean_nickname,
    is_single_script,
    nickname_key,
    nickname_skeleton,
)

PASSWORD_MIN, PASSWORD_MAX = 8, 128
TAKEN = _l(
    "“%(nickname)s” is taken: it belongs to the browser that first used it. If it is yours, open your "
    "account page (/account) in that browser and set a password; then you can log in with it anywhere."
)


class LoginRefused(RuleError):
    """A login the rules refuse; the message is for the person, under the field it concerns."""

    def __init__(self, message: str, *, field: str = "nickname", status: int = 422):
        super().__init__(message)
        self.field, self.status = field, status


@dataclass(frozen=True)
class Login:
    """Who the browser logs in as; whether the nickname is new; whether a typed password was unused."""

    user: User
    created: bool
    password_ignored: bool = False


def log_in(nickname: str, password: str | None, browser: Browser) -> Login:
    """Log this browser in with a nickname and maybe a password, or raise LoginRefused.

    A new nickname is created with a claim for this browser, in the same transaction.  A
    nickname with a password needs it, wherever it is typed, and the browser then holds a claim
    too.  A nickname without one opens only in a browser holding its claim.
    """
    try:
        user, created = find_or_create_user(nickname)
    except NicknameError as error:
        raise LoginRefused(str(error)) from None
    if created:
        add_claim(user, browser)
        if password:
            set_password(user, password)
        return Login(user, created=True)
    if user.has_password:
        problem = password_problem(user, password, browser)
        if problem:
            message, status = problem
            raise LoginRefused(
                _("This nickname is protected. %(problem)s", problem=message), field="password", status=status
            )
        add_claim(user, browser)
        return Login(user, created=False)
    if not may_use_without_password(user, browser):
        raise LoginRefused(str(TAKEN % {"nickname": user.nickname}))
    return Login(user, created=False, password_ignored=bool(password))


def password_problem(user: User, password: str | None, browser: Browser) -> tuple[str, int] | None:
    """Why this password does not open the nickname, with the status to answer; None if it does."""
    claim_hash = browser.secret_hash if holds_claim(user, browser) else None
    if locked_out(user, claim_hash):
        return _("Too many wrong passwords for this nickname. Please wait a few minutes."), 429
    if not password_matches(user, password):
        count_failure(user, claim_hash)
        return _("The password is missing or wrong."), 422
    return None


def find_or_create_user(nickname: str) -> tuple[User, bool]:
    """The user with this nickname, created on first use; also whether it was just created.

    NicknameError when the nickname breaks a rule, or when it is new and looks like one that is
    taken.  Two first logins with one new nickname at the same moment give one user: the unique
    constraints on the key and the skeleton decide which insert wins, and the other finds it.
    """
    shown = clean_nickname(nickname)
    key = nickname_key(shown)
    # Insert first, read after: the write lock comes first, as everywhere else.  Mixed scripts
    # can only name a user made before that rule, so they never create one.
    new = is_single_script(shown)
    values = {"nickname": shown, "nickname_key": key, "nickname_skeleton": nickname_skeleton(shown)}
    created = new and insert_unless_exists(User, values, unique=None)  # no clash on key or skeleton
    user = db.session.scalar(
        sa.select(User).where(User.nickname_key == key).execution_options(populate_existing=True)
    )
    if user is None:  # nobody has this nickname, and it may not be taken
        lookalike = new or db.session.scalar(
            sa.select(User.id).where(User.nickname_skeleton == values["nickname_skeleton"])
        )
        raise NicknameError(str(TOO_SIMILAR % {"nickname": shown} if lookalike else MIXED_SCRIPTS))
    return user, created


def set_password(user: User, password: str) -> None:
    """Protect the nickname with a salted scrypt hash; other sessions are signed out."""
    user.password_hash = generate_password_hash(password, method="scrypt")
    user.session_token = new_token()


def password_matches(user: User, password: str | None) -> bool:
    """Whether the password opens this nickname (always False when it has none)."""
    if user.password_hash is None or not password:
        return False
    return check_password_hash(user.password_hash, password)
