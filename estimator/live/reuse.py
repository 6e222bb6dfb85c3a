"""What a build loaded of a group, kept for its next version when that version was a vote.

A vote changes one open round (its ballots, and its key and settings with its first ballot) and
nothing else: it bumps the group's `vote_versions` with its version (database.bump_version), so
versions whose difference of the two, their *settled* version, is the same differ only in their
rounds. A build of such a version does not load the group again: it takes what the last build of
the same settled version loaded in this process (ORM objects, detached from their session) and
reads the open round into it again (the view's `refresh`, one small statement), then derives and
renders as ever. Every other change moves the settled version, and the next build loads afresh.

This is what a vote's build costs less for: the room's load through the ORM was two thirds of it
(docs/architecture.md, "Figures"). A kept load is used by one build at a time (its lock is held
until the build has rendered), and a build that fails with it is done again from a fresh load.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

#: How many loads a process keeps (one per group and view argument it builds): a room's of ten
#: members took about 40 kB (the server's memory at 5,000 participants, 500 groups, with and without).
KEPT_LOADS = 1000


@dataclass
class Kept:
    """One load, the settled version it was made for, and the lock of whoever builds from it."""

    settled: int
    value: Any
    # made when the load is kept, from the threading module as it is then (gevent patches it)
    lock: threading.Lock = field(default_factory=lambda: threading.Lock())


class Loads:
    """The loads a process keeps, the least recently used dropped first."""

    def __init__(self, size: int = KEPT_LOADS) -> None:
        self.size = size
        self._kept: OrderedDict[Hashable, Kept] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Kept | None:
        """The load kept under key, if any."""
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None:
                self._kept.move_to_end(key)
            return kept

    def put(self, key: Hashable, kept: Kept) -> None:
        """Keep a load under key, instead of any earlier one."""
        with self._lock:
            self._kept[key] = kept
            self._kept.move_to_end(key)
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)

    def drop(self, key: Hashable, kept: Kept) -> None:
        """Forget this load (it failed a build), unless another replaced it already."""
        with self._lock:
            if self._kept.get(key) is kept:
                del self._kept[key]


class Scope:
    """One build's use of the kept loads: those it took (and holds), those it made."""

    def __init__(self, loads: Loads, subject: Hashable, settled: int) -> None:
        self.loads = loads
        self.subject = subject
        self.settled = settled
        self.held: list[tuple[Hashable, Kept]] = []
        self.made: list[tuple[Hashable, Any]] = []

    def load(self, name: Hashable, load: Callable[[], T], refresh: Callable[[T], int | None]) -> T:
        key = (self.subject, name)
        kept = self.loads.get(key)
        if kept is not None and kept.settled == self.settled:
            kept.lock.acquire()
            self.held.append((key, kept))
            # The kept load's round read again, with the group's settled version as of that read:
            # another one means a change other than a vote came in since (load afresh).
            if refresh(kept.value) == self.settled:
                return kept.value  # type: ignore[no-any-return]  # what `load` made for this name
        value = load()
        if value is not None:
            self.made.append((key, value))
        return value


_scope: ContextVar[Scope | None] = ContextVar("live_reuse", default=None)


@contextmanager
def reusing(loads: Loads, subject: Hashable, settled: int | None) -> Iterator[Scope | None]:
    """Let the build in this block take a load kept for this subject (a group) at this settled
    version (None: load afresh), and keep what it loads for the next. A load taken is not kept
    any longer when the block fails. Gives the scope (its `held`: the loads taken)."""
    if settled is None:
        yield None
        return
    scope = Scope(loads, subject, settled)
    token = _scope.set(scope)
    try:
        yield scope
    except BaseException:
        for key, kept in scope.held:
            loads.drop(key, kept)
        raise
    else:
        for key, value in scope.made:
            loads.put(key, Kept(settled, value))
    finally:
        _scope.reset(token)
        for _key, kept in scope.held:
            kept.lock.release()


def reused(name: Hashable, load: Callable[[], T], refresh: Callable[[T], int | None]) -> T:
    """What `load` gives, or, in a build that may reuse (`reusing`), what it gave an earlier build
    of the group's same settled version, brought up to date by `refresh`: it reads the open
    round again into the loaded objects and returns the group's settled version as of that read (None
    when it cannot bring them up to date)."""
    scope = _scope.get()
    return load() if scope is None else scope.load(name, load, refresh)
