"""Nicknames, passwords and find_or_create_user: the heart of login."""

from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from ..database import insert_unless_exists
from ..extensions import db
from ..models import User, new_token

NICKNAME_MAX = 32
NICKNAME_PUNCTUATION = " ._-"
PASSWORD_MIN, PASSWORD_MAX = 8, 128


class NicknameError(ValueError):
    """A nickname that breaks the rules; the message says which rule."""


def clean_nickname(raw: str | None) -> str:
    """The nickname as it will be shown, or NicknameError saying what is wrong with it."""
    text = unicodedata.normalize("NFC", raw or "")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in text):
        raise NicknameError("A nickname cannot contain control characters.")
    text = " ".join(text.split())
    if not text:
        raise NicknameError("Please choose a nickname.")
    if len(text) > NICKNAME_MAX:
        raise NicknameError(f"A nickname has at most {NICKNAME_MAX} characters.")
    for ch in text:
        if not (unicodedata.category(ch)[0] in "LNM" or ch in NICKNAME_PUNCTUATION):
            raise NicknameError("Use letters, digits, spaces and . _ - only.")
    if unicodedata.category(text[0])[0] == "M":
        raise NicknameError("A nickname must start with a letter, digit or . _ -")
    return text


def nickname_key(nickname: str) -> str:
    """The form two nicknames share when they are the same person ("Alice" and "ALICE")."""
    return unicodedata.normalize("NFKC", nickname).casefold()


def find_or_create_user(nickname: str) -> tuple[User, bool]:
    """The user with this nickname, created on first use; also whether it was just created.

    Two first logins with the same new nickname at the same moment give one user: the unique
    constraint on the folded nickname decides which insert wins, and the other simply finds it.
    """
    shown = clean_nickname(nickname)
    key = nickname_key(shown)
    created = insert_unless_exists(User, {"nickname": shown, "nickname_key": key}, unique=["nickname_key"])
    user = db.session.scalar(
        sa.select(User).where(User.nickname_key == key).execution_options(populate_existing=True)
    )
    assert user is not None  # inserted above, or by whoever won the race
    return user, created


def set_password(user: User, password: str) -> None:
    """Protect the nickname with a salted scrypt hash; other sessions are signed out."""
    user.password_hash = generate_password_hash(password, method="scrypt")
    user.session_token = new_token()


def password_matches(user: User, password: str | None) -> bool:
    """Whether the password opens this nickname (always False when it has none)."""
    return bool(user.password_hash and password) and check_password_hash(user.password_hash, password)
