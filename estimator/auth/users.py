"""find_or_create_user, the heart of login, and passwords."""

from __future__ import annotations

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from ..database import insert_unless_exists
from ..extensions import db
from ..models import User, new_token
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
        raise NicknameError(TOO_SIMILAR.format(shown) if new else MIXED_SCRIPTS)
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
