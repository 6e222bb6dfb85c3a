"""Where to send a person after login: only ever a path on this site."""

from typing import TypeGuard
from urllib.parse import urlsplit

from flask import url_for

from ..text import is_forbidden_character


def is_local_path(target: str | None) -> TypeGuard[str]:
    """True when target is a path on this site and cannot be read as another host."""
    if not target or "\\" in target:
        return False
    if any(ch.isspace() or is_forbidden_character(ch) for ch in target):
        return False
    if not target.startswith("/") or target.startswith("//"):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def safe_next(target: str | None) -> str:
    """The `next` target when it is a local path, else the dashboard."""
    return target if is_local_path(target) else url_for("groups.dashboard")
