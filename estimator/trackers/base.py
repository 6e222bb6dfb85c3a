"""What crosses between Estimator and a tracker, and what every tracker connector offers.

Only keys, titles, descriptions and final estimates ever cross: a connector has no way to send
anything else, because nothing else is in its interface.  A connector talks HTTP through the
`httpx.Client` it is given; the client decides which hosts may be reached, how long a call may
take and how large an answer may be (see `estimator.trackers.http`), so a connector never builds
a client of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import httpx
from flask_babel import gettext as _


@dataclass(frozen=True)
class TrackerIssue:
    """One issue as a tracker lists it."""

    #: What the team calls it and Estimator stores as the issue's key: `PROJ-12`, `#34`.
    key: str
    #: The one-line summary (Estimator's `description`).
    title: str
    #: The longer text, as plain text; "" when there is none.
    details: str
    #: The estimate the tracker holds now, as text ("5", "2.5"), or None.
    estimate: str | None
    #: What `write_estimate` needs to address the issue again (an id, `project:iid`, …).
    ref: str


@dataclass(frozen=True)
class EstimateField:
    """A field of the tracker that can receive the final estimate."""

    id: str
    label: str


class TrackerError(Exception):
    """The tracker refused, failed, timed out or answered nonsense.

    `str(error)` is a message for the facilitator's page: it says what went wrong in words a
    facilitator understands, and never holds a credential.
    """


class Connector(Protocol):
    """A tracker seen through its REST API."""

    #: "jira", "redmine", "gitlab": the value stored on a connection.
    kind: ClassVar[str]

    def __init__(self, client: httpx.Client, base_url: str, secret: dict[str, str]) -> None: ...

    def check(self) -> str:
        """Who the credentials are, as the tracker names them; TrackerError when refused."""
        ...

    def fields(self) -> list[EstimateField]:
        """The fields that can receive the final estimate, the usual one first."""
        ...

    def search(self, query: str, limit: int) -> list[TrackerIssue]:
        """The issues the query selects, at most `limit`, in the tracker's order."""
        ...

    def write_estimate(self, ref: str, field: str, value: str) -> None:
        """Set `field` of the issue `ref` to `value`; TrackerError when the tracker refuses."""
        ...


#: The credentials a connector is given (`secret`), as the connect form collects them: `token`
#: always (an API key, an API token, a personal access token), and `email` when the facilitator
#: gave one (Jira Cloud's e-mail address beside an API token; without it, Jira Data Center's
#: personal access token alone).
SECRET_TOKEN, SECRET_EMAIL = "token", "email"

#: A connector may have an `estimate_field` attribute (a str): before `search`, the app sets it to
#: the field the facilitator chose, so that imported issues' estimates are read from that field.
ESTIMATE_FIELD_ATTRIBUTE = "estimate_field"


class ConnectorBase:
    """What every connector keeps of its tracker: the guarded client it was given, the tracker's
    address (without a trailing slash, so that paths join to it), the credentials as typed, and
    the field imported estimates are read from (None: the connector's usual one)."""

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        secret: dict[str, str],
        estimate_field: str | None = None,
    ) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.email = (secret.get(SECRET_EMAIL) or "").strip()
        self.token = (secret.get(SECRET_TOKEN) or "").strip()
        self.estimate_field = estimate_field


#: The longest reason from a tracker's own error answer that a message quotes.
REASON_MAX = 300


def call(
    client: httpx.Client,
    method: str,
    url: str,
    what: str,
    *,
    explain: Callable[[Any], str | None] | None = None,
    **kwargs: Any,
) -> Any:
    """Send one request and return its JSON answer (None for an empty one).

    Every failure becomes a TrackerError naming `what` was being done ("reading the issues"):
    a refusal (401/403: the credentials; 404: the address or the query), any other status, a
    timeout, an unreachable or forbidden host, or an answer that is not JSON.

    `explain` reads the tracker's own JSON error answer (other than 401/403) and returns its
    reason, or None: a tracker that says why it refused ("Field 'customfield_10016' cannot be
    set. It is not on the appropriate screen") tells the facilitator what to change, where a
    bare "400" does not.
    """
    try:
        response = client.request(method, url, **kwargs)
    except httpx.TimeoutException as error:
        raise TrackerError(_("The tracker did not answer in time while %(what)s.", what=what)) from error
    except httpx.HTTPError as error:
        raise TrackerError(
            _("The tracker could not be reached while %(what)s: %(error)s", what=what, error=error)
        ) from error
    if response.status_code in (401, 403):
        raise TrackerError(
            _(
                "The tracker refused the credentials while %(what)s (%(status)s).",
                what=what,
                status=response.status_code,
            )
        )
    reason = _reason(response, explain) if not response.is_success else None
    if reason:
        raise TrackerError(
            _(
                "The tracker answered %(status)s while %(what)s: %(reason)s",
                what=what,
                status=response.status_code,
                reason=reason,
            )
        )
    if response.status_code == 404:
        raise TrackerError(_("The tracker found nothing at that address while %(what)s (404).", what=what))
    if not response.is_success:
        raise TrackerError(
            _("The tracker answered %(status)s while %(what)s.", what=what, status=response.status_code)
        )
    if not response.content.strip():
        return None
    try:
        return response.json()
    except (ValueError, RecursionError) as error:  # JSON nested deeper than Python recurses
        raise TrackerError(_("The tracker's answer was not JSON while %(what)s.", what=what)) from error


def _reason(response: httpx.Response, explain: Callable[[Any], str | None] | None) -> str | None:
    """The reason a tracker gave in its JSON error answer, shortened; None when it gave none."""
    if explain is None:
        return None
    try:
        reason = explain(response.json())
    except (ValueError, RecursionError):
        return None
    if not reason:
        return None
    reason = " ".join(reason.split())
    return reason if len(reason) <= REASON_MAX else reason[: REASON_MAX - 1] + "…"
