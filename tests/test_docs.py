"""The documentation keeps up with the code: every URL, every JSON field, every setting, the README links."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from flask import Flask

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
API_DOC = DOCS / "api.md"
DEPLOY_DOC = DOCS / "deploy.md"
README = ROOT / "README.md"

#: Files the app serves as they are, not part of the interface.
STATIC_ENDPOINTS = {"static", "bootstrap.static"}
#: Methods every route answers without doing anything of its own.
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}
NOT_YET = "## Not yet available"

# `<id:group_id>`, `<int(min=1):n>` or `<token>`: a converter (optional) and a variable name.
RULE_VARIABLE = re.compile(r"<(?:[A-Za-z_]\w*(?:\([^)]*\))?:)?(?P<name>[A-Za-z_]\w*)>")
# A row of a route table: `| GET, POST | `/login` | …`.
ROUTE_ROW = re.compile(
    r"^\|\s*(?P<methods>[A-Z]+(?:,\s*[A-Z]+)*)\s*\|\s*`(?P<path>/[^`]*)`\s*\|", re.MULTILINE
)


def documented_form(rule: str) -> str:
    """How the docs write a Flask rule: `/groups/<id:group_id>/members/<id:user_id>/role` is
    `/groups/<id>/members/<user_id>/role`.

    A variable that names the thing of the segment before it (`group_id` after `groups`,
    `issue_id` after `issues`) is written `<id>`; any other keeps its name; converters are dropped.
    """

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        previous = match.string[: match.start()].rstrip("/").rsplit("/", 1)[-1]
        return "<id>" if previous.endswith("s") and name == previous[:-1] + "_id" else f"<{name}>"

    return RULE_VARIABLE.sub(replace, rule)


def app_routes(app: Flask) -> dict[str, set[str]]:
    """The app's URL rules in documented form, with the methods each answers."""
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint not in STATIC_ENDPOINTS:
            routes.setdefault(documented_form(rule.rule), set()).update(rule.methods or ())
    return {path: methods - IMPLICIT_METHODS for path, methods in routes.items()}


def documented_routes() -> dict[str, set[str]]:
    """The route tables of docs/api.md (everything before "Not yet available")."""
    available = API_DOC.read_text(encoding="utf-8").split(NOT_YET)[0]
    routes: dict[str, set[str]] = {}
    for row in ROUTE_ROW.finditer(available):
        methods = {method.strip() for method in row["methods"].split(",")}
        routes.setdefault(row["path"], set()).update(methods)
    return routes


def test_the_documented_form_of_rules():
    assert documented_form("/groups/<id:group_id>/issues") == "/groups/<id>/issues"
    assert documented_form("/issues/<id:issue_id>") == "/issues/<id>"
    assert (
        documented_form("/groups/<id:group_id>/members/<id:user_id>/role")
        == "/groups/<id>/members/<user_id>/role"
    )
    assert documented_form("/join/<token>") == "/join/<token>"
    assert documented_form("/api/groups/<int(min=1):group_id>/events") == "/api/groups/<id>/events"


def test_every_route_of_the_app_is_documented_with_its_methods(app):
    documented = documented_routes()
    missing = sorted(path for path in app_routes(app) if path not in documented)
    assert not missing, f"routes missing from the route table of docs/api.md: {missing}"
    wrong = {
        path: (sorted(methods), sorted(documented[path]))
        for path, methods in app_routes(app).items()
        if documented[path] != methods
    }
    assert not wrong, f"methods (app, docs/api.md) differ: {wrong}"


def test_the_docs_describe_no_route_the_app_lacks(app):
    invented = sorted(set(documented_routes()) - set(app_routes(app)))
    assert not invented, f"docs/api.md documents routes the app does not have: {invented}"


def test_what_is_listed_as_not_yet_available_is_really_not_there(app):
    text = API_DOC.read_text(encoding="utf-8")
    if NOT_YET not in text:
        return  # everything planned has arrived, and the section is gone with it
    _, _, later = text.partition(NOT_YET)
    items = [line for line in later.splitlines() if line.startswith("- ")]
    listed = {path for item in items for path in re.findall(r"`(?:[A-Z]+ )?(/[^`\s]*)`", item)}
    assert listed, "docs/api.md has no list of what is not yet available"
    arrived = sorted(listed & set(app_routes(app)))
    assert not arrived, f"document these in docs/api.md and drop them from '{NOT_YET}': {arrived}"


def schema_properties(node: object) -> Iterator[str]:
    """Every property name declared anywhere in a JSON Schema (or OpenAPI) fragment."""
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            yield from properties
        for value in node.values():
            yield from schema_properties(value)
    elif isinstance(node, list):
        for value in node:
            yield from schema_properties(value)


def test_every_property_of_the_openapi_schemas_is_documented(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200  # public: it describes the API and holds no data
    schemas = response.json["components"]["schemas"]
    names = set(schema_properties(schemas))
    assert names, "the OpenAPI document declares no properties"
    doc = API_DOC.read_text(encoding="utf-8")
    undocumented = sorted(name for name in names if f'"{name}"' not in doc and f"`{name}`" not in doc)
    assert not undocumented, f"JSON properties missing from docs/api.md: {undocumented}"


def test_every_environment_variable_is_documented():
    config = (ROOT / "config.py").read_text(encoding="utf-8")
    variables = set(re.findall(r"""(?:environ\.get|env_flag)\(\s*["'](\w+)["']""", config))
    assert variables, "config.py reads no environment variable any more?"
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    undocumented = sorted(name for name in variables if f"`{name}`" not in doc)
    assert not undocumented, f"environment variables missing from docs/deploy.md: {undocumented}"


def test_readme_links_every_doc_and_nothing_outside_the_clone():
    readme = README.read_text(encoding="utf-8")
    assert "../shared" not in readme
    links = set(re.findall(r"\]\(([^)#\s]+)", readme))
    docs = {path.relative_to(ROOT).as_posix() for path in DOCS.rglob("*") if path.is_file()}
    assert docs, "docs/ is empty"
    unlinked = sorted(docs - links)
    assert not unlinked, f"README.md does not link {unlinked}"
    assert {"docs/api.md", "docs/anonymity.md", "docs/deploy.md"} <= links


def test_the_docs_stand_on_their_own():
    for path in [README, *DOCS.rglob("*.md")]:
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text and "SPEC.md" not in text, f"{path.name} points outside the clone"
