"""The live layer: what makes pages follow their group as it changes, in one place.

The blueprints call a small surface:
- `live_view` registers a live page's regions and how to build them (regions.py);
- `live_context` gives a live page the attributes its script needs (its stream, its regions);
- `member_sees` is the one query of what a member sees of a group (seen.py);
- `events_response`, `regions_response` and `json_state` answer the API's stream, regions and JSON.
A change needs no call: every change bumps the group's version (database.bump_version), which the
board (board.py) sees, whichever process or machine made it. docs/architecture.md tells the way of a
vote from the click to every screen.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from flask import (
    Flask,
    Response,
    abort,
    current_app,
    has_app_context,
    request,
    session,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_limiter.util import get_remote_address
from flask_login import current_user
from werkzeug.exceptions import TooManyRequests

from ..errors import RETRY_AFTER
from ..extensions import db
from ..sealing import SharedMemoryKeyStore, machine_folder
from .board import VersionBoard, Watched
from .cache import VersionCache
from .presence import present_users
from .regions import Asked, Seat, built, live_view, parse_view, payload, sse
from .reuse import Loads, reused
from .seen import Seen, etag, key_fingerprint, member_sees, tag_matches
from .shelf import Shelf
from .stencils import Filler, personal
from .streams import Holding, StreamSlots

__all__ = [
    "Seat",
    "Seen",
    "events_response",
    "json_state",
    "live_context",
    "live_view",
    "member_sees",
    "personal",
    "present_users",
    "regions_response",
    "register_live",
    "reused",
]

log = logging.getLogger(__name__)


def live_context(view: str, group_id: int, version: int) -> dict[str, Any]:
    """Template variables that make a page showing `view` of the group at `version` live: its
    event stream, and the regions to poll when the stream is unavailable."""
    return {
        "live_events": url_for("api.events", group_id=group_id, view=view),
        "live_regions": url_for("api.regions", group_id=group_id, view=view),
        "live_version": version,
    }


def member_or_404(group_id: int, issue_id: int | None = None) -> Seen:
    """What the logged-in member sees of the group (or of its issue); 404 for anybody else."""
    seen = member_sees(current_user.id, group_id, issue_id)
    if seen is None:
        abort(404)
    return seen


def asked_view(group_id: int, name: str | None) -> tuple[Asked | None, Seen]:
    """The view a request names (none when it names none), and what the member sees of it."""
    if name is None:
        return None, member_or_404(group_id)
    asked = parse_view(name)
    if asked is None:
        abort(400, "Unknown view: pages name `room`, `group`, `group-<page>` or `issue-<id>`.")
    issue_id = asked.arg if asked.view.name == "issue" else None
    return asked, member_or_404(group_id, issue_id)


def regions_response(group_id: int, name: str) -> Response:
    """A view's regions as the member sees them now (what a page that cannot hold a stream polls):
    304 when the page shows this version already."""
    asked, seen = asked_view(group_id, name)
    assert asked is not None
    watching = board()
    watching.presence.polled(group_id, current_user.id)
    watching.ensure_watcher()
    tag = etag(f"regions-{asked.name}", seen)
    if tag_matches(tag, request.headers.get("If-None-Match", "")):
        response = current_app.response_class(status=304)
    else:
        try:
            body = payload(built(asked, seen), Filler(current_user._get_current_object()), {})
        except LookupError:
            abort(404)
        response = current_app.response_class(
            json.dumps(body, ensure_ascii=False), mimetype="application/json"
        )
    response.headers["ETag"] = tag
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def events_response(group_id: int, name: str | None, last_seen: int | None) -> Response:
    """The group's event stream; with a view, each change also brings the view's changed regions."""
    if not cooperative_worker():
        asked_view(group_id, name)  # 400 and 404 as for a stream
        return cannot_stream()
    give_back = take_stream_slots()
    try:
        asked, seen = asked_view(group_id, name)
        login = str(session.get("_user_id") or "")
        on_change = None
        if asked is not None:
            on_change = Screen(asked, seen, current_user._get_current_object(), last_seen).on_change
        db.session.close()  # the stream holds no database connection while it waits
        stream = board().listen(
            group_id,
            login,
            last_seen,
            current_app.config["LIVE_STREAM_SECONDS"],
            current_app.config["LIVE_HEARTBEAT_SECONDS"],
            on_change,
        )
    except LookupError:
        give_back()
        abort(404)
    except BaseException:
        give_back()
        raise
    body = Holding(stream_with_context(ended_quietly(stream, group_id)), give_back)
    response = current_app.response_class(body, mimetype="text/event-stream", direct_passthrough=True)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def take_stream_slots() -> Callable[[], None]:
    """This login's and this address's slots for one more stream in this process, and the function
    that gives them back; 429 when either holds as many as it may (LIVE_STREAMS_PER_LOGIN,
    LIVE_STREAMS_PER_ADDRESS)."""
    slots: StreamSlots = current_app.extensions["live_streams"]
    give_back = slots.take(
        {
            f"login:{current_user.id}": current_app.config["LIVE_STREAMS_PER_LOGIN"],
            f"address:{get_remote_address()}": current_app.config["LIVE_STREAMS_PER_ADDRESS"],
        }
    )
    if give_back is None:
        raise TooManyRequests(
            _(
                "Too many live pages are open from here. This page checks for changes every few "
                "seconds instead; close some tabs to get live updates again."
            ),
            retry_after=RETRY_AFTER,
        )
    return give_back


def ended_quietly(stream: Iterator[bytes], group_id: int) -> Iterator[bytes]:
    """The stream, ended (the browser reconnects) rather than broken with a traceback when the
    database fails it: its status is sent already, so a 503 can no longer be."""
    try:
        yield from stream
    except sa.exc.SQLAlchemyError as error:
        log.warning(
            "Live updates: a stream of group %s ended early: %s", group_id, f"{error}".partition("\n")[0]
        )


class Screen:
    """One open page's view of its group: what it shows, so that each change sends only what differs."""

    def __init__(self, asked: Asked, seen: Seen, viewer: Any, since: int | None) -> None:
        self.asked = asked
        self.seen = seen
        self.filler = Filler(viewer)
        self.shown: dict[str, str] = {}
        if since is not None and since == seen.version:
            try:  # the page shows this version: only what changes after it is sent
                self.shown = {name: s.digest for name, s in built(asked, seen).regions.items()}
            except LookupError:
                pass

    def on_change(self, entry: Watched, role: str) -> bytes | None:
        """The regions event of a change: the view's regions as this screen's variant now reads."""
        issue_id = self.asked.arg if self.asked.view.name == "issue" else None
        key_ids = frozenset(entry.key_ids(issue_id))
        seen = self.seen._replace(
            version=entry.version, role=role, key_ids=key_ids, fingerprint=key_fingerprint(key_ids)
        )
        try:
            regions = built(self.asked, seen, entry.settled)
            return sse("regions", entry.version, payload(regions, self.filler, self.shown))
        except LookupError:
            return None  # the issue went away: the version event makes the page reload
        except sa.exc.SQLAlchemyError as error:
            log.warning("Live updates: cannot build the %s view: %s", self.asked.name, error)
            return None


