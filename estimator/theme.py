"""The colour scheme: the system's (auto), light or dark, remembered in a cookie.

A module rather than a blueprint package: one small view, and what the layout needs to know to
render the chosen scheme before the first paint.
"""

from enum import StrEnum

from flask import Blueprint, current_app, jsonify, redirect, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from .auth.redirects import safe_next
from .changes import N_
from .errors import error_response, wants_json

bp = Blueprint("theme", __name__)

THEME_COOKIE = "estimator_theme"
#: As long as browsers keep a cookie (400 days); renewed at every switch.
THEME_COOKIE_MAX_AGE = 400 * 24 * 60 * 60
BAD_THEME_MESSAGE = N_("Choose auto, light or dark as the colour scheme.")


class Theme(StrEnum):
    """The colour schemes a person can choose; auto follows the system's setting."""

    AUTO = "auto"
    LIGHT = "light"
    DARK = "dark"


def current_theme() -> Theme:
    """The scheme this browser chose, auto when it chose none (or the cookie holds nonsense)."""
    try:
        return Theme(request.cookies.get(THEME_COOKIE, ""))
    except ValueError:
        return Theme.AUTO


@bp.app_context_processor
def inject_theme() -> dict[str, object]:
    """Every page knows the chosen scheme, to render it on <html> and to mark it in the switch."""
    return {"theme": current_theme(), "Theme": Theme}


@bp.route("/theme", methods=["GET", "POST"])
def switch() -> ResponseReturnValue:
    """Remember the chosen colour scheme, then go back to the page it was chosen on."""
    back = safe_next(request.values.get("next"))
    if request.method == "GET":
        return redirect(back)
    try:
        theme = Theme(request.form.get("theme", ""))
    except ValueError:
        return error_response(400, _(BAD_THEME_MESSAGE))
    # The page's script switches without a reload and only needs to hear that it was kept.
    response = jsonify(theme=theme) if wants_json() else redirect(back)
    response.set_cookie(
        THEME_COOKIE,
        theme,
        max_age=THEME_COOKIE_MAX_AGE,
        httponly=True,
        samesite="Lax",
        secure=current_app.config["HTTPS"],
    )
    return response
