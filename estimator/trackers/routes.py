"""The facilitator's tracker page: connect, test, import by query, send a final estimate back.

A tracker is asked outside any transaction that writes (the views `locks_later`, and commit what
they read before the call), and what it answers changes the group only when the whole call
succeeded: a tracker that refuses, times out or answers nonsense leaves Estimator as it was.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import login_required
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # WTForms 3.3 is newer than its stubs

from ..changes import RuleError
from ..database import change_group, hold_sqlite_write_lock, locks_later
from ..extensions import db
from ..forms import EmptyForm
from ..groups.rules import MAX_ISSUES
from ..models import Group, Issue, TrackerConnection
from ..permissions import require_owner
from . import available, kind_of, vault
from .base import SECRET_EMAIL, SECRET_TOKEN, EstimateField, TrackerError
from .forms import ConnectionForm, ImportForm
from .http import current_policy
from .sync import Imported, Reach, connected, connection_of, deliver, outgoing, reach_of, take_in

bp = Blueprint("trackers", __name__)


def tracker_page(
    group: Group,
    connection: TrackerConnection | None,
    form: ConnectionForm | None = None,
    import_form: ImportForm | None = None,
    *,
    status: int = 200,
    **shown: Any,
) -> ResponseReturnValue:
    """The tracker page: the operator's settings, the connection, the import."""
    if form is None:
        form = ConnectionForm(formdata=None, obj=connection)
        if connection is not None and connection.estimate_field:
            label = connection.estimate_field_label or connection.estimate_field
            form.estimate_field.choices = [SelectChoice(connection.estimate_field, label)]
    if import_form is None:
        import_form = ImportForm(formdata=None, query=connection.last_query if connection else None)
    if connection is not None:
        form.token.description = _("Credentials saved; enter a new one to replace it.")
        kind = kind_of(connection.kind)
        import_form.query.description = kind.query_help
        import_form.query.render_kw = {
            **(import_form.query.render_kw or {}),
            "placeholder": kind.query_example,
        }
    if len(form.estimate_field.choices or []) <= 1:
        form.estimate_field.description = _("Test the connection to choose among the tracker's fields.")
    return render_template(
        "trackers/tracker.html",
        group=group,
        connection=connection,
        form=form,
        import_form=import_form,
        delete_form=EmptyForm(),
        kinds=available(),
        kind=kind_of(connection.kind) if connection else None,
        vault_problem=vault.ready(),
        allowed_hosts=current_policy().describe(),
        max_issues=MAX_ISSUES,
        **shown,
    ), status


def offer_fields(form: ConnectionForm, fields: list[EstimateField]) -> None:
    """The tracker's estimate fields as the form's choices, keeping the one chosen if it is there."""
    form.estimate_field.choices = [SelectChoice(each.id, each.label) for each in fields]
    if form.estimate_field.data not in {each.id for each in fields}:
        form.estimate_field.data = fields[0].id if fields else ""


def typed_reach(form: ConnectionForm, connection: TrackerConnection | None) -> Reach:
    """The tracker the form names, with the typed credentials, or the saved ones when none were
    typed and the tracker is the same; TrackerError when there are none to use."""
    kind, base_url = form.kind.data or "", form.base_url.data or ""
    secret = {SECRET_TOKEN: form.token.data or ""}
    if form.email.data and kind_of(kind).email:
        secret[SECRET_EMAIL] = form.email.data
    if not secret[SECRET_TOKEN]:
        if connection is None:
            raise TrackerError(_("Enter the %(what)s.", what=kind_of(kind).token_label))
        if (connection.kind, connection.base_url) != (kind, base_url):
            raise TrackerError(
                _(
                    "The tracker or its address changed: enter the %(what)s for it.",
                    what=kind_of(kind).token_label,
                )
            )
        secret = reach_of(connection).secret
    vault.keys()  # credentials that cannot be kept are not even tried
    return Reach(kind, base_url, secret)


@bp.route("/groups/<id:group_id>/tracker", methods=["GET", "POST"])
@login_required
@locks_later
def tracker(group_id: int) -> ResponseReturnValue:
    """Connect the group to a tracker, test the connection, change it (owner only)."""
    membership = require_owner(group_id)
    group = membership.group
    connection = connection_of(group_id)
    if request.method != "POST":
        return tracker_page(group, connection)
    form = ConnectionForm()
    if not form.validate():
        return tracker_page(group, connection, form, status=422)
    try:
        reach = typed_reach(form, connection)
        db.session.commit()  # nothing is held while the tracker is asked
        with connected(reach) as connector:
            who = connector.check()
            fields = connector.fields()
    except TrackerError as error:
        db.session.rollback()
        return tracker_page(group, connection, form, status=422, problem=str(error))
    offer_fields(form, fields)
    kind = kind_of(reach.kind)
    if form.test.data:
        return tracker_page(group, connection, form, connected_as=who, tested_kind=kind)
    save(group_id, reach, form, {each.id: each.label for each in fields})
    flash(_("Connected to %(kind)s as %(who)s.", kind=kind.title, who=who), "success")
    return redirect(url_for("trackers.tracker", group_id=group_id))


