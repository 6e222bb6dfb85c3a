"""Bulk import of a backlog (a tracker's file or pasted lines) and its export as CSV."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from flask import abort, make_response, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import login_required
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from sqlalchemy.orm import selectinload
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms import SubmitField, TextAreaField

from ..backlog_csv import export_row, printable, write_csv
from ..backlog_files import (
    DETAILS_MAX,
    MAX_BYTES,
    MAX_ROWS,
    BacklogFile,
    Row,
    clean_details,
    read_file,
    read_lines,
)
from ..changes import RuleError
from ..database import change_group
from ..estimates import Result, aggregate
from ..extensions import db
from ..models import Group, Issue, Membership, Round
from ..permissions import require_member, require_owner
from ..text import looks
from . import bp, rules
from .forms import IssueForm

#: The largest request body the import takes: a file up to a mebibyte over MAX_BYTES still arrives,
#: so that it gets the import page's own message; anything larger is refused before it is read.
MAX_IMPORT_REQUEST = MAX_BYTES + 1024 * 1024
IMPORT_ENDPOINT = "groups.import_backlog"
#: What the file field offers: every format `read_file` reads (it goes by content, not by name).
ACCEPTED_FILES = ".csv,.xml,.json,text/csv,text/xml,application/xml,application/json"


class ImportFileForm(FlaskForm):
    """Import issues from a tracker's file: CSV (Jira, GitLab, Linear, Plane, Redmine…), Jira's XML
    or Trello's JSON."""

    file = FileField(
        _l("Backlog file (CSV, XML or JSON)"),
        validators=[FileRequired(_l("Choose a file to import."))],
        render_kw={"accept": ACCEPTED_FILES},
    )
    submit_file = SubmitField(_l("Import the file"))


class ImportTextForm(FlaskForm):
    """Import issues from pasted lines: the key, white space, the description."""

    text = TextAreaField(
        _l("Issues, one a line: the key, a space, the description"),
        render_kw={"rows": 8, "placeholder": _l("PROJ-1 Log in with a nickname\nPROJ-2 Export the backlog")},
    )
    submit_text = SubmitField(_l("Import the lines"))


@dataclass(frozen=True)
class Skipped:
    """A row that was not added, or added with a note: its line, its key as it may be shown, and why."""

    line: int
    key: str
    reason: str


@dataclass
class Imported:
    """What an import did: how many issues it added, the rows it skipped, and the rows it added
    with a note (an estimate that is no card of the deck, a description cut short)."""

    added: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    noted: list[Skipped] = field(default_factory=list)


@bp.url_value_preprocessor
def allow_backlog_files(endpoint: str | None, _values: dict[str, Any] | None) -> None:
    """Let the import read up to MAX_IMPORT_REQUEST, though the app takes 64 KiB elsewhere.

    This must happen before anything reads the body, and the app-wide CSRF check reads the form
    in a before_request hook that runs before any of the blueprint's own: URL value preprocessors
    are the one hook that runs earlier still.
    """
    if endpoint != IMPORT_ENDPOINT:
        return
    if (request.content_length or 0) > MAX_IMPORT_REQUEST:
        raise RequestEntityTooLarge(_("A backlog file has at most 10 MiB. Split it into smaller files."))
    request.max_content_length = MAX_IMPORT_REQUEST
    request.max_form_memory_size = MAX_IMPORT_REQUEST  # pasted text arrives as a form field


