"""Jira Cloud and Jira Data Center: issues by JQL, and the final estimate into a number field.

Which Jira it is follows from the secret: Jira Cloud signs in with an Atlassian account's e-mail
address and an API token (`{"email": …, "token": …}`, HTTP Basic), Jira Data Center with a
personal access token alone (`{"token": …}`, `Authorization: Bearer`). Cloud speaks REST API v3,
whose descriptions are Atlassian Document Format (JSON), Data Center API v2, whose descriptions
are wiki markup, kept as they are.

Cloud searches with `GET /rest/api/3/search/jql`, paged by `nextPageToken`: Atlassian removed the
older `/rest/api/3/search` (paged by `startAt`) from Jira Cloud in 2025, where it now answers
410 Gone. Data Center still has `/rest/api/2/search` and only that.

The estimate goes either into a numeric custom field (`customfield_10016`, written with
`PUT /rest/api/{3,2}/issue/{id}`) or through a board's estimation (`agile-estimation:<board id>`,
`PUT /rest/agile/1.0/issue/{id}/estimation?boardId=…`), which writes whatever field that board
estimates in: team-managed projects' "Story point estimate" and company-managed ones' "Story
Points" alike, without knowing which.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx
from flask_babel import gettext as _

from .base import ConnectorBase, EstimateField, TrackerError, TrackerIssue, call

#: The estimate field that means "the estimation of board N", written `agile-estimation:N`.
AGILE = "agile-estimation"
_AGILE_FIELD = re.compile(AGILE + r":([0-9]{1,18})")
_CUSTOM_FIELD = re.compile(r"customfield_[0-9]{1,18}")
#: An issue id (10002) or key (PROJ-12): what may stand in a path.
_ISSUE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
#: A final estimate Jira can take: a plain decimal number (the `½` card is written 0.5).
_NUMBER = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,6})?")
_HALF = "½"
#: Names of the fields teams keep story points in, the usual one first in `fields()`.
_STORY_POINTS = re.compile(r"story[ _-]?points?\b", re.IGNORECASE)
#: The most issues Jira returns in one page of a search.
PAGE_SIZE = 100
#: Pages one search may read before it stops as a tracker that never ends.
MAX_PAGES = 100
#: Boards listed in `fields()`: a site with more lets the facilitator pick a field instead.
MAX_BOARDS = 50
#: How deep an Atlassian Document is read; real ones nest a few levels.
_ADF_DEPTH = 32


class JiraConnector(ConnectorBase):
    """Jira Cloud (REST API v3) or Jira Data Center (REST API v2), by the secret's shape."""

    kind: ClassVar[str] = "jira"

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        secret: dict[str, str],
        estimate_field: str | None = None,
    ) -> None:
        """`estimate_field`, when given, is the field whose value `search` reports as each issue's
        estimate: the one the facilitator picked for the final estimate."""
        super().__init__(client, base_url, secret, estimate_field)
        self.cloud = bool(self.email)
        self.api = "/rest/api/3" if self.cloud else "/rest/api/2"

    # The four things a connector does.

    def check(self) -> str:
        """The name Jira shows for the account the credentials belong to."""
        what = _("reading who the credentials belong to")
        me = self._call("GET", f"{self.api}/myself", what)
        if not isinstance(me, dict):
            raise _nonsense(what)
        for name in ("displayName", "name", "emailAddress", "accountId"):
            if isinstance(me.get(name), str) and me[name].strip():
                return str(me[name]).strip()
        raise _nonsense(what)

    def fields(self) -> list[EstimateField]:
        """Numeric custom fields, story points first, then each board's estimation, then the
        other numeric fields."""
        what = _("reading the fields")
        listed = self._call("GET", f"{self.api}/field", what)
        if not isinstance(listed, list):
            raise _nonsense(what)
        numeric = [
            (str(field["id"]), str(field.get("name") or field["id"]))
            for field in listed
            if isinstance(field, dict)
            and isinstance(field.get("id"), str)
            and _CUSTOM_FIELD.fullmatch(field["id"])
            and isinstance(field.get("schema"), dict)
            and field["schema"].get("type") == "number"
        ]
        names = [name for _id, name in numeric]

        def labelled(field_id: str, name: str) -> EstimateField:
            # Two fields of one name (a company-managed and a team-managed "Story Points") are
            # told apart by their id.
            return EstimateField(field_id, name if names.count(name) == 1 else f"{name} ({field_id})")

        story = [labelled(i, n) for i, n in numeric if _STORY_POINTS.search(n)]
        other = sorted((labelled(i, n) for i, n in numeric if not _STORY_POINTS.search(n)), key=_label)
        return [*sorted(story, key=_label), *self._boards(), *other]

    def search(self, query: str, limit: int) -> list[TrackerIssue]:
        """The issues the JQL selects, in its order, at most `limit`."""
        if not query.strip():
            raise TrackerError(
                _("Write a JQL query, for example: project = PROJ AND sprint in openSprints()")
            )
        if limit <= 0:
            return []
        estimate = self._estimate_source()
        wanted = ["summary", "description", *([estimate] if estimate else [])]
        return _Pages(self, query, limit, wanted, estimate).read()

    def write_estimate(self, ref: str, field: str, value: str) -> None:
        """Set the number field, or the board's estimation, of issue `ref` to the final estimate;
        nothing else is sent."""
        what = _("writing the estimate")
        number = _number(value)
        if number is None:
            raise TrackerError(
                _(
                    "The Jira field takes numbers only, and the final estimate %(value)s is not a number.",
                    value=value,
                )
            )
        issue = _issue_path(ref)
        board = _AGILE_FIELD.fullmatch(field)
        if board:
            self._call(
                "PUT",
                f"/rest/agile/1.0/issue/{issue}/estimation",
                what,
                params={"boardId": board.group(1)},
                json={"value": _decimal(number)},
            )
        elif _CUSTOM_FIELD.fullmatch(field):
            self._call("PUT", f"{self.api}/issue/{issue}", what, json={"fields": {field: number}})
        else:
            raise TrackerError(_("%(field)s is not a Jira field that can receive the estimate.", field=field))

    # Talking to Jira.

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        """One request to Jira, signed in as the secret says."""
        if not self.token:
            raise TrackerError(
                _(
                    "The Jira connection needs an API token with its account's e-mail address (Jira Cloud) "
                    "or a personal access token (Jira Data Center)."
                )
            )
        if not self.cloud and _is_cloud_site(self.base_url):
            # Jira Cloud takes no personal access token: a token alone would only be refused (401),
            # which says nothing of the e-mail address that is missing.
            raise TrackerError(
                _(
                    "Jira Cloud (an atlassian.net address) signs in with the account's e-mail address "
                    "and an API token: enter the e-mail address too."
                )
            )
        headers = {"Accept": "application/json"}
        if self.cloud:
            kwargs["auth"] = httpx.BasicAuth(self.email, self.token)
        else:
            headers["Authorization"] = f"Bearer {self.token}"
        return call(
            self.client, method, self.base_url + path, what, headers=headers, explain=_explain, **kwargs
        )

    def _estimate_source(self) -> str | None:
        """The field whose value is an issue's estimate: the one picked, or the one the picked
        board estimates in (None when nothing is picked)."""
        field = self.estimate_field
        if not field:
            return None
        if _CUSTOM_FIELD.fullmatch(field):
            return field
        board = _AGILE_FIELD.fullmatch(field)
        if not board:
            return None
        config = self._call(
            "GET",
            f"/rest/agile/1.0/board/{board.group(1)}/configuration",
            _("reading the board's estimation"),
        )
        try:
            estimated = config["estimation"]["field"]["fieldId"]
        except (KeyError, TypeError):
            return None  # a board that estimates nothing, or by issue count
        return estimated if isinstance(estimated, str) and _CUSTOM_FIELD.fullmatch(estimated) else None

    def _boards(self) -> list[EstimateField]:
        """Each board's estimation as a field, Kanban boards left out; none where Jira Software is
        not installed."""
        try:
            listed = self._call(
                "GET",
                "/rest/agile/1.0/board",
                _("reading the boards"),
                params={"maxResults": MAX_BOARDS},
            )
        except TrackerError:
            return []  # no Jira Software: the custom fields are all there is
        values = listed.get("values") if isinstance(listed, dict) else None
        boards = [
            EstimateField(
                f"{AGILE}:{board['id']}",
                _("Estimation of the board %(board)s", board=board.get("name") or board["id"]),
            )
            for board in values or []
            if isinstance(board, dict)
            and isinstance(board.get("id"), int)
            and not isinstance(board["id"], bool)
            # A Kanban board estimates nothing; scrum boards and team-managed ("simple") ones do.
            and board.get("type") != "kanban"
        ]
        return sorted(boards, key=_label)


