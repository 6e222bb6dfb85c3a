"""A live page's regions: rendered once per version and variant, pushed to every open screen.

A live page (the room, an issue's status page, the group page) marks the parts that change as
regions: elements with an id and `data-live`, whose content is a block of the same name in the
page's template. When the group changes, each process renders a view's regions once for each
variant that truly differs (the viewer's role and language, the backlog page) as stencils
(stencils.py): what belongs to the viewer (their CSRF token, their "(you)") is a hole, filled for
each screen with its own values. Every screen of the group then gets the regions that changed in
its event stream: a vote in a room of ten costs one render per process, not ten page loads.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from flask import current_app
from flask_babel import get_locale
from jinja2 import Environment, nodes
from markupsafe import Markup

from ..database import INTENT, READ
from ..extensions import db
from ..models import Role, takes_part
from .cache import VersionCache
from .reuse import Loads, reusing
from .seen import Seen
from .shelf import Shelf
from .stencils import Filler, Holes, Stencil

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Seat:
    """What a live page shows depends on its viewer's role only: a membership without the person."""

    role: str
    votes: bool

    @property
    def is_owner(self) -> bool:
        """Whether the viewer facilitates the group."""
        return self.role == Role.OWNER

    @classmethod
    def of(cls, role: str, facilitator_votes: bool) -> Seat:
        """The seat of a viewer with this role, in a group with this setting."""
        return cls(role, takes_part(Role(role), facilitator_votes))


#: Builds a view's template context for its group (and argument) as a viewer with this role sees
#: it (their seat, Seat.of), or None when what it shows is gone (an issue deleted since).
Build = Callable[[int, int | None, str], dict[str, Any] | None]


@dataclass(frozen=True)
class View:
    """A kind of live page: its template, its regions (block names and element ids), its build."""

    name: str
    template: str
    regions: tuple[str, ...]
    build: Build


VIEWS: dict[str, View] = {}


def live_view(name: str, template: str, regions: tuple[str, ...]) -> Callable[[Build], Build]:
    """Register a view's build under its name (used by the blueprints that serve its page). The
    context it builds has the group as `group` and the viewer's seat as `membership`: the only
    thing in it that depends on the role (other roles' variants are rendered from the same load)."""

    def register(build: Build) -> Build:
        VIEWS[name] = View(name, template, regions, build)
        return build

    return register


class Asked(NamedTuple):
    """Which view of a group a page shows: the view and its argument (an issue id, a backlog page)."""

    view: View
    arg: int | None

    @property
    def name(self) -> str:
        """How the page names it in its URLs: `room`, `group`, `group-2`, `issue-17`."""
        return self.view.name if self.arg is None else f"{self.view.name}-{self.arg}"


_ASKED = re.compile(r"([a-z]+)(?:-([1-9][0-9]{0,9}))?")


def parse_view(text: str) -> Asked | None:
    """The view a page names, or None for anything that is not one."""
    match = _ASKED.fullmatch(text)
    if match is None or match.group(1) not in VIEWS:
        return None
    arg = int(match.group(2)) if match.group(2) else None
    if arg is not None and arg > 2**31 - 1:
        return None
    return Asked(VIEWS[match.group(1)], arg)


@dataclass(frozen=True)
class Built:
    """A view's regions at one version for one variant, as stencils, and the page's title."""

    version: int
    title: Stencil
    regions: dict[str, Stencil]

    @property
    def size(self) -> int:
        """About how many bytes of memory it takes."""
        return self.title.size + sum(stencil.size for stencil in self.regions.values())


_ROLES_LOCK = threading.Lock()
#: How long a worker waits for a variant another worker of the machine is rendering, in seconds.
SHELF_WAIT = 0.5

Variants = dict[str, Built]  # role → its variant
#: The roles a variant may be rendered for (marks on the shelf name them).
ROLES = frozenset(role.value for role in Role)


def built(asked: Asked, seen: Seen, settled: int | None = None) -> Built:
    """The view's regions as `seen` (a member's role at a version), rendered once per process for
    everybody who sees the same; raises LookupError when what the view shows is gone. `settled`:
    the group's settled version at `seen.version`, when known (reuse.py).

    The group is loaded once per version for every role this process has shown it to, and each
    role's variant rendered from that load: the facilitator's and the members' screens of a room
    cost one load, not two."""
    language = str(get_locale())
    key = (asked.name, seen.group_id, seen.created_at, seen.version, seen.fingerprint, language)
    # The roles whose variant of a group's views this process has rendered, by group: the next
    # version is rendered for each of them from one load of the group.
    shown: dict[int, set[str]] = current_app.extensions["live_roles"]
    with _ROLES_LOCK:
        roles = shown.setdefault(seen.group_id, set())
        roles.add(seen.role)
        wanted = frozenset(roles)
    cache: VersionCache[Variants] = current_app.extensions["live_regions"]

    def build() -> Variants:
        return rendered(asked, seen, wanted, key, settled)

    def size(variants: Variants) -> int:
        return sum(variant.size for variant in variants.values())

    subject = (seen.group_id, seen.created_at)
    variants = cache.get_or_build(key, build, subject=subject, version=seen.version, size=size)
    if seen.role not in variants:  # a role first seen after this version was rendered
        variants = {**variants, **rendered(asked, seen, frozenset({seen.role}), key, settled)}
        cache.put(key, variants, size(variants), subject=subject, version=seen.version)
    return variants[seen.role]