# --- JSON states, built once per version ----------------------------------------------------------


def json_state(kind: str, object_id: int, seen: Seen, build: Callable[[], dict[str, Any]]) -> Response:
    """An API state: 304 when the client has this version; else the JSON that build() makes, built
    once per version and process (it holds nothing personal)."""
    tag = etag(f"{kind}-{object_id}", seen)
    if tag_matches(tag, request.headers.get("If-None-Match", "")):
        response = current_app.response_class(status=304)
    else:
        cache: VersionCache[bytes] = current_app.extensions["live_json"]
        key = (kind, object_id, seen.group_id, seen.created_at, seen.version, seen.fingerprint)
        body = cache.get_or_build(
            key,
            lambda: json.dumps(build(), separators=(",", ":"), ensure_ascii=False).encode() + b"\n",
            subject=(seen.group_id, seen.created_at),
            version=seen.version,
            size=len,
        )
        response = current_app.response_class(body, mimetype="application/json")
    response.headers["ETag"] = tag
    response.headers["Cache-Control"] = "private, no-cache"
    return response


# --- streams need a worker that can wait -----------------------------------------------------------


def cooperative_worker() -> bool:
    """Whether this process can hold event streams: it runs under gevent (its workers patch the
    standard library), where a waiting stream costs a greenlet, not a whole worker."""
    from .. import cooperative

    return cooperative()


#: The process that said its pages poll (a worker forked from one that said so says it too).
_said_in_process: int | None = None
_saying = threading.Lock()


def cannot_stream() -> Response:
    """204 No Content: the browser stops reconnecting and the page polls its regions instead. A
    sync or threaded worker would be held by the stream for as long as the page is open: a few
    pages would take every worker. Logged once per process, with why."""
    global _said_in_process
    with _saying:
        said, _said_in_process = _said_in_process == os.getpid(), os.getpid()
    if not said:
        log.warning(
            "Live updates: this worker cannot hold event streams (%s); pages poll instead. "
            "Run gevent workers (gunicorn.conf.py does) to push changes.",
            server_kind(request.environ),
        )
    response = current_app.response_class(status=204)
    response.headers["Cache-Control"] = "no-store"
    return response


def server_kind(environ: Mapping[str, Any]) -> str:
    """What serves this request, in a few words: gunicorn's worker kind, or the server's name."""
    software = str(environ.get("SERVER_SOFTWARE") or "")
    if software.startswith("gunicorn"):
        return "gthread worker" if environ.get("wsgi.multithread") else "sync worker"
    return f"{software or 'this WSGI server'}, without gevent"


# --- wiring ---------------------------------------------------------------------------------------


def board() -> VersionBoard:
    """The current app's board."""
    return current_app.extensions["live_board"]  # type: ignore[no-any-return]  # extensions: dict[str, Any]


def register_live(app: Flask) -> None:
    """Bind the board to the app's database, and give the templates `personal`."""
    with app.app_context():
        app.extensions["live_board"] = VersionBoard(db.engine, app.extensions["ballot_keys"])
    budget = app.config["LIVE_CACHE_BYTES"]
    app.extensions["live_regions"] = VersionCache[Any](budget * 3 // 4)
    app.extensions["live_json"] = VersionCache[bytes](budget // 4)
    app.extensions["live_roles"] = {}
    app.extensions["live_loads"] = Loads()
    # This machine's workers share their builds where they share their ballot keys: in memory.
    if isinstance(app.extensions["ballot_keys"], SharedMemoryKeyStore) and app.config["LIVE_SHARED_BUILDS"]:
        folder = lambda: machine_folder(app.instance_path, "live_build_folder", "estimator-builds-")  # noqa: E731
        app.extensions["live_shelf"] = Shelf(folder, app.config["SQLALCHEMY_DATABASE_URI"])
    app.extensions["live_streams"] = StreamSlots()
    app.jinja_env.globals.update(personal=personal)


@sa.event.listens_for(sa.orm.Session, "after_commit")
def _forget_committed(session: sa.orm.Session) -> None:
    bumped = session.info.pop("bumped_groups", ())
    if bumped and has_app_context() and "live_board" in current_app.extensions:
        board().forget(bumped)


@sa.event.listens_for(sa.orm.Session, "after_rollback")
def _drop_uncommitted(session: sa.orm.Session) -> None:
    session.info.pop("bumped_groups", None)
