"""Wrong passwords, counted per nickname so that guessing is slow from whichever address.

A browser holding the nickname's claim has counters of its own: somebody else's guesses never
lock it out.  The counters live in the limiter's store and fall back to this process's memory
while that store is unreachable (see counters.py), never a 500.
"""

from __future__ import annotations

from .. import counters
from ..models import User

SCOPE = "password-failures"
SETTING = "PASSWORD_FAILURE_LIMIT"


def locked_out(user: User, claim_hash: str | None) -> bool:
    """Whether this nickname takes no more passwords for now from this kind of browser.

    claim_hash is the hash of the browser's claim on the nickname, or None when it has none.
    """
    return not counters.allowed(SETTING, *_keys(user, claim_hash))


def count_failure(user: User, claim_hash: str | None) -> None:
    """Count a wrong password typed for this nickname."""
    counters.hit(SETTING, *_keys(user, claim_hash))


def _keys(user: User, claim_hash: str | None) -> tuple[str, ...]:
    """Everybody without a claim shares the nickname's counter; each claiming browser has its own."""
    if claim_hash is None:
        return SCOPE, user.nickname_key
    return SCOPE, user.nickname_key, claim_hash