def rendered(
    asked: Asked, seen: Seen, roles: frozenset[str], key: Hashable, settled: int | None = None
) -> Variants:
    """These roles' variants: read from the shelf when another worker of this machine left them
    there; else rendered here from one load of the group, for these roles and every other role a
    worker of the machine shows the group's views to, and left there for the others (shelf.py).
    One load per version for the machine, whichever worker wakes first and whoever it serves."""
    shelf: Shelf | None = current_app.extensions.get("live_shelf")
    if shelf is None:
        return render(asked, seen, roles, settled)
    name = hashlib.sha256(repr(key).encode()).hexdigest()[:32]
    for role in roles:
        shelf.mark(seen.group_id, f"role-{role}")
    found = shelved(shelf, seen, name)
    if found is None and shelf.claim(seen.group_id, seen.version, name):
        everybody = {mark.removeprefix("role-") for mark in shelf.marks(seen.group_id)} & ROLES
        found = render(asked, seen, roles | everybody, settled)
        shelf.put(seen.group_id, seen.version, name, encoded(found))
        return found
    if found is None:  # another worker claimed it: wait for it, and render only if it does not come
        found = shelved(shelf, seen, name, SHELF_WAIT) or {}
    if late := roles - found.keys():  # a role that worker did not know of yet (or a damaged file)
        found = found | render(asked, seen, frozenset(late), settled)
        shelf.put(seen.group_id, seen.version, name, encoded(found))
    return found


def shelved(shelf: Shelf, seen: Seen, name: str, seconds: float = 0.0) -> Variants | None:
    """The variants on the shelf under name at the version seen (waiting up to `seconds` for them)."""
    data = shelf.wait(seen.group_id, seen.version, name, seconds)
    variants = decoded(data) if data is not None else None
    if variants is None or any(variant.version != seen.version for variant in variants.values()):
        return None
    return variants


def encoded(variants: Variants) -> bytes:
    """Variants as the shelf keeps them: JSON by role, their holes' arguments marked when they are
    markup."""

    def stencil(each: Stencil) -> list[Any]:
        holes = [
            [name, [{"html": str(arg)} if isinstance(arg, Markup) else arg for arg in args]]
            for name, args in each.holes
        ]
        return [list(each.pieces), holes, each.digest]

    return orjson.dumps(
        {
            role: {
                "version": variant.version,
                "title": stencil(variant.title),
                "regions": {name: stencil(each) for name, each in variant.regions.items()},
            }
            for role, variant in variants.items()
        }
    )


