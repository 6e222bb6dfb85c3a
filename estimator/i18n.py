"""Languages: which one a page speaks, the switch between them, and the compiled catalogs.

The choice is the visitor's own (the `lang` cookie that `POST /language` sets), else the best
match of the browser's Accept-Language, else English. Message catalogs live in `translations/`
(see the README); their compiled `.mo` files are made from the `.po` files when the app starts.
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from flask import Blueprint, Flask, Response, current_app, g, redirect, request
from flask.typing import ResponseReturnValue
from flask_babel import Babel, format_decimal, get_locale, get_translations
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from .assets import STATIC_ENDPOINTS
from .auth.redirects import is_local_path, safe_next
from .errors import error_response
from .models import IssueState, Role

TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"
#: The languages a visitor can choose, each named in itself.
LANGUAGES = {"en": "English", "de": "Deutsch"}
DEFAULT_LANGUAGE = "en"
COOKIE = "estimator_lang"
#: As long as browsers keep a cookie (400 days); renewed at every switch.
COOKIE_AGE = timedelta(days=400)

#: How the states and roles (stored and sent in JSON as English words) are shown on pages.
STATE_LABELS = {
    IssueState.VOTING: _l("voting"),
    IssueState.REVEALED: _l("revealed"),
    IssueState.ESTIMATED: _l("estimated"),
}
ROLE_LABELS = {Role.OWNER: _l("facilitator"), Role.MEMBER: _l("member"), Role.OBSERVER: _l("observer")}

babel = Babel()
bp = Blueprint("i18n", __name__)


def select_locale() -> str:
    """The visitor's remembered choice, else the browser's preference, else English."""
    chosen = request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(list(LANGUAGES)) or DEFAULT_LANGUAGE


def current_language() -> str:
    """The language code of the page being made ("en" outside a request)."""
    locale = get_locale()
    return str(locale.language) if locale is not None else DEFAULT_LANGUAGE


def compile_catalogs(directory: Path = TRANSLATIONS) -> list[Path]:
    """Compile every `.po` whose `.mo` is missing or older; returns the files written.

    Several workers may start at once: each writes a temporary file and renames it into place,
    so no worker ever reads half a catalog. A read-only tree (a container, whose image compiled
    them at build time) is left as it is.
    """
    written = []
    for po in sorted(directory.glob("*/LC_MESSAGES/*.po")):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as source:
            catalog = read_po(source, locale=po.parent.parent.name)
        try:
            with tempfile.NamedTemporaryFile("wb", dir=po.parent, delete=False) as target:
                write_mo(target, catalog)
            os.replace(target.name, mo)
        except OSError as error:
            if mo.exists():
                continue
            raise RuntimeError(
                f"Cannot compile {po}: {error}. Run: pybabel compile -d translations"
            ) from None
        written.append(mo)
    return written


def local_number(value: float | int | Decimal | None) -> str:
    """A number as the page's language writes it (13.5 is "13,5" in German), up to two decimals."""
    if value is None:
        return "–"
    return str(format_decimal(value, format="0.##"))


def page_messages() -> dict[str, str]:
    """The page script's own sentences in the page's language: base.html hands them to it as
    `data-message-*` attributes of its script tag."""
    return {
        "copied": _("Copied"),
        "vote-failed": _("Your vote could not be saved. Please try again."),
        "offline": _("The server cannot be reached; your vote was not saved. Please try again."),
        # {typed} is the card typed so far, which a second key may lengthen ("2", then "21").
        "typed-waiting": _("“{typed}”: waiting a moment for another key"),
    }


def came_from() -> str | None:
    """The page of this site the request was sent from, as a local path, if the browser says."""
    referrer = urlsplit(request.referrer or "")
    here = urlsplit(request.host_url)
    if (referrer.scheme, referrer.netloc) != (here.scheme, here.netloc):
        return None
    path = referrer.path + (f"?{referrer.query}" if referrer.query else "")
    return path if is_local_path(path) else None


@bp.route("/language", methods=["GET", "POST"])
def language() -> ResponseReturnValue:
    """Switch the site's language for this browser and go back to the page it was chosen on."""
    target = request.values.get("next")
    back = safe_next(target if is_local_path(target) else came_from())
    if request.method == "GET":
        return redirect(back)
    chosen = request.form.get("lang", "")
    if chosen not in LANGUAGES:
        names = " / ".join(LANGUAGES.values())
        return error_response(400, _("That language is not available. Please choose %(names)s.", names=names))
    response = redirect(back)
    response.set_cookie(
        COOKIE,
        chosen,
        max_age=COOKIE_AGE,
        httponly=True,
        samesite="Lax",
        secure=bool(current_app.config.get("HTTPS")),
    )
    return response


def catalog() -> Translations:
    """The catalog of the request's language, looked up once per request (or stream)."""
    found: Translations | None = g.get("babel_catalog")
    if found is None:
        found = g.babel_catalog = get_translations()
    return found


def register_i18n(app: Flask) -> None:
    """Compile the catalogs, choose each request's language, and give the templates their helpers."""
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    compile_catalogs(Path(app.config["BABEL_TRANSLATION_DIRECTORIES"]))
    babel.init_app(app, locale_selector=select_locale)
    # Flask-Babel looks up the language and its catalog again for each string, about 50 µs, and a
    # room renders some seventy: the templates take the request's catalog once (`catalog`).
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]  # added by jinja2.ext.i18n
        gettext=lambda s: catalog().ugettext(s),
        ngettext=lambda s, p, n: catalog().ungettext(s, p, n),
        newstyle=True,
        pgettext=lambda c, s: catalog().upgettext(c, s),
        npgettext=lambda c, s, p, n: catalog().unpgettext(c, s, p, n),
    )
    app.register_blueprint(bp)
    app.jinja_env.filters.update(number=local_number)
    app.jinja_env.globals.update(
        LANGUAGES=LANGUAGES,
        current_language=current_language,
        page_messages=page_messages,
        state_label=lambda state: STATE_LABELS.get(state, state),
        role_label=lambda role: ROLE_LABELS.get(role, role),
    )

    app.after_request(vary_on_language)


def vary_on_language(response: Response) -> Response:
    """Pages differ by language: no shared cache may hand one visitor's language to another.
    Static files do not: varying on the cookie would make browsers ask for them again after a
    login or a language change, when they may keep them a year (estimator/assets.py)."""
    if request.endpoint in STATIC_ENDPOINTS:
        return response
    response.vary.add("Accept-Language")
    response.vary.add("Cookie")
    return response
