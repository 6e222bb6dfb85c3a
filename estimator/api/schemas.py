"""The JSON shapes of SPEC.md as pydantic models, from which the OpenAPI document is generated.

One model per object of the contract, so a field the contract gains (`result.median`, the group's
`current_issue`, `settings` and `total`, the issue's `timer_ends_at`) is one line in one model.
The models forbid unknown fields: the document then says exactly what is sent, and the OpenAPI
tests fail when `issue_state` or `group_state` send a field that is not described here.

The views do not pass their JSON through these models (a field added to the state functions
must never vanish from the API or turn it into an error); the tests prove that what they send
matches the document instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt
from pydantic.json_schema import SkipJsonSchema

from ..estimates import DECK_NAMES
from ..models import IssueState, Role

Nickname = Annotated[str, Field(min_length=1, max_length=32)]
IssueKey = Annotated[str, Field(min_length=1, max_length=32)]
Description = Annotated[str, Field(max_length=500)]
Details = Annotated[
    str,
    Field(
        max_length=20_000,
        description="The tracker's long description, as plain text (never HTML), or an empty string.",
    ),
]
Card = Annotated[str, Field(description="A card of the group's deck, or `?`.")]
DeckName = Annotated[str, Field(json_schema_extra={"enum": list(DECK_NAMES)})]


class Shape(BaseModel):
    """A JSON object of the contract: exactly these fields, no others."""

    model_config = ConfigDict(extra="forbid")


class Voter(Shape):
    """Someone expected to vote: whether they have, never what."""

    nickname: Nickname
    voted: bool


class Result(Shape):
    """The anonymous aggregate of a revealed round: counts only, never a voter."""

    votes: NonNegativeInt = Field(description="Every vote, `?` included.")
    unsure: NonNegativeInt = Field(description="Votes for `?`.")
    average: float | None = Field(description="Of the numeric votes, at most 2 decimals.")
    nearest_integer: int | None
    nearest_fibonacci: int | None
    suggestion: Card | None = Field(description="The final estimate the facilitator is offered.")
    low: Card | None
    high: Card | None
    consensus: bool
    distribution: dict[str, PositiveInt] = Field(description="Card → how many voted for it.")
    median: float | Card | None = Field(
        description="The middle numeric vote: a number for numeric decks (midway between the two middle "
        "votes for an even count), the middle card for ordinal decks (t-shirt, own words)."
    )


class HistoryEntry(Shape):
    """An earlier round of the issue, with its result."""

    round: PositiveInt
    result: Result


class IssueStatus(Shape):
    """`GET /api/issues/<id>`: an issue as its members see it."""

    id: PositiveInt
    group_id: PositiveInt
    key: IssueKey
    description: Description
    details: Details
    state: IssueState
    round: PositiveInt
    deck: DeckName
    voters: list[Voter] = Field(description="Members who vote, in joining order; observers are not here.")
    votes_cast: NonNegativeInt
    votes_expected: NonNegativeInt
    result: Result | None = Field(description="The current round's result; null until it is revealed.")
    final_estimate: str | None = Field(description="The estimate the facilitator recorded, or null.")
    history: list[HistoryEntry] = Field(description="Earlier rounds, oldest first.")
    timer_ends_at: datetime | None = Field(
        description="When the facilitator's countdown for the open round ends (ISO 8601, UTC), or null."
    )


class Member(Shape):
    """A member of a group and their role."""

    nickname: Nickname
    role: Role


class GroupIssue(Shape):
    """An issue as the group page lists it."""

    id: PositiveInt
    key: IssueKey
    description: Description
    state: IssueState
    round: PositiveInt
    votes_cast: NonNegativeInt
    votes_expected: NonNegativeInt
    final_estimate: str | None = Field(description="The estimate the facilitator recorded, or null.")


class Settings(Shape):
    """How the group votes; the facilitator changes it with `POST /groups/<id>/settings`."""

    auto_reveal: bool = Field(description="The vote that completes a round reveals it (threshold met).")
    min_votes: Annotated[int, Field(ge=1, le=20)] = Field(
        description="Votes a reveal needs, besides the facilitator's (a `?` counts)."
    )
    facilitator_votes: bool = Field(description="Whether the facilitator is one of the voters.")
    present_only: bool = Field(
        description="Whether 'everybody voted' and auto-reveal wait only for the voters present."
    )


class GroupStatus(Shape):
    """`GET /api/groups/<id>`: a group as its members see it."""

    id: PositiveInt
    name: Annotated[str, Field(min_length=1, max_length=80)]
    deck: DeckName
    owner: Nickname = Field(description="The facilitator's nickname.")
    members: list[Member]
    issues: list[GroupIssue]
    current_issue: PositiveInt | None = Field(description="The issue the room is on, or null.")
    total: float | dict[str, PositiveInt] = Field(
        description="The recorded final estimates added up: a number for numeric decks, how many of "
        "each card for ordinal ones (t-shirt sizes, own words)."
    )
    settings: Settings
    present: list[Nickname] = Field(
        description="Who has a live page of the group open now, whichever server serves them "
        "(someone whose last page closed leaves within 30 seconds). Nothing about cards."
    )


class Regions(Shape):
    """A live page's regions as the member sees them: what the page swaps in (by element id)."""

    version: NonNegativeInt = Field(description="The group's version they show.")
    title: str = Field(description="The page's title at that version, before the site's name.")
    regions: dict[str, str] = Field(description="Element id → its new inner HTML.")


class ErrorBody(Shape):
    """Any error under /api."""

    error: str = Field(description="What went wrong, for a person to read.")


def no_default(schema: dict[str, Any]) -> None:
    """An optional header is simply left out: it has no default value to document."""
    schema.pop("default", None)


#: How a page names the view it shows (see the events stream).
VIEW = r"^(room|group(-[1-9][0-9]{0,8})?|issue-[1-9][0-9]{0,8})$"


class EventsQuery(BaseModel):
    """What a page's stream names: its view, and the version it shows."""

    view: Annotated[str, Field(pattern=VIEW)] | SkipJsonSchema[None] = Field(
        default=None,
        description="The view a page shows: `room`, `group`, `group-<backlog page>` or `issue-<id>`. "
        "With it, each change also brings the view's changed regions.",
        json_schema_extra=no_default,
    )
    since: Annotated[int, Field(ge=0, le=10**18 - 1)] | SkipJsonSchema[None] = Field(
        default=None,
        description="The version the page shows (Last-Event-ID takes its place on reconnections).",
        json_schema_extra=no_default,
    )


class RegionsQuery(BaseModel):
    """Which view's regions."""

    view: str = Field(pattern=VIEW, description="As for the events stream.")


class IfNoneMatch(BaseModel):
    """The request header that makes a poll cheap."""

    if_none_match: str | SkipJsonSchema[None] = Field(
        default=None,
        alias="If-None-Match",
        description="The ETag of the state the client already has: answered with 304 while it is current.",
        json_schema_extra=no_default,
    )


class OpenAPIDocument(BaseModel):
    """An OpenAPI 3 document (this one)."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
