"""How many event streams one login and one client address may hold open in this process.

An open page holds one stream; a browser with many tabs a few. A client that opens thousands would
take the worker's time and connections from everybody else: past the caps it is answered 429 at
once, and its pages poll instead (as when a stream cannot be held).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator


class StreamSlots:
    """The streams this process holds, counted per holder (a login, an address), each capped."""

    def __init__(self) -> None:
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, caps: dict[str, int]) -> Callable[[], None] | None:
        """One slot for each holder in caps (holder → its cap), all or none: the function that
        gives them back (once, however often it is called), or None when a holder is at its cap."""
        with self._lock:
            if any(self._held[holder] >= cap for holder, cap in caps.items()):
                return None
            self._held.update(caps.keys())
        given_back = threading.Event()

        def give_back() -> None:
            with self._lock:
                if given_back.is_set():
                    return
                given_back.set()
                self._held.subtract(caps.keys())
                for holder in caps:
                    if self._held[holder] <= 0:
                        del self._held[holder]

        return give_back


class Holding:
    """A response body that gives its slots back when the server closes it, even unread."""

    def __init__(self, body: Iterator[bytes], give_back: Callable[[], None]) -> None:
        self.body = body
        self.give_back = give_back

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self.body)

    def close(self) -> None:
        """Close the body, then give the slots back."""
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.give_back()