class _Pages:
    """One search, read page by page until the limit, the last page, or a tracker that loops."""

    def __init__(
        self, jira: JiraConnector, query: str, limit: int, wanted: list[str], estimate: str | None
    ) -> None:
        self.jira = jira
        self.query = query
        self.limit = limit
        self.fields = ",".join(wanted)
        self.estimate = estimate
        self.issues: list[TrackerIssue] = []
        self.seen: set[str] = set()

    def read(self) -> list[TrackerIssue]:
        """All pages, Cloud's by token, Data Center's by offset."""
        what = _("reading the issues")
        token: str | None = None
        tokens: set[str] = set()
        for _page in range(MAX_PAGES):
            params: dict[str, str | int] = {
                "jql": self.query,
                "fields": self.fields,
                "maxResults": min(PAGE_SIZE, self.limit - len(self.issues)),
            }
            if self.jira.cloud:
                if token is not None:
                    params["nextPageToken"] = token
                page = self.jira._call("GET", "/rest/api/3/search/jql", what, params=params)
            else:
                params["startAt"] = len(self.issues)
                page = self.jira._call("GET", "/rest/api/2/search", what, params=params)
            if not isinstance(page, dict) or not isinstance(page.get("issues"), list):
                raise _nonsense(what)
            if not self._take(page["issues"], what) or len(self.issues) >= self.limit:
                return self.issues
            if self.jira.cloud:
                token = page.get("nextPageToken")
                if page.get("isLast") is True or not isinstance(token, str) or not token:
                    return self.issues
                if token in tokens:
                    raise _endless(what)
                tokens.add(token)
            else:
                total = page.get("total")
                if isinstance(total, int) and len(self.issues) >= total:
                    return self.issues
        raise _endless(what)

    def _take(self, page: list[Any], what: str) -> bool:
        """Keep a page's issues; False for an empty page (the end). An issue seen before means
        Jira is sending the same pages again."""
        for raw in page:
            if len(self.issues) >= self.limit:
                break
            issue = _issue(raw, self.estimate, what)
            if issue.ref in self.seen:
                raise _endless(what)
            self.seen.add(issue.ref)
            self.issues.append(issue)
        return bool(page)


