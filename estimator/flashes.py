"""Unread flash messages are few: the session cookie never grows past what browsers send back.

Each message waits in the signed session cookie until a page shows it.  Somebody who acts again
and again without reading a page (a script, a form resubmitted from an old tab) would otherwise
grow the cookie until the server refuses every request with 431.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, message_flashed, session

KEPT = 5


def keep_recent_flashes(_app: Flask, **_message: Any) -> None:
    """Keep only the newest few unread messages, right after one is added."""
    flashes = session.get("_flashes", [])
    if len(flashes) > KEPT:
        session["_flashes"] = flashes[-KEPT:]


def register_flash_limit(app: Flask) -> None:
    """Install the trimming on the app (for this app's messages only)."""
    message_flashed.connect(keep_recent_flashes, app, weak=False)
