"""What is built once per version of a group and shared by every process's viewers of it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

V = TypeVar("V")


class VersionCache(Generic[V]):
    """Values by key within a budget of bytes, the least recently used dropped first, each built
    once however many ask for it at the same moment.

    Every value belongs to a subject (a group) at one of its versions: storing a newer version drops
    the subject's older ones, which nobody asks for any more, and a value of an older version that
    arrives late (built by a slow request) is not stored.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[V, int, Hashable]] = OrderedDict()
        self._subjects: dict[Hashable, tuple[int, set[Hashable]]] = {}  # subject → version, keys
        self._bytes = 0
        self._lock = threading.Lock()
        self._turns: dict[Hashable, tuple[threading.Lock, int]] = {}  # key → its lock, who want it

    def get(self, key: Hashable) -> V | None:
        """The value stored under key, if any."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def get_or_build(
        self,
        key: Hashable,
        build: Callable[[], V],
        *,
        subject: Hashable,
        version: int,
        size: Callable[[V], int],
    ) -> V:
        """The value under key, or what `build` returns (then stored). Those who miss the same key
        at once wait for the first one's build and use it: ten streams of a room woken by one vote
        build the room once, not ten times."""
        value = self.get(key)
        if value is not None:
            return value
        with self._turn(key):
            value = self.get(key)
            if value is not None:
                return value
            value = build()
            self.put(key, value, size(value), subject=subject, version=version)
            return value

    @contextmanager
    def _turn(self, key: Hashable) -> Iterator[None]:
        """Hold the lock of this key, made for as long as anybody wants it."""
        with self._lock:
            lock, wanted = self._turns.get(key) or (threading.Lock(), 0)
            self._turns[key] = (lock, wanted + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                lock, wanted = self._turns[key]
                if wanted > 1:
                    self._turns[key] = (lock, wanted - 1)
                else:
                    del self._turns[key]

    def put(self, key: Hashable, value: V, size: int, *, subject: Hashable, version: int) -> None:
        """Keep the value under key, unless it is larger than the whole budget or outdated."""
        if size > self.max_bytes:
            return
        with self._lock:
            known = self._subjects.get(subject)
            if known is not None and version < known[0]:
                return
            if known is not None and version > known[0]:
                for old in list(known[1]):
                    self._drop(old)  # the last one drops the subject too
            self._drop(key)
            self._subjects.setdefault(subject, (version, set()))[1].add(key)
            self._items[key] = (value, size, subject)
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._items)))

    def _drop(self, key: Hashable) -> None:
        """Forget the value under key, if any (the caller holds the lock)."""
        item = self._items.pop(key, None)
        if item is None:
            return
        _value, size, subject = item
        self._bytes -= size
        keys = self._subjects[subject][1]
        keys.discard(key)
        if not keys:
            del self._subjects[subject]

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """About how many bytes the stored values take."""
        return self._bytes