def _issue(raw: Any, estimate: str | None, what: str) -> TrackerIssue:
    """One issue of a search answer."""
    if not isinstance(raw, dict) or not isinstance(raw.get("key"), str):
        raise _nonsense(what)
    fields = _mapping(raw.get("fields"))
    summary = fields.get("summary")
    ref = raw.get("id")
    return TrackerIssue(
        key=raw["key"],
        title=summary.strip() if isinstance(summary, str) else "",
        details=adf_text(fields.get("description")),
        estimate=format_number(fields.get(estimate)) if estimate else None,
        ref=ref if isinstance(ref, str) and _ISSUE_REF.fullmatch(ref) else raw["key"],
    )


def _explain(answer: Any) -> str | None:
    """Jira's reasons for a refusal: `errorMessages` and the per-field `errors`."""
    if not isinstance(answer, dict):
        return None
    reasons = [m for m in answer.get("errorMessages") or [] if isinstance(m, str)]
    errors = answer.get("errors")
    if isinstance(errors, dict):
        reasons += [f"{name}: {m}" for name, m in errors.items() if isinstance(m, str)]
    return " ".join(reasons) or None


def _is_cloud_site(base_url: str) -> bool:
    """Whether the address is a Jira Cloud site (`yourteam.atlassian.net`)."""
    host = (urlsplit(base_url).hostname or "").rstrip(".").lower()
    return host.endswith(".atlassian.net")


def _nonsense(what: str) -> TrackerError:
    return TrackerError(_("Jira's answer was not what Jira sends while %(what)s.", what=what))


def _endless(what: str) -> TrackerError:
    return TrackerError(
        _("Jira kept sending pages that never end while %(what)s; nothing was imported.", what=what)
    )


def _label(field: EstimateField) -> str:
    return field.label.casefold()


def _issue_path(ref: str) -> str:
    """The issue's id or key as a path segment; TrackerError for anything else."""
    if not _ISSUE_REF.fullmatch(ref):
        raise TrackerError(_("%(ref)s is not a Jira issue.", ref=ref))
    return quote(ref, safe="")


def _number(value: str) -> int | float | None:
    """The final estimate as the number Jira stores, or None when it is not one (a t-shirt size)."""
    text = value.strip()
    if text == _HALF:
        return 0.5
    if not _NUMBER.fullmatch(text):
        return None
    number = float(text)
    return int(number) if number.is_integer() else number


def _decimal(number: int | float) -> str:
    """A number as Jira's board estimation takes it: `5`, `0.5`."""
    return str(number) if isinstance(number, int) else format_number(number) or "0"


