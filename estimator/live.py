"""What links a live page to its JSON endpoint: the URL it polls and the ETag it starts from."""

from typing import Any

from flask import url_for


def etag(kind: str, object_id: int, version: int) -> str:
    """The entity tag of an issue's or a group's state at a group version (unquoted)."""
    return f"{kind}-{object_id}-v{version}"


def live_context(kind: str, object_id: int, version: int) -> dict[str, str]:
    """Template variables that make a page poll `/api/<kind>s/<id>` from this version on."""
    values: dict[str, Any] = {f"{kind}_id": object_id}
    return {
        "live_api": url_for(f"api.{kind}", **values),
        "live_etag": f'"{etag(kind, object_id, version)}"',
    }
