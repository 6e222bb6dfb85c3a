"""Stores asked over the network (Redis) that stop answering: one wait per outage, not one per call.

A Redis that is frozen (its process stopped, its socket still open) or cut off by a dropped route
answers nothing, and every call to it waits for its whole socket timeout. Once one call has timed
out, a `Breaker` fails every call at once, and a background check asks the store every `PAUSE`
seconds whether it answers again: no request waits on it meanwhile. Each process has one breaker
per store, shared by its threads or greenlets and by every connection of the store's client.

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

#: How often a store that was given up is asked whether it answers again, in seconds.
PAUSE = 0.5
#: How long a call to Redis may wait for a connection or an answer, in seconds.
REDIS_TIMEOUT = 0.5
#: What a store that does not answer in time raises: redis-py's timeouts, and the socket's own.
TIMEOUTS: tuple[type[BaseException], ...] = (redis.TimeoutError, TimeoutError)


class StoreUnanswered(redis.ConnectionError):
    """Raised at once, without asking the store, while its breaker is open."""


class Breaker:
    """Gives a store up once a call to it timed out, until `check` (run in the background every
    `pause` seconds) finds that it answers again; calls meanwhile fail at once."""

    def __init__(self, name: str, check: Callable[[], object], pause: float = PAUSE) -> None:
        self.name = name
        self.check = check
        self.pause = pause
        self._lock = threading.Lock()
        self._given_up = False

    def call(self, action: Callable[[], T]) -> T:
        """Run action, unless the store is given up for now: then StoreUnanswered at once."""
        if self._given_up:
            raise StoreUnanswered(f"{self.name} did not answer in time; not asked again yet")
        try:
            return action()
        except TIMEOUTS:
            self._give_up()
            raise

    def _give_up(self) -> None:
        with self._lock:
            if self._given_up:
                return
            self._given_up = True
        log.warning(
            "%s did not answer within its timeout: calls fail at once until it answers again "
            "(asked every %g s)",
            self.name,
            self.pause,
        )
        threading.Thread(target=self._watch, name="outage-check", daemon=True).start()

    def _watch(self) -> None:
        """Ask the store every pause until it answers (a refusal is an answer: calls then fail
        fast on their own), then let calls through again."""
        while True:
            time.sleep(self.pause)
            try:
                self.check()
            except TIMEOUTS:
                continue
            except Exception:  # refused, reset, an error reply: not a store that keeps calls waiting
                pass
            break
        with self._lock:
            self._given_up = False
        log.info("%s answers again", self.name)


_breakers: dict[str, Breaker] = {}
_breakers_lock = threading.Lock()


def breaker(name: str, check: Callable[[], object]) -> Breaker:
    """This process's breaker for the store called name (check: a call that asks it cheaply)."""
    with _breakers_lock:
        if name not in _breakers:
            _breakers[name] = Breaker(name, check)
        return _breakers[name]


class BreakerRetry(Retry):
    """redis-py's retry policy with a breaker around each attempt. A connection the server closed
    (Redis restarted) is retried once at once, on a fresh connection; a timeout is never retried,
    and gives the store up until it answers again."""

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
    bounds = {"socket_timeout": timeout, "socket_connect_timeout": timeout}

    def ping() -> object:
        # A client of its own, never retried, so the check waits one timeout at the most.
        client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **bounds)
        try:
            return client.ping()
        finally:
            client.close()

    return {**bounds, "retry": BreakerRetry(breaker(store_name(purpose, url), ping))}