def render_import(
    membership: Membership,
    file_form: ImportFileForm,
    text_form: ImportTextForm,
    *,
    imported: Imported | None = None,
    backlog: BacklogFile | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    """The import page, with what the last import did when there was one."""
    return render_template(
        "groups/import.html",
        group=membership.group,
        file_form=file_form,
        text_form=text_form,
        imported=imported,
        unit=backlog.unit if backlog else "line",
        notes=backlog.notes if backlog else [],
        max_rows=MAX_ROWS,
    ), status


def sort_rows(
    group: Group, rows: Sequence[Row], taken: set[str], unit: str = "line"
) -> tuple[list[rules.NewIssue], Imported]:
    """The rows to add (trimmed, checked, in order), and what happened to the others: skipped for
    a key the group or an earlier row already has (by look, as the group tells keys apart:
    `looks`) or for breaking the add-issue form's rules; noted for an estimate that is no card of
    the group's deck (added without it) or a description cut at DETAILS_MAX."""
    to_add: list[rules.NewIssue] = []
    outcome = Imported()
    lines: dict[str, int] = {}  # what a key to add looks like → its line
    deck = group.deck_rules
    for row in rows:
        key = row.key.strip()
        folded = looks(key)
        if key and folded in taken:
            outcome.skipped.append(Skipped(row.line, printable(key), _("The group already has this issue.")))
            continue
        if key and folded in lines:
            if unit == "line":
                reason = _("The same key is on line %(line)d.", line=lines[folded])
            else:
                reason = _("The same key is in item %(item)d.", item=lines[folded])
            outcome.skipped.append(Skipped(row.line, printable(key), reason))
            continue
        form = IssueForm(formdata=MultiDict({"key": row.key, "description": row.title}), meta={"csrf": False})
        if not form.validate():
            reason = next(error for errors in form.errors.values() for error in errors)
            outcome.skipped.append(Skipped(row.line, printable(key), str(reason)))
            continue
        details, cut = clean_details(row.details)
        if cut:
            reason = _("The description was cut at %(max)d characters.", max=DETAILS_MAX)
            outcome.noted.append(Skipped(row.line, printable(key), reason))
        estimate = deck.fitting(row.estimate) if row.estimate.strip() else None
        if row.estimate.strip() and estimate is None:
            reason = _(
                "The estimate %(estimate)s is not a card of this deck; the issue was imported without it.",
                estimate=printable(row.estimate.strip(), 16),
            )
            outcome.noted.append(Skipped(row.line, printable(key), reason))
        to_add.append(rules.NewIssue(form.key.data or "", form.description.data or "", details, estimate))
        lines[folded] = row.line
    return to_add, outcome


def add_rows(group: Group, rows: Sequence[Row], unit: str = "line") -> Imported:
    """Add a tracker's issues to the group: the one step every import takes, from a file, from
    pasted lines or from a tracker's connection. Skips and notes rows as `sort_rows` says (`unit`:
    what `Row.line` counts, "line" or "item"); RuleError (nothing added) when the rest would
    overfill the group. The caller commits or rolls back."""
    change_group(group.id)
    to_add, outcome = sort_rows(group, rows, rules.taken_keys(group), unit)
    if to_add:
        outcome.added = len(rules.add_issues(group, to_add))
    return outcome


@bp.route("/groups/<id:group_id>/import", methods=["GET", "POST"])
@login_required
def import_backlog(group_id: int) -> ResponseReturnValue:
    """Add many issues at once from a tracker's file or pasted lines (owner only)."""
    membership = require_owner(group_id)
    file_form, text_form = ImportFileForm(), ImportTextForm()
    if request.method != "POST":
        return render_import(membership, file_form, text_form)
    form: ImportFileForm | ImportTextForm = file_form if "file" in request.files else text_form
    failure = form.file if isinstance(form, ImportFileForm) else form.text
    if not form.validate():
        return render_import(membership, file_form, text_form, status=422)
    try:
        if isinstance(form, ImportFileForm):
            backlog = read_file(form.file.data.stream.read(MAX_BYTES + 1))
        else:
            backlog = BacklogFile(read_lines(form.text.data or ""))
    except RuleError as error:
        failure.errors = [*failure.errors, str(error)]
        return render_import(membership, file_form, text_form, status=422)

    try:
        imported = add_rows(membership.group, backlog.rows, backlog.unit)
    except RuleError as error:
        db.session.rollback()
        failure.errors = [*failure.errors, _("Nothing was imported. %(reason)s", reason=error)]
        return render_import(membership, file_form, text_form, backlog=backlog, status=422)
    if imported.added:
        db.session.commit()
    else:
        db.session.rollback()  # nothing changed: the open pages need not reload
    fresh = ImportFileForm(formdata=None), ImportTextForm(formdata=None)
    return render_import(membership, *fresh, imported=imported, backlog=backlog)


@bp.route("/groups/<id:group_id>/export.csv")
@login_required
def export_backlog(group_id: int) -> ResponseReturnValue:
    """The backlog as CSV, in backlog order, with each issue's last revealed result (members)."""
    require_member(group_id)
    group = db.session.scalar(
        sa.select(Group)
        .where(Group.id == group_id)
        .options(selectinload(Group.issues).selectinload(Issue.rounds).selectinload(Round.tallies))
    )
    if group is None:
        abort(404)
    body = write_csv(
        export_row(
            issue.key,
            issue.description,
            issue.state,
            issue.final_estimate,
            len(issue.rounds),
            last_result(group, issue),
        )
        for issue in group.issues
    )
    response = make_response(body)
    response.content_type = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = content_disposition(f"{group.name} backlog.csv")
    response.headers["Cache-Control"] = "no-store"
    return response


def last_result(group: Group, issue: Issue) -> Result | None:
    """The anonymous aggregate of the issue's last revealed round, None when no round was revealed."""
    revealed = [round_ for round_ in issue.rounds if round_.revealed]
    if not revealed:
        return None
    return aggregate(
        revealed[-1].deck_rules(group), {tally.card: tally.count for tally in revealed[-1].tallies}
    )


def content_disposition(filename: str) -> str:
    """An attachment header naming the file safely: an ASCII name for every browser (accents
    dropped, then only letters, digits, dots and dashes, so nothing can break out of the header or
    hide the file), the real name in UTF-8 for the browsers that read it."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", filename) if not unicodedata.combining(c))
    ascii_name = "".join(c if c.isascii() and (c.isalnum() or c in ".-_") else "-" for c in plain)
    ascii_name = "-".join(part for part in ascii_name.split("-") if part).lstrip(".-") or "backlog.csv"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
