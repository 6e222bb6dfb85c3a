"""HTML rendered once and shared by everybody who sees the same thing, with holes for the viewer.

Wherever a template's output belongs to its viewer (the CSRF token, their nickname, their "(you)")
it calls `personal(...)`. On an ordinary page that is the value itself. While a *stencil* is
rendered it leaves a hole instead: the text is cut at the holes once, and each viewer's copy is the
pieces joined with that viewer's own values. A stencil therefore holds nothing of the person it was
rendered for, and filling it costs a join, not a render.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import g, request
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup, escape

#: What only the viewer sees, by hole name: its value for the viewer (the logged-in user) from the
#: arguments the template gave. It is escaped as the template would have escaped it.
HOLES: dict[str, Callable[..., Any]] = {
    "csrf": lambda viewer: generate_csrf(),
    "nickname": lambda viewer: viewer.nickname,
    # The page's own address, where the language and colour-scheme switches come back to.
    "next": lambda viewer: request.full_path.rstrip("?"),
    # Something shown only to the user with this id, such as "(you)" beside their own name.
    "you": lambda viewer, user_id, shown: shown if user_id == viewer.id else "",
}

#: Where a stencil's holes are collected while it is rendered: in `g`, under this name.
_RENDERING = "stencil_holes"
#: A hole in a stencil's text, never in a finished page. User data cannot forge one: it is escaped
#: (no "<" gets through) and the random part is this process's own.
_NONCE = secrets.token_hex(8)
_HOLE = re.compile(f"<!--hole {_NONCE} ([0-9]+)-->")

Hole = tuple[str, tuple[Any, ...]]


def personal(name: str, *args: Any) -> Any:
    """The viewer's own value of a hole (see HOLES); while a stencil is rendered, the hole itself."""
    holes: list[Hole] | None = g.get(_RENDERING)
    if holes is None:
        return HOLES[name](current_user, *args)
    holes.append((name, args))
    return Markup(f"<!--hole {_NONCE} {len(holes) - 1}-->")


@dataclass(frozen=True, slots=True)
class Stencil:
    """Rendered text cut at its holes: pieces[0], hole 0, pieces[1], hole 1 … pieces[-1]."""

    pieces: tuple[str, ...]
    holes: tuple[Hole, ...]
    digest: str  # the same for the same text and holes: what a page already shows is not sent again

    @property
    def size(self) -> int:
        """About how many bytes of memory it takes."""
        return sum(map(len, self.pieces)) + 64 * (len(self.pieces) + len(self.holes))


#: Whitespace between two tags: a browser shows any run of it as one space, or nothing.
_BETWEEN_TAGS = re.compile(r">[ \t\r\n]+<")


def compact(html: str) -> str:
    """Each run of whitespace between two tags cut to one line break: the same page on screen (the
    templates hold no <pre>), a fifth fewer bytes to send."""
    return _BETWEEN_TAGS.sub(">\n<", html)


class Holes:
    """Collects the holes of what is rendered inside `with`, to cut it into a stencil afterwards."""

    def __enter__(self) -> Holes:
        self.found: list[Hole] = []
        setattr(g, _RENDERING, self.found)
        return self

    def __exit__(self, *_exc: object) -> None:
        g.pop(_RENDERING, None)

    def cut(self, text: str) -> Stencil:
        """Text rendered inside `with`, cut at its holes."""
        parts = _HOLE.split(compact(text))
        holes = tuple(self.found[int(index)] for index in parts[1::2])
        pieces = tuple(parts[0::2])
        digest = hashlib.blake2b(repr((pieces, holes)).encode(), digest_size=12).hexdigest()
        return Stencil(pieces, holes, digest)


class Filler:
    """One viewer's values of the holes, each computed once however many stencils it fills."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.values: dict[Hole, str] = {}

    def fill(self, stencil: Stencil) -> str:
        """The stencil as this viewer sees it."""
        if not stencil.holes:
            return stencil.pieces[0]
        text = [stencil.pieces[0]]
        for hole, piece in zip(stencil.holes, stencil.pieces[1:], strict=True):
            value = self.values.get(hole)
            if value is None:
                name, args = hole
                value = self.values[hole] = str(escape(HOLES[name](self.viewer, *args)))
            text += (value, piece)
        return "".join(text)