def save(group_id: int, reach: Reach, form: ConnectionForm, labels: dict[str, str]) -> None:
    """Keep the connection; changing the tracker or its address forgets where issues came from."""
    hold_sqlite_write_lock()
    change_group(group_id)
    connection = connection_of(group_id)
    if connection is None:
        connection = TrackerConnection(group_id=group_id)
        db.session.add(connection)
    elif (connection.kind, connection.base_url) != (reach.kind, reach.base_url):
        forget_refs(group_id)
    connection.kind, connection.base_url = reach.kind, reach.base_url
    connection.credentials = vault.seal(group_id, reach.secret)
    connection.estimate_field = form.estimate_field.data or None
    connection.estimate_field_label = labels.get(form.estimate_field.data or "", None)
    connection.send_automatically = bool(form.send_automatically.data)
    db.session.commit()


def forget_refs(group_id: int) -> None:
    """Issues no longer point into a tracker that is gone or replaced."""
    db.session.execute(Issue.__table__.update().where(Issue.group_id == group_id).values(tracker_ref=None))


@bp.route("/groups/<id:group_id>/tracker/delete", methods=["GET", "POST"])
@login_required
def delete(group_id: int) -> ResponseReturnValue:
    """Disconnect the tracker and forget its credentials (owner only); GET goes to the tracker page."""
    require_owner(group_id)
    if request.method == "POST" and EmptyForm().validate_on_submit():
        connection = connection_of(group_id)
        if connection is not None:
            change_group(group_id)
            forget_refs(group_id)
            db.session.delete(connection)
            db.session.commit()
            flash(_("The tracker is disconnected and its credentials are deleted."), "success")
    return redirect(url_for("trackers.tracker", group_id=group_id))


@bp.route("/groups/<id:group_id>/tracker/import", methods=["GET", "POST"])
@login_required
@locks_later
def import_issues(group_id: int) -> ResponseReturnValue:
    """Import the issues a query selects (owner only); GET goes to the tracker page."""
    membership = require_owner(group_id)
    if request.method != "POST":
        return redirect(url_for("trackers.tracker", group_id=group_id))
    group = membership.group
    connection = connection_of(group_id)
    if connection is None:
        flash(_("Connect a tracker first."), "warning")
        return redirect(url_for("trackers.tracker", group_id=group_id))
    form = ImportForm()
    if not form.validate():
        return tracker_page(group, connection, import_form=form, status=422)
    query = form.query.data or ""
    try:
        reach = reach_of(connection)
        db.session.commit()  # nothing is held while the tracker is asked
        with connected(reach) as connector:
            found = connector.search(query, MAX_ISSUES)
    except TrackerError as error:
        db.session.rollback()
        form.query.errors = [*form.query.errors, _("Nothing was imported. %(reason)s", reason=error)]
        return tracker_page(group, connection_of(group_id), import_form=form, status=422)
    hold_sqlite_write_lock()
    change_group(group_id)
    group = db.session.get_one(Group, group_id)
    try:
        result = take_in(group, found)
    except RuleError as error:
        db.session.rollback()
        form.query.errors = [*form.query.errors, _("Nothing was imported. %(reason)s", reason=error)]
        return tracker_page(group, connection_of(group_id), import_form=form, status=422)
    connection = connection_of(group_id)
    if connection is not None:
        connection.last_query = query
    db.session.commit()
    return tracker_page(
        group, connection, import_form=ImportForm(formdata=None, query=query), imported=result
    )


@bp.app_template_global("tracker_summary")
def summary(result: Imported) -> str:
    """What an import did, in one sentence (the tracker page shows it)."""
    return str(
        _(
            "Added %(added)d, updated %(updated)d titles, skipped %(skipped)d.",
            added=result.added,
            updated=result.updated,
            skipped=len(result.skipped),
        )
    ) + (
        " "
        + ngettext(
            "%(num)d came with an estimate of the group's deck, recorded as its final estimate.",
            "%(num)d came with an estimate of the group's deck, recorded as their final estimates.",
            result.estimated,
        )
        if result.estimated
        else ""
    )


@bp.route("/issues/<id:issue_id>/tracker/send", methods=["GET", "POST"])
@login_required
@locks_later
def send(issue_id: int) -> ResponseReturnValue:
    """Send the issue's final estimate to the tracker field chosen (owner only); GET goes back."""
    issue = db.get_or_404(Issue, issue_id)
    require_owner(issue.group_id)
    back = back_to(issue)
    if request.method != "POST" or not EmptyForm().validate_on_submit():
        return back
    try:
        sending = outgoing(issue, connection_of(issue.group_id))
        db.session.commit()  # nothing is held while the tracker is asked
        deliver(sending)
    except TrackerError as error:
        db.session.rollback()
        flash(_("The estimate was not sent. %(reason)s", reason=error), "warning")
    else:
        flash(
            _("Sent %(estimate)s to the tracker for %(key)s.", estimate=sending.value, key=issue.key),
            "success",
        )
    return back


def back_to(issue: Issue) -> ResponseReturnValue:
    """The room when the button was pressed there, else the issue's status page."""
    if request.args.get("back") == "room":
        return redirect(url_for("voting.room", group_id=issue.group_id))
    return redirect(url_for("voting.status", issue_id=issue.id))
