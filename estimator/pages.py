"""Pages rendered once and shared by everybody who sees the same thing, with holes for the viewer.

Rendering a big page costs far more than anything else in its request (the group page of a team at
the limits: some 50 ms of Jinja, gettext and url_for), yet most of it is the same for every member
who sees the same version in the same view. Such a page is rendered once into a *stencil*: wherever
the output belongs to the viewer (the CSRF token, their nickname, their "(you)", the live ETag signed
for their login) the template calls `personal(...)`, which then leaves a hole instead of the value.
The text is cut at the holes once; each request fills them with its own values and joins the pieces.
Outside a stencil, `personal(...)` is the value itself, so every other page renders as it always did.

Stencils are kept per process in a `PageCache` bounded in bytes (`PAGE_CACHE_BYTES`), the least
recently used dropped first; a page's newer version drops its older ones at once. A stencil holds
nothing of the person it was rendered for: the holes' values are computed again for every viewer.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, render_template, request
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup, escape

#: What only the viewer sees, by hole name: its value for the viewer (the logged-in user, resolved
#: once per page) from the arguments the template gave. It is escaped as the template would have.
HOLES: dict[str, Callable[..., Any]] = {
    "csrf": lambda viewer: generate_csrf(),
    "nickname": lambda viewer: viewer.nickname,
    # The page's own address, where the language and colour-scheme switches come back to.
    "next": lambda viewer: request.full_path.rstrip("?"),
    # The live pages' ETag is signed for the login: the code serving a stencil gives it (fill()).
    "live_etag": lambda viewer, tag: tag,
    # Something shown only to the user with this id, such as "(you)" beside their own name.
    "you": lambda viewer, user_id, shown: shown if user_id == viewer.id else "",
}
#: Holes whose value the code serving the page gives, as the stencil cannot know it.
GIVEN = frozenset({"live_etag"})

#: Where a stencil's holes are while it is rendered: in `g`, under this name.
_RENDERING = "page_holes"
#: A hole in a stencil's text, never in a finished page. User data cannot forge one: it is escaped
#: (no "<" gets through) and the random part is this process's own.
_NONCE = secrets.token_hex(8)
_HOLE = re.compile(f"<!--hole {_NONCE} ([0-9]+)-->")

#: About what one more piece costs besides its bytes (a bytes object and its place in a tuple).
PIECE_OVERHEAD = 64

Hole = tuple[str, tuple[Any, ...]]
K = TypeVar("K", bound=Hashable)


def personal(name: str, *args: Any) -> Any:
    """The viewer's own value of a hole (see HOLES); while a stencil is rendered, the hole itself."""
    holes: list[Hole] | None = g.get(_RENDERING)
    if holes is None:
        return HOLES[name](current_user, *args)
    holes.append((name, () if name in GIVEN else args))
    return Markup(f"<!--hole {_NONCE} {len(holes) - 1}-->")


@dataclass(frozen=True, slots=True)
class Stencil:
    """A rendered page cut at its holes: pieces[0], hole 0, pieces[1], hole 1 … pieces[-1]."""

    pieces: tuple[bytes, ...]
    holes: tuple[Hole, ...]
    size: int  # about how many bytes of memory it takes

    @classmethod
    def of(cls, pieces: tuple[bytes, ...], holes: tuple[Hole, ...]) -> Stencil:
        """A stencil of these pieces and holes, its size counted."""
        return cls(pieces, holes, sum(map(len, pieces)) + PIECE_OVERHEAD * (len(pieces) + len(holes)))


#: Whitespace between two tags: a browser shows any run of it as one space, or nothing.
_BETWEEN_TAGS = re.compile(r">[ \t\r\n]+<")


def render_compact(template: str, **context: Any) -> str:
    """A rendered template with each run of whitespace between two tags cut to one line break: the
    same page on screen (the templates hold no <pre>), a fifth fewer bytes to send."""
    return _BETWEEN_TAGS.sub(">\n<", render_template(template, **context))


def render_stencil(template: str, **context: Any) -> Stencil:
    """Render a template with holes where it calls `personal`, and cut it there."""
    holes: list[Hole] = []
    setattr(g, _RENDERING, holes)
    try:
        text = render_compact(template, **context)
    finally:
        g.pop(_RENDERING, None)
    parts = _HOLE.split(text)
    return Stencil.of(
        tuple(piece.encode() for piece in parts[0::2]), tuple(holes[int(index)] for index in parts[1::2])
    )


def fill(stencil: Stencil, **given: str) -> bytes:
    """The page as the current viewer sees it: the stencil with its holes filled (the GIVEN ones
    from `given`), each value computed once."""
    values: dict[Hole, bytes] = {}
    viewer = current_user._get_current_object()  # once, not through the proxy at every hole
    body = [stencil.pieces[0]]
    for hole, piece in zip(stencil.holes, stencil.pieces[1:], strict=True):
        value = values.get(hole)
        if value is None:
            name, args = hole
            value = str(escape(given[name] if name in GIVEN else HOLES[name](viewer, *args))).encode()
            values[hole] = value
        body += (value, piece)
    return b"".join(body)


def response(stencil: Stencil, **given: str) -> Response:
    """The filled page as a response, sent as render_template's would be."""
    return current_app.response_class(fill(stencil, **given), mimetype="text/html")


class PageCache:
    """Stencils by key, within a budget of bytes: the least recently used go first.

    Each is stored with its subject (a group) and the subject's version: storing a newer version
    drops the older ones of the same subject, which nobody asks for any more, and an older version
    that arrives late (rendered by a slow request) is not stored.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[Stencil, Hashable]] = OrderedDict()
        self._subjects: dict[Hashable, tuple[int, set[Hashable]]] = {}  # subject → version, keys
        self._bytes = 0
        self._lock = threading.Lock()
        self._turns: dict[Hashable, tuple[threading.Lock, int]] = {}  # key → its lock, who want it

    def get(self, key: Hashable) -> Stencil | None:
        """The stencil stored under key, if any."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def get_or_render(self, key: K, render: Callable[[], tuple[K, Stencil]]) -> tuple[K, Stencil]:
        """The stencil under key, or what `render` returns (its key and stencil; it stores them).
        Requests that miss the same key at once wait for the first one's render and use it instead
        of each rendering the page: a worker's first sixteen requests for a big page all rendered
        it, a second of CPU."""
        stencil = self.get(key)
        if stencil is not None:
            return key, stencil
        with self._turn(key):
            stencil = self.get(key)
            if stencil is not None:
                return key, stencil
            return render()

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

    def put(self, key: Hashable, stencil: Stencil, *, subject: Hashable, version: int) -> None:
        """Keep the stencil under key, unless it is larger than the whole budget or outdated."""
        size = stencil.size
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
            self._items[key] = (stencil, subject)
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._items)))

    def _drop(self, key: Hashable) -> None:
        """Forget the stencil under key, if any (the caller holds the lock)."""
        item = self._items.pop(key, None)
        if item is None:
            return
        stencil, subject = item
        self._bytes -= stencil.size
        keys = self._subjects[subject][1]
        keys.discard(key)
        if not keys:
            del self._subjects[subject]

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """About how many bytes the stored stencils take."""
        return self._bytes


def page_cache() -> PageCache:
    """The current app's cache of rendered pages."""
    return current_app.extensions["page_cache"]  # type: ignore[no-any-return]  # extensions: dict[str, Any]


def register_pages(app: Flask) -> None:
    """Give the templates `personal` and the app its cache of rendered pages."""
    app.extensions["page_cache"] = PageCache(app.config.get("PAGE_CACHE_BYTES", 0))
    app.jinja_env.globals.update(personal=personal)
