"""Rate-limit counters used directly by views, beside Flask-Limiter's decorated limits.

The counters live in the limiter's store (Redis when several processes serve).  When that store
cannot be reached they are kept in this process meanwhile, never a 500, and the shared store is
tried again on the next use, so its counters take over as soon as it is back.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import current_app
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import RateLimiter

from .extensions import limiter

_FALLBACK = "estimator.counters_fallback"


def limit(setting: str) -> RateLimitItem:
    """The limit named by a config setting, in Flask-Limiter's syntax ("20 per 10 minutes")."""
    return parse(current_app.config[setting])


def allowed(setting: str, *keys: str) -> bool:
    """Whether the counter named by keys has room left under the limit of setting."""
    return counting(lambda counter: counter.test(limit(setting), *keys))


def hit(setting: str, *keys: str) -> None:
    """Count one event on the counter named by keys, under the limit of setting."""
    counting(lambda counter: counter.hit(limit(setting), *keys))


def counting(action: Callable[[RateLimiter], bool]) -> bool:
    """Run action on the limiter's counters, or on this process's when its store is unreachable.

    Flask-Limiter switches to memory by itself (RATELIMIT_IN_MEMORY_FALLBACK_ENABLED) only for the
    limits it applies to views, and only once one of them has failed: counters used directly need
    the same fallback here.
    """
    try:
        return action(limiter.limiter)
    except Exception:  # whatever the store's client raises (Redis, Memcached…): count, don't fail
        current_app.logger.warning("Rate limit storage unreachable: counting in this process meanwhile")
        fallback = current_app.extensions.get(_FALLBACK)
        if fallback is None:
            fallback = current_app.extensions[_FALLBACK] = type(limiter.limiter)(MemoryStorage())
        return action(fallback)


def within(setting: str, scope: str, *subjects: str) -> bool:
    """Whether every subject (an address, a token…) has room left in scope under setting's limit."""
    return all(allowed(setting, scope, subject) for subject in subjects)


def count(setting: str, scope: str, *subjects: str) -> None:
    """Count one event in scope against each subject."""
    for subject in subjects:
        hit(setting, scope, subject)
