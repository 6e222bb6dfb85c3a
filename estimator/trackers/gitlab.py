"""GitLab (gitlab.com or self-managed): a project's issues, and the final estimate as issue weight.

The secret is `{"token": …}`: a personal, group or project access token with the `api` scope
(`read_api` is enough to import, not to write the weight back), sent as `PRIVATE-TOKEN`.

A query names the project first, then optional filters, in any order:

    group/subgroup/project label:Backend label:"Needs estimate" milestone:"Sprint 4" state:opened

- the project: its path (`group/project`, subgroups included), its numeric id, or its web address
  (`https://gitlab.example.com/group/project/-/issues` is read as `group/project`);
- `label:NAME` — issues that carry the label; several `label:` mean all of them;
- `milestone:NAME` — issues of that milestone (`milestone:None`, `milestone:Any` as GitLab reads them);
- `state:opened` (the default), `state:closed` or `state:all`;
- `search:TEXT` — issues whose title or description contain the text.

A value with spaces is written in double quotes. The issues come in GitLab's order (newest first),
each keyed `#<iid>` as GitLab itself refers to an issue within its project: an Estimator key holds
32 characters, which `group/subgroup/project#123` soon outgrows, and the project is in the
reference (`<project id>:<iid>`) that the estimate is written back through.

GitLab's only estimate field is the issue weight: a whole number of 0 or more. GitLab keeps
weights on Premium and Ultimate only; elsewhere it ignores the weight sent, which `write_estimate`
notices and says.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from flask_babel import gettext as _

from .base import ConnectorBase, EstimateField, TrackerError, TrackerIssue, call

#: The one field: GitLab's issue weight.
WEIGHT = "weight"
#: The most issues GitLab returns in one page.
PAGE_SIZE = 100
#: Pages one search may read before it stops as a tracker that never ends.
MAX_PAGES = 100
_STATES = ("opened", "closed", "all")
_FILTERS = ("label", "milestone", "state", "search")
_SEGMENT = r"[A-Za-z0-9_.][A-Za-z0-9_.-]*"
_PROJECT_PATH = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})+")
_PROJECT_ID = re.compile(r"[0-9]{1,18}")
_REF = re.compile(r"([0-9]{1,18}):([0-9]{1,18})")
_WHOLE = re.compile(r"[0-9]{1,9}")


class GitLabConnector(ConnectorBase):
    """GitLab's REST API v4, signed in with an access token."""

    kind: ClassVar[str] = "gitlab"

    # Built as every connector is (base.ConnectorBase): GitLab's estimate is always the weight, which
    # `search` reports whatever field is picked.

    def check(self) -> str:
        """The account's name and username, as GitLab shows them: `Jane Doe (@jdoe)`."""
        what = _("reading who the credentials belong to")
        user = self._call("GET", "/api/v4/user", what)
        if not isinstance(user, dict):
            raise _nonsense(what)
        name = user.get("name") if isinstance(user.get("name"), str) else ""
        username = user.get("username") if isinstance(user.get("username"), str) else ""
        if name and username:
            return f"{name} (@{username})"
        if name or username:
            return name or f"@{username}"
        raise _nonsense(what)

    def fields(self) -> list[EstimateField]:
        """The issue weight: the one field of a GitLab issue that holds an estimate."""
        return [EstimateField(WEIGHT, _("Weight"))]

    def search(self, query: str, limit: int) -> list[TrackerIssue]:
        """The project's issues the filters select, at most `limit`, in GitLab's order."""
        project, params = self.parse(query)
        if limit <= 0:
            return []
        what = _("reading the issues of %(project)s", project=project)
        per_page = min(PAGE_SIZE, limit)
        issues: list[TrackerIssue] = []
        seen: set[str] = set()
        for page in range(1, MAX_PAGES + 1):
            answer = self._call(
                "GET",
                f"/api/v4/projects/{quote(project, safe='')}/issues",
                what,
                params={**params, "per_page": per_page, "page": page},
            )
            if not isinstance(answer, list):
                raise _nonsense(what)
            for raw in answer[: limit - len(issues)]:
                issue = _issue(raw, what)
                if issue.ref in seen:
                    raise _endless(what)
                seen.add(issue.ref)
                issues.append(issue)
            if len(answer) < per_page or len(issues) >= limit:
                return issues
        raise _endless(what)

    def write_estimate(self, ref: str, field: str, value: str) -> None:
        """Set the weight of issue `ref` to the final estimate; nothing else is sent."""
        if field != WEIGHT:
            raise TrackerError(
                _("GitLab takes the estimate as the issue weight only, not as %(field)s.", field=field)
            )
        text = value.strip()
        if not _WHOLE.fullmatch(text):
            raise TrackerError(
                _(
                    "GitLab's issue weight takes whole numbers of 0 or more, and the final estimate "
                    "%(value)s is not one.",
                    value=value,
                )
            )
        issue = _REF.fullmatch(ref)
        if not issue:
            raise TrackerError(_("%(ref)s is not a GitLab issue.", ref=ref))
        weight = int(text)
        what = _("writing the estimate")
        answer = self._call(
            "PUT", f"/api/v4/projects/{issue.group(1)}/issues/{issue.group(2)}", what, json={WEIGHT: weight}
        )
        if isinstance(answer, dict) and answer.get(WEIGHT) != weight:
            raise TrackerError(
                _(
                    "GitLab did not keep the weight %(weight)s: issue weights need GitLab Premium or "
                    "Ultimate.",
                    weight=weight,
                )
            )

    def parse(self, query: str) -> tuple[str, dict[str, str]]:
        """The project (path or id) and the query parameters of GitLab's issue list; TrackerError
        saying what is wrong with a query that does not read."""
        try:
            words = shlex.split(query)
        except ValueError as error:
            raise TrackerError(_("The query has a quotation mark that is not closed.")) from error
        if not words:
            raise TrackerError(_("Start the query with the project's path, like group/project."))
        project = self._project(words[0])
        labels: list[str] = []
        params: dict[str, str] = {"state": "opened"}
        for word in words[1:]:
            name, colon, value = word.partition(":")
            if not colon or name not in _FILTERS or not value.strip():
                raise TrackerError(
                    _(
                        "The query does not know %(word)s: after the project come label:, milestone:, "
                        "state: or search:, each followed by a value.",
                        word=word,
                    )
                )
            if name == "label":
                if "," in value:
                    raise TrackerError(_("A GitLab label has no comma: %(label)s.", label=value))
                labels.append(value)
            elif name == "state" and value not in _STATES:
                raise TrackerError(_("state: is opened, closed or all, not %(state)s.", state=value))
            else:
                params[name] = value
        if labels:
            params["labels"] = ",".join(labels)
        return project, params

    def _project(self, word: str) -> str:
        """The project's path or id from the query's first word (a web address is read as its path)."""
        path = word
        if word.startswith(("https://", "http://")):
            path = urlsplit(word).path
            prefix = urlsplit(self.base_url).path.rstrip("/")
            if prefix and path.startswith(prefix + "/"):
                path = path[len(prefix) :]
            path = path.split("/-/")[0]
        path = path.strip("/")
        if path.endswith(".git"):
            path = path[: -len(".git")]
        if _PROJECT_PATH.fullmatch(path) or _PROJECT_ID.fullmatch(path):
            return path
        raise TrackerError(
            _("Start the query with the project's path, like group/project, not %(word)s.", word=word)
        )

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        """One request to GitLab's API with the access token."""
        if not self.token:
            raise TrackerError(_("The GitLab connection needs an access token."))
        headers = {"PRIVATE-TOKEN": self.token, "Accept": "application/json"}
        return call(
            self.client, method, self.base_url + path, what, headers=headers, explain=_explain, **kwargs
        )