def format_number(value: Any) -> str | None:
    """A number field's value as an estimate: 5.0 is "5", 2.5 is "2.5"; None when not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


# Atlassian Document Format (Jira Cloud's rich text) as plain text.


def adf_text(document: Any) -> str:
    """A description as plain text: Data Center's wiki text as it is, a Cloud document's
    paragraphs, headings, lists, code, quotes, tables, mentions and emoji as lines of text."""
    if isinstance(document, str):
        return document.strip()
    if not isinstance(document, dict):
        return ""
    return "\n\n".join(_blocks(document.get("content"), 0)).strip()


def _blocks(nodes: Any, depth: int) -> list[str]:
    """The non-empty text of each block node."""
    if not isinstance(nodes, list) or depth > _ADF_DEPTH:
        return []
    texts = (_block(node, depth + 1) for node in nodes if isinstance(node, dict))
    return [text for text in texts if text.strip()]


def _block(node: dict[str, Any], depth: int) -> str:
    if depth > _ADF_DEPTH:
        return ""
    kind = node.get("type")
    content = node.get("content")
    attrs = _mapping(node.get("attrs"))
    if kind in ("paragraph", "heading", "codeBlock", "taskItem", "decisionItem"):
        text = _inline(content, depth)
        if kind == "taskItem":
            return ("[x] " if attrs.get("state") == "DONE" else "[ ] ") + text
        return text
    if kind in ("bulletList", "orderedList", "taskList", "decisionList"):
        order = attrs.get("order")
        start = order if isinstance(order, int) else 1
        lines: list[str] = []
        for number, item in enumerate(_items(content), start=start):
            marker = f"{number}. " if kind == "orderedList" else "" if kind == "taskList" else "- "
            body = (
                _block(item, depth + 1)
                if item.get("type") != "listItem"
                else "\n".join(_blocks(item.get("content"), depth + 1))
            )
            first, *rest = body.split("\n") or [""]
            lines.append(marker + first)
            lines.extend(" " * len(marker) + line if line else "" for line in rest)
        return "\n".join(lines)
    if kind == "blockquote":
        quoted = "\n\n".join(_blocks(content, depth)).split("\n")
        return "\n".join(f"> {line}" if line else ">" for line in quoted)
    if kind == "rule":
        return "---"
    if kind == "table":
        rows = []
        for row in _items(content):
            cells = [" ".join(_blocks(cell.get("content"), depth + 1)) for cell in _items(row.get("content"))]
            rows.append(" | ".join(cell.replace("\n", " ") for cell in cells))
        return "\n".join(rows)
    if kind in ("blockCard", "embedCard"):
        return str(attrs.get("url") or "")
    if kind in ("mediaSingle", "mediaGroup", "media", "extension"):
        return ""
    title = attrs.get("title") if kind in ("expand", "nestedExpand") else None
    if isinstance(content, list) and content and all(_is_inline(child) for child in content):
        inner = [_inline(content, depth)]
    elif isinstance(content, list):
        inner = _blocks(content, depth)
    else:
        inner = [_inline([node], depth)]
    return "\n\n".join([*([title] if isinstance(title, str) and title else []), *inner])


_INLINE = {"text", "hardBreak", "mention", "emoji", "inlineCard", "status", "date", "placeholder"}


def _is_inline(node: Any) -> bool:
    return isinstance(node, dict) and node.get("type") in _INLINE


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _items(nodes: Any) -> list[dict[str, Any]]:
    return [node for node in nodes if isinstance(node, dict)] if isinstance(nodes, list) else []


def _inline(nodes: Any, depth: int) -> str:
    """Inline nodes as one run of text; a hard break is a line break."""
    if depth > _ADF_DEPTH:
        return ""
    parts: list[str] = []
    for node in _items(nodes):
        kind = node.get("type")
        attrs = _mapping(node.get("attrs"))
        if kind == "text":
            parts.append(str(node.get("text") or ""))
        elif kind == "hardBreak":
            parts.append("\n")
        elif kind == "mention":
            text = str(attrs.get("text") or "")
            parts.append(text if text.startswith("@") or not text else "@" + text)
        elif kind == "emoji":
            parts.append(str(attrs.get("text") or attrs.get("shortName") or ""))
        elif kind in ("status", "placeholder"):
            parts.append(str(attrs.get("text") or ""))
        elif kind == "inlineCard":
            parts.append(str(attrs.get("url") or ""))
        elif kind == "date":
            parts.append(_date(attrs.get("timestamp")))
        else:
            parts.append(_inline(node.get("content"), depth + 1))
    return "".join(parts)


def _date(timestamp: Any) -> str:
    """An ADF date (milliseconds since 1970, as text) as YYYY-MM-DD."""
    try:
        return datetime.fromtimestamp(int(timestamp) / 1000, UTC).date().isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return ""
