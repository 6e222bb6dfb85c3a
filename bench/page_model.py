"""What a live page asks the server for: the one description of it that bench/capacity.py replays
and tests/test_page_model_browser.py holds against a real Chromium page.

A live page (the room, the group page, an issue's status page) is loaded, then opens its view's
event stream from the version it shows. When the group changes, the stream sends the page's changed
regions (`event: regions`) and then the version (`event: version`); the page swaps the regions in
and asks for nothing. When its own member votes, the page posts the card and marks it itself; the
regions event that the vote causes brings the rest. So:

- on load: the page and the stream, and the static files on a first visit only (`load`);
- on an event (another member's change, or the page's own vote coming back): nothing (ON_EVENT);
- on its own vote: the vote's POST, nothing else (ON_OWN_VOTE);
- when its stream ends or fails: its regions at once, and the stream again (ON_STREAM_END).

The browser test checks the first three; the last is read from estimator/static/app.js, as a
stream ends only after its lifetime (LIVE_STREAM_SECONDS) or with the server.

A request is written as its method and its path with placeholders: {group} and {issue} for ids,
{view} for the stream's view (`room`, `group`, `group-<page>`, `issue-<id>`), {version} for the
version the page shows and {v} for a static file's version (its digest: browsers keep it a year).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

#: The placeholders of a request's path, and what each stands for in a URL.
PLACEHOLDERS = {
    "group": r"\d+",
    "issue": r"\d+",
    "version": r"\d+",
    "view": r"room|group(?:-\d+)?|issue-\d+",
    "v": r"[\w.-]+",
}


@dataclass(frozen=True)
class Ask:
    """One request of a page: its method, its path (with the query) as a pattern, and its kind:
    `page` (the document), `asset` (a static file), `stream` (the event stream) or `fetch`."""

    method: str
    pattern: str
    kind: str

    def path(self, values: Mapping[str, object]) -> str:
        """The path of this request for these values of the placeholders."""
        return self.pattern.format_map(values)

    def read(self, method: str, path: str) -> dict[str, str] | None:
        """The placeholders' values when (method, path) is this request, else None."""
        if method != self.method:
            return None
        found = re.fullmatch(_regex(self.pattern), path)
        return found.groupdict() if found else None

    def __str__(self) -> str:
        return f"{self.method} {self.pattern}"


def _regex(pattern: str) -> str:
    parts = re.split(r"\{(\w+)\}", pattern)
    regex = ""
    for number, part in enumerate(parts):
        regex += f"(?P<{part}>{PLACEHOLDERS[part]})" if number % 2 else re.escape(part)
    return regex


#: Each live page's path, by the view its stream follows.
PAGES = {
    "room": "/groups/{group}/room",
    "group": "/groups/{group}",
    "issue": "/issues/{issue}",
}

#: The static files every page loads (base.html, Bootstrap-Flask's served locally), in the order
#: the page names them; the icon is asked for once the page has loaded. Each is named by its
#: version and kept by the browser for a year (estimator/assets.py): only a first visit asks.
ASSETS = (
    Ask("GET", "/static/theme.js?v={v}", "asset"),
    Ask("GET", "/bootstrap/static/css/bootstrap.min.css?v={v}", "asset"),
    Ask("GET", "/static/app.css?v={v}", "asset"),
    Ask("GET", "/bootstrap/static/js/bootstrap.min.js?v={v}", "asset"),
    Ask("GET", "/static/app.js?v={v}", "asset"),
    Ask("GET", "/static/favicon.svg?v={v}", "asset"),
)

#: The page's event stream: `data-live-events` plus the version the page shows (`data-live-version`).
STREAM = Ask("GET", "/api/groups/{group}/events?view={view}&since={version}", "stream")

#: What a page polls instead while it cannot hold a stream (`data-live-regions`); not asked while
#: the stream is open, so in none of the lists below.
REGIONS = Ask("GET", "/api/groups/{group}/regions?view={view}", "fetch")


def load(page: str, first_visit: bool = False) -> tuple[Ask, ...]:
    """What a live page asks for when it is opened: `page` is a key of PAGES. Its static files only
    on a first visit: a member reaches a live page through others (logging in, the invite), which
    loaded them, and the browser keeps them."""
    return (Ask("GET", PAGES[page], "page"), *(ASSETS if first_visit else ()), STREAM)


#: What a page asks for when an event arrives on its stream: nothing, the event carries the regions.
ON_EVENT: tuple[Ask, ...] = ()

#: What a page asks for when its member votes: the vote, sent with fetch (form field `value`,
#: headers `X-CSRFToken` and `Accept: application/json`). Its screen then follows from the regions
#: event that the vote causes, as every other member's does.
ON_OWN_VOTE = (Ask("POST", "/issues/{issue}/estimate", "fetch"),)

#: What a page asks for when its stream ends or fails: its regions at once (and again every
#: data-live-poll milliseconds while it has no stream), then, after a pause of about a second
#: (doubling with each failure in a row, at most 30 s), a new stream from the version it now shows.
#: A new EventSource, not the browser's own reconnection: no Last-Event-ID, `since` says it.
ON_STREAM_END = (REGIONS, STREAM)


def view_of(page: str, issue: int | None = None) -> str:
    """The stream's `view` parameter of a page."""
    return f"issue-{issue}" if page == "issue" else page


def describe(method: str, url: str, values: Mapping[str, object], origin: str) -> str:
    """A request a page made, as the model writes it: `METHOD pattern` when it is one of the model's
    requests with these values (the page's group, issue, view and version; any value of a
    placeholder not among them, such as a file's version), else as it was made
    (the path alone for the page's own origin), so that it stands out."""
    parts = urlsplit(url)
    same = f"{parts.scheme}://{parts.netloc}" == origin.rstrip("/")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    if not same:
        return f"{method} {url}"
    wanted = {name: str(value) for name, value in values.items()}
    for ask in (*ASSETS, STREAM, REGIONS, *ON_OWN_VOTE, *(Ask("GET", p, "page") for p in PAGES.values())):
        found = ask.read(method, path)
        if found is not None and all(wanted.get(name, value) == value for name, value in found.items()):
            return str(ask)
    return f"{method} {path}"


def described(asks: tuple[Ask, ...]) -> list[str]:
    """The model's requests as `describe` writes them, sorted (a page's requests run in parallel)."""
    return sorted(str(ask) for ask in asks)
