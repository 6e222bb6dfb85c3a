"""Wrong passwords, counted per nickname so that guessing is slow from whichever address.

A browser holding the nickname's claim has counters of its own: somebody else's guesses never
lock it out.  The counters live in the limiter's store (Redis when several processes serve);
when that store cannot be reached they are kept in this process instead, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import current_app
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import RateLimiter

from ..extensions import limiter
from ..models import User

SCOPE = "password-failures"
_FALLBACK = "estimator.password_failures"


def locked_out(user: User, claim_hash: str | None) -> bool:
    """Whether this nickname takes no more passwords for now from this kind of browser.

    claim_hash is the hash of the browser's claim on the nickname, or None when it has none.
    """
    keys = _keys(user, claim_hash)
    return not _counting(lambda counter: counter.test(_limit(), *keys))


def count_failure(user: User, claim_hash: str | None) -> None:
    """Count a wrong password typed for this nickname."""
    keys = _keys(user, claim_hash)
    _counting(lambda counter: counter.hit(_limit(), *keys))


def _keys(user: User, claim_hash: str | None) -> tuple[str, ...]:
    """Everybody without a claim shares the nickname's counter; each claiming browser has its own."""
    if claim_hash is None:
        return SCOPE, user.nickname_key
    return SCOPE, user.nickname_key, claim_hash


def _limit() -> RateLimitItem:
    """The configured number of wrong passwords per nickname and time window."""
    return parse(current_app.config["PASSWORD_FAILURE_LIMIT"])


def _counting(action: Callable[[RateLimiter], bool]) -> bool:
    """Run action on the limiter's counters, or on this process's when its store is unreachable.

    Flask-Limiter switches to memory by itself (RATELIMIT_IN_MEMORY_FALLBACK_ENABLED) only for the
    limits it applies to views, and only once one of them has failed: counters used directly, as
    these are, need the same fallback here.
    """
    try:
        return action(limiter.limiter)
    except Exception:  # whatever the store's client raises (Redis, Memcached…): count, don't fail
        current_app.logger.warning("Rate limit storage unreachable: counting wrong passwords in memory")
        fallback = current_app.extensions.get(_FALLBACK)
        if fallback is None:
            fallback = current_app.extensions[_FALLBACK] = type(limiter.limiter)(MemoryStorage())
        return action(fallback)
