"""Stores asked over the network (Redis) that stop answering: one wait per outage, not one per call.

A Redis that is frozen (its process stopped, its socket still open) or cut off by a dropped route
answers nothing, and every call to it waits for its whole socket timeout. Once one call has timed
out, a `Breaker` fails the calls of the next `PAUSE` seconds at once, and then lets a single call
through to see whether the store answers again. Each process has one breaker per store, shared by
its threads or greenlets and by every connection of the store's client.

redis-py asks its `Retry` policy around every command, pipeline and connection handshake:
`BreakerRetry` is that policy with a breaker in it, so the clients need nothing else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a store that timed out is given up before one call tries it again, in seconds.
PAUSE = 1.0
#: How long a call to Redis may wait for a connection or an answer, in seconds.
REDIS_TIMEOUT = 0.5
#: What a store that does not answer in time raises: redis-py's timeouts, and the socket's own.
TIMEOUTS: tuple[type[BaseException], ...] = (redis.TimeoutError, TimeoutError)


class StoreUnanswered(redis.ConnectionError):
    """Raised at once, without asking the store, while its breaker is open."""


class Breaker:
    """Gives a store up for `pause` seconds after a call to it timed out; then one call tries it."""

    def __init__(self, name: str, pause: float = PAUSE) -> None:
        self.name = name
        self.pause = pause
        self._lock = threading.Lock()
        self._given_up_until: float | None = None
        self._trying = False

    @property
    def given_up(self) -> bool:
        """Whether calls fail at once now."""
        return self._given_up_until is not None

    def call(self, action: Callable[[], T]) -> T:
        """Run action, unless the store is given up for now: then StoreUnanswered at once."""
        trying = self._admit()
        try:
            result = action()
        except TIMEOUTS:
            self._give_up()
            raise
        except BaseException:
            if trying:  # another kind of failure (refused, reset): the next call tries again
                with self._lock:
                    self._trying = False
            raise
        self._answered()
        return result

    def _admit(self) -> bool:
        """Whether this call is the one that tries a given-up store again; raise if none may."""
        with self._lock:
            if self._given_up_until is None:
                return False
            if self._trying or time.monotonic() < self._given_up_until:
                raise StoreUnanswered(f"{self.name} did not answer in time; not asked again yet")
            self._trying = True
            return True

    def _give_up(self) -> None:
        with self._lock:
            first = self._given_up_until is None
            self._given_up_until = time.monotonic() + self.pause
            self._trying = False
        if first:
            log.warning(
                "%s did not answer within its timeout: calls fail at once, and it is tried again every %g s",
                self.name,
                self.pause,
            )

    def _answered(self) -> None:
        with self._lock:
            back = self._given_up_until is not None
            self._given_up_until = None
            self._trying = False
        if back:
            log.info("%s answers again", self.name)


_breakers: dict[str, Breaker] = {}
_breakers_lock = threading.Lock()


def breaker(name: str) -> Breaker:
    """This process's breaker for the store called name."""
    with _breakers_lock:
        return _breakers.setdefault(name, Breaker(name))


class BreakerRetry(Retry):
    """redis-py's retry policy with a breaker around each attempt. A connection the server closed
    (Redis restarted) is retried once at once, on a fresh connection; a timeout is never retried,
    and gives the store up for a moment."""

    def __init__(self, store_breaker: Breaker, retries: int = 1) -> None:
        super().__init__(NoBackoff(), retries, supported_errors=(redis.ConnectionError,))
        self.breaker = store_breaker

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        """Each attempt through the breaker; a call it refuses is not attempted again."""

        def retryable(error: Exception) -> bool:
            return not isinstance(error, StoreUnanswered) and (is_retryable is None or is_retryable(error))

        return super().call_with_retry(
            lambda: self.breaker.call(do), fail, retryable, with_failure_count=with_failure_count
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> BreakerRetry:
        # redis-py copies the policy into each connection: they must share one breaker.
        return self


def store_name(purpose: str, url: str) -> str:
    """A store's name for logs and breakers: its purpose and address, never a password."""
    parts = urlsplit(url)
    where = parts.hostname or ""
    if parts.port:
        where += f":{parts.port}"
    return f"{purpose} ({parts.scheme}://{where}{parts.path})"


def redis_options(purpose: str, url: str, timeout: float = REDIS_TIMEOUT) -> dict[str, Any]:
    """Options for a redis-py client of url: short timeouts, and this process's breaker for it."""
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": BreakerRetry(breaker(store_name(purpose, url))),
    }
