"""Connections to issue trackers: import by query, and the final estimate sent back.

`CONNECTORS` maps a connection's kind to its connector class (base.Connector); a kind is offered
on the connect page once its class is here. `KINDS` says how the pages present each kind: what
the credential is called, whether an e-mail address goes with it, how a query is written. A
connector class may say the last two itself, as `query_help` and `query_example` class attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeAlias

from flask_babel import LazyString
from flask_babel import lazy_gettext as _l

from .base import Connector
from .gitlab import GitLabConnector
from .jira import JiraConnector
from .redmine import Redmine

CONNECTORS: dict[str, type[Connector]] = {
    Redmine.kind: Redmine,
    JiraConnector.kind: JiraConnector,
    GitLabConnector.kind: GitLabConnector,
}

Text: TypeAlias = str | LazyString


@dataclass(frozen=True)
class Kind:
    """How the pages present one kind of tracker."""

    name: str
    title: str
    #: What the tracker calls the credential that goes into the `token` field.
    token_label: Text
    #: Where the facilitator finds or makes it.
    token_help: Text
    #: Whether the form offers the `email` field (Jira Cloud); it is optional then.
    email: bool
    url_example: str
    #: How a query is written, and an example.
    query_help: Text
    query_example: str


KINDS: dict[str, Kind] = {
    "redmine": Kind(
        name="redmine",
        title="Redmine",
        token_label=_l("API key"),
        token_help=_l(
            "On your Redmine account page, “API access key” (an administrator enables the REST API)."
        ),
        email=False,
        url_example="https://redmine.example.com",
        query_help=_l(
            "A project's identifier, as in its address, and optionally the number of one of its saved "
            "queries; without one, the project's open issues."
        ),
        query_example="webshop 12",
    ),
    "jira": Kind(
        name="jira",
        title="Jira",
        token_label=_l("API token or personal access token"),
        token_help=_l(
            "Jira Cloud: your e-mail address and an API token from your Atlassian account's security "
            "settings. Jira Data Center: a personal access token from your profile, and no e-mail address."
        ),
        email=True,
        url_example="https://yourteam.atlassian.net",
        query_help=_l("A JQL query, as in Jira's issue search."),
        query_example="project = WEB AND sprint in openSprints() ORDER BY Rank",
    ),
    "gitlab": Kind(
        name="gitlab",
        title="GitLab",
        token_label=_l("Access token (scope api)"),
        token_help=_l(
            "A personal, project or group access token with the api scope, from GitLab's "
            "“Access tokens” page."
        ),
        email=False,
        url_example="https://gitlab.example.com",
        query_help=_l("A project's path, optionally with labels and a milestone."),
        query_example='group/webshop label:Backend milestone:"Sprint 4"',
    ),
}


def kind_of(name: str) -> Kind:
    """How the pages present a kind, with what its connector says of its own queries."""
    kind = KINDS.get(name) or Kind(name, name.title(), _l("Token"), "", False, "", "", "")
    connector = CONNECTORS.get(name)
    if connector is not None:
        kind = replace(
            kind,
            query_help=getattr(connector, "query_help", kind.query_help),
            query_example=getattr(connector, "query_example", kind.query_example),
        )
    return kind


def available() -> list[Kind]:
    """The kinds this installation can connect to, in the order the form offers them."""
    return [kind_of(name) for name in CONNECTORS]
