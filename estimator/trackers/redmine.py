"""Redmine through its REST API (Redmine 4 and 5): an API key, issues by project and saved query.

The query is the project's identifier, optionally followed by a saved query's id: `webshop`, or
`webshop 12` (also `webshop/12`, `webshop?query_id=12`). Without a saved query the open issues
are read, as Redmine's own issue list shows them. An issue's key is `#<id>`, as Redmine writes it.
The estimate goes to the issue's estimated hours or to a numeric custom field (Story points…).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import httpx
from flask_babel import gettext as _

from .base import ConnectorBase, EstimateField, TrackerError, TrackerIssue, call

ESTIMATED_HOURS = "estimated_hours"
#: How many issues one request reads (Redmine's largest page).
PAGE = 100
QUERY = re.compile(r"\s*([a-z0-9][a-z0-9_-]{0,99})\s*(?:(?:[\s/]+|\?query_id=)(\d{1,9}))?\s*")


def number_text(value: Any) -> str | None:
    """An estimate as text, without a needless `.0` ("5.0" → "5"); None for no number."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def nonsense(what: str) -> TrackerError:
    """The error for an answer that is JSON but not what Redmine sends."""
    return TrackerError(_("The tracker's answer was not what Redmine sends while %(what)s.", what=what))


def estimate_field(field: dict[str, Any]) -> EstimateField:
    """A custom field as a field that can receive the estimate."""
    return EstimateField(f"cf_{int(field['id'])}", str(field.get("name") or field["id"]))


class Redmine(ConnectorBase):
    """A Redmine server, seen with one user's API key."""

    kind: ClassVar[str] = "redmine"

    def __init__(
        self, client: httpx.Client, base_url: str, secret: dict[str, str], estimate_field: str | None = None
    ) -> None:
        super().__init__(client, base_url, secret, estimate_field or ESTIMATED_HOURS)
        self.headers = {"X-Redmine-API-Key": self.token, "Accept": "application/json"}

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        answer = call(self.client, method, self.base_url + path, what, headers=self.headers, **kwargs)
        if answer is not None and not isinstance(answer, dict):
            raise nonsense(what)
        return answer

    def check(self) -> str:
        """The API key's user, as Redmine names them."""
        answer = self._call("GET", "/users/current.json", _("checking the credentials"))
        user = (answer or {}).get("user")
        if not isinstance(user, dict) or "id" not in user:
            raise nonsense(
                _("checking the credentials"),
            )
        name = " ".join(str(user.get(part) or "") for part in ("firstname", "lastname")).strip()
        login = str(user.get("login") or "")
        return f"{name} ({login})" if name and login else name or login or f"#{user['id']}"

    def fields(self) -> list[EstimateField]:
        """Estimated hours, then every numeric custom field of issues.

        The list of custom fields is for administrators only: for anyone else the fields are read
        from the custom fields that the project's issues carry.
        """
        found = [EstimateField(ESTIMATED_HOURS, _("Estimated time (hours)"))]
        try:
            answer = self._call("GET", "/custom_fields.json", _("reading the fields"))
        except TrackerError:
            answer = None
        if answer is not None:
            for field in answer.get("custom_fields") or []:
                if (
                    isinstance(field, dict)
                    and field.get("customized_type") == "issue"
                    and field.get("field_format") in ("int", "float")
                    and not field.get("multiple")
                ):
                    found.append(estimate_field(field))
            return found
        answer = self._call(
            "GET", "/issues.json", _("reading the fields"), params={"limit": PAGE, "status_id": "*"}
        )
        seen: set[int] = set()
        for issue in (answer or {}).get("issues") or []:
            for field in issue.get("custom_fields") or [] if isinstance(issue, dict) else []:
                value = field.get("value") if isinstance(field, dict) else None
                if isinstance(field, dict) and field.get("id") not in seen and not isinstance(value, list):
                    if value in (None, "") or number_text(value) is not None:
                        seen.add(int(field["id"]))
                        found.append(estimate_field(field))
        return found

    def search(self, query: str, limit: int) -> list[TrackerIssue]:
        """The issues of a project (open ones, or those a saved query selects), in Redmine's order."""
        match = QUERY.fullmatch(query)
        if match is None:
            raise TrackerError(
                _(
                    "A Redmine query is a project's identifier (lower-case letters, digits, - and _), "
                    "optionally followed by a saved query's number: “webshop” or “webshop 12”."
                )
            )
        project, saved = match.groups()
        params: dict[str, str | int] = {"project_id": project, "limit": PAGE}
        if saved:
            params["query_id"] = int(saved)
        else:
            params["status_id"] = "open"
        issues: list[TrackerIssue] = []
        offset = 0
        while len(issues) < limit:
            answer = self._call(
                "GET", "/issues.json", _("reading the issues"), params=params | {"offset": offset}
            )
            page = (answer or {}).get("issues")
            if not isinstance(page, list):
                raise nonsense(
                    _("reading the issues"),
                )
            issues.extend(self._issue(entry) for entry in page[: limit - len(issues)])
            offset += len(page)
            total = answer.get("total_count")
            if not page or not isinstance(total, int) or offset >= total:
                break
        return issues

    def _issue(self, entry: Any) -> TrackerIssue:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            raise nonsense(
                _("reading the issues"),
            )
        return TrackerIssue(
            key=f"#{entry['id']}",
            title=str(entry.get("subject") or ""),
            details=str(entry.get("description") or ""),
            estimate=self._estimate(entry),
            ref=str(entry["id"]),
        )

    def _estimate(self, entry: dict[str, Any]) -> str | None:
        """The issue's estimate in the chosen field (custom fields' values come as text)."""
        if self.estimate_field == ESTIMATED_HOURS:
            return number_text(entry.get("estimated_hours"))
        for field in entry.get("custom_fields") or []:
            if isinstance(field, dict) and f"cf_{field.get('id')}" == self.estimate_field:
                value = field.get("value")
                return None if isinstance(value, list) else number_text(value)
        return None

    def write_estimate(self, ref: str, field: str, value: str) -> None:
        """Set the issue's estimated hours or one of its custom fields."""
        if not ref.isdigit():
            raise TrackerError(_("This issue did not come from Redmine."))
        if field == ESTIMATED_HOURS:
            body: dict[str, Any] = {"estimated_hours": value}
        elif field.startswith("cf_") and field[3:].isdigit():
            body = {"custom_fields": [{"id": int(field[3:]), "value": value}]}
        else:
            raise TrackerError(_("Choose the Redmine field that receives the estimate again."))
        self._call("PUT", f"/issues/{ref}.json", _("writing the estimate"), json={"issue": body})