def _issue(raw: Any, what: str) -> TrackerIssue:
    """One issue of GitLab's issue list."""
    if not isinstance(raw, dict):
        raise _nonsense(what)
    iid, project_id = raw.get("iid"), raw.get("project_id")
    if not _is_int(iid) or not _is_int(project_id):
        raise _nonsense(what)
    title, description, weight = raw.get("title"), raw.get("description"), raw.get(WEIGHT)
    return TrackerIssue(
        key=f"#{iid}",
        title=title.strip() if isinstance(title, str) else "",
        details=description.replace("\r\n", "\n").strip() if isinstance(description, str) else "",
        estimate=str(weight) if _is_int(weight) else None,
        ref=f"{project_id}:{iid}",
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _explain(answer: Any) -> str | None:
    """GitLab's reason for a refusal: `message` (a text, or a field's list of complaints) or `error`."""
    if not isinstance(answer, dict):
        return None
    message = answer.get("message", answer.get("error"))
    if isinstance(message, str):
        return message
    if isinstance(message, dict):
        return " ".join(
            f"{name} {' '.join(str(m) for m in complaints) if isinstance(complaints, list) else complaints}"
            for name, complaints in message.items()
        )
    return None


def _nonsense(what: str) -> TrackerError:
    return TrackerError(_("GitLab's answer was not what GitLab sends while %(what)s.", what=what))


def _endless(what: str) -> TrackerError:
    return TrackerError(
        _("GitLab kept sending pages that never end while %(what)s; nothing was imported.", what=what)
    )