def decoded(data: bytes) -> Variants | None:
    """The variants `encoded` wrote, or None for anything else."""

    def stencil(item: list[Any]) -> Stencil:
        pieces, holes, digest = item
        return Stencil(
            tuple(str(piece) for piece in pieces),
            tuple(
                (str(name), tuple(Markup(arg["html"]) if isinstance(arg, dict) else arg for arg in args))
                for name, args in holes
            ),
            str(digest),
        )

    try:
        return {
            str(role): Built(
                int(found["version"]),
                stencil(found["title"]),
                {str(name): stencil(item) for name, item in found["regions"].items()},
            )
            for role, found in orjson.loads(data).items()
            if role in ROLES
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def render(asked: Asked, seen: Seen, roles: frozenset[str], settled: int | None = None) -> Variants:
    """Load what the view shows once, and render its title and regions for each of these roles,
    with holes for the viewer. With the group's `settled` version, what an earlier build of the
    same settled version loaded is reused, its ballots read again (reuse.py); should that fail
    (something the build asks for was not loaded), the build is done again from a fresh load."""
    loads: Loads = current_app.extensions["live_loads"]
    reading = INTENT.set(READ)  # a build only reads: on PostgreSQL, without BEGIN and ROLLBACK
    scope = None
    try:
        with reusing(loads, (seen.group_id, seen.created_at, asked.name), settled) as scope:
            return render_loaded(asked, seen, roles)
    except sa.exc.SQLAlchemyError as error:
        if scope is None or not scope.held:
            raise
        log.warning("Live updates: a kept load of group %s did not serve: %s", seen.group_id, error)
        db.session.close()
        return render_loaded(asked, seen, roles)
    finally:
        db.session.close()  # a stream holds no database connection while it waits
        INTENT.reset(reading)


def render_loaded(asked: Asked, seen: Seen, roles: frozenset[str]) -> Variants:
    """The view's variants for these roles, from one build of its context."""
    context = asked.view.build(seen.group_id, asked.arg, seen.role)
    if context is None:
        raise LookupError(asked.name)
    current_app.update_template_context(context)  # the context processors, once
    context |= imported(current_app.jinja_env, asked.view.template)
    variants: Variants = {}
    free = seat_free(current_app.jinja_env, asked.view.template)
    shared: dict[str, Stencil] = {}  # what no seat changes, as the first role's variant has it
    for role in roles:
        seat = Seat.of(role, context["group"].facilitator_votes)
        variants[role] = render_variant(asked.view, seen.version, context | {SEAT: seat}, shared)
        shared = shared or {n: it for n, it in variants[role].regions.items() if block_of(n) in free}
    return variants


def render_variant(
    view: View, version: int, context: dict[str, Any], rendered_already: Mapping[str, Stencil]
) -> Built:
    """The view's title and regions in this context, cut at their holes: each a block of the
    view's template, all rendered in one template context (a block's own variables stay its own);
    a region in `rendered_already` (the same for every seat) is taken as it is."""
    environment = current_app.jinja_env
    template = environment.get_template(view.template)
    blocks = template.new_context(context)

    def block(name: str) -> str:
        try:
            return environment.concat(template.blocks[block_of(name)](blocks))
        except Exception:
            environment.handle_exception()

    with Holes() as holes:
        title = holes.cut(block("title"))
        regions = {name: rendered_already.get(name) or holes.cut(block(name)) for name in view.regions}
    return Built(version, title, regions)


def block_of(region: str) -> str:
    """The template block a region is rendered from: `room-heading` from `room_heading`."""
    return region.replace("-", "_")


#: The name of the viewer's seat in a view's context: the one thing in it that differs by role.
SEAT = "membership"


@functools.lru_cache(maxsize=64)
def seat_free(environment: Environment, template: str) -> frozenset[str]:
    """The blocks of a template whose text cannot depend on the viewer's seat, so that one
    rendering serves every role: they name no `membership`, and nothing that could see it without
    naming it — no include, no `self` or `super`, no macro of the template itself or imported with
    its context (a macro imported without context sees only its arguments)."""
    source = environment.loader.get_source(environment, template)[0]  # type: ignore[union-attr]
    tree = environment.parse(source)
    seeing = {SEAT, "self", "super"} | {macro.name for macro in tree.find_all(nodes.Macro)}
    for whole in tree.find_all(nodes.Import):
        if whole.with_context:
            seeing.add(whole.target)
    for some in tree.find_all(nodes.FromImport):
        if some.with_context:
            seeing.update(item[1] if isinstance(item, tuple) else item for item in some.names)
    free = set()
    for found in tree.find_all(nodes.Block):
        names = {name.name for name in found.find_all(nodes.Name)}
        if not names & seeing and not any(True for _include in found.find_all(nodes.Include)):
            free.add(found.name)
    return frozenset(free)


@functools.lru_cache(maxsize=64)
def imported(environment: Environment, template: str) -> dict[str, Any]:
    """The macros a template imports (`{% from … import … %}`), by the names it gives them."""
    source = environment.loader.get_source(environment, template)[0]  # type: ignore[union-attr]
    found: dict[str, Any] = {}
    for node in environment.parse(source).find_all(nodes.FromImport):
        module = environment.get_template(node.template.as_const()).module
        for item in node.names:
            name, alias = item if isinstance(item, tuple) else (item, item)
            found[alias] = getattr(module, name)
    return found


def payload(built_: Built, filler: Filler, shown: dict[str, str]) -> dict[str, Any]:
    """What a screen gets of a build: its version, title and the regions that differ from what it
    shows (`shown`: region → digest, updated here)."""
    regions = {}
    for name, stencil in built_.regions.items():
        if shown.get(name) != stencil.digest:
            regions[name] = filler.fill(stencil)
            shown[name] = stencil.digest
    return {"version": built_.version, "title": filler.fill(built_.title), "regions": regions}


def sse(event: str, version: int, data: dict[str, Any]) -> bytes:
    """One server-sent event (its data as compact JSON in UTF-8)."""
    return b"".join((f"id: {version}\nevent: {event}\ndata: ".encode(), orjson.dumps(data), b"\n\n"))
