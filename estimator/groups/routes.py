"""Dashboard, group page, invitations, members and settings."""

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from ..changes import RuleError
from ..extensions import configured, db, limiter
from ..forms import EmptyForm
from ..live import key_ids_of, live_context
from ..models import Group, Membership
from ..permissions import require_member, require_owner
from . import bp, rules
from .forms import GroupForm, IssueForm, JoinForm, RoleForm, SettingsForm
from .state import group_state, load_group


def my_groups() -> list[Membership]:
    """The current user's memberships with their groups, newest group first."""
    return list(
        db.session.scalars(
            sa.select(Membership)
            .where(Membership.user_id == current_user.id)
            .join(Group)
            .options(sa.orm.contains_eager(Membership.group))
            .order_by(Group.id.desc())
        )
    )


def render_dashboard(form: GroupForm, status: int = 200) -> ResponseReturnValue:
    """The landing page, or "My groups" with the create-group form when logged in."""
    if not current_user.is_authenticated:
        return render_template("groups/landing.html")
    return render_template("groups/dashboard.html", form=form, memberships=my_groups()), status


def render_group(
    membership: Membership,
    *,
    issue_form: IssueForm | None = None,
    settings_form: SettingsForm | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    """The group page; the owner also gets the invite link, the add-issue form and the settings."""
    group = load_group(membership.group_id)
    if group is None:
        abort(404)
    return render_template(
        "groups/group.html",
        group=group,
        state=group_state(group),
        membership=membership,
        issue_form=issue_form or IssueForm(),
        settings_form=settings_form or SettingsForm(obj=group),
        **live_context("group", group.id, group.version, key_ids_of(i.current_round for i in group.issues)),
    ), status


@bp.route("/")
def dashboard() -> ResponseReturnValue:
    """Landing page, or the user's groups."""
    return render_dashboard(GroupForm())


@bp.route("/groups", methods=["GET", "POST"])
@login_required
def create() -> ResponseReturnValue:
    """Create a group and become its facilitator; GET goes back to the form."""
    form = GroupForm()
    if not form.is_submitted():
        return redirect(url_for("groups.dashboard"))
    if not form.validate():
        return render_dashboard(form, 422)
    group = rules.create_group(current_user, form.name.data or "", form.deck.data)
    db.session.commit()
    flash(f"Group “{group.name}” created. Share its invite link with your team.", "success")
    if not current_user.has_password:
        # The group belongs to a nickname that only this browser can use until it has a password.
        flash(
            "Your nickname works only in this browser. Set a password on your account page to "
            "facilitate from another device — and so as not to lose the group with this browser.",
            "info",
        )
    return redirect(url_for("groups.show", group_id=group.id))


@bp.route("/groups/<id:group_id>")
@login_required
def show(group_id: int) -> ResponseReturnValue:
    """The group page: members, issues and (for the owner) invite link, issue form and settings."""
    return render_group(require_member(group_id))


@bp.route("/groups/<id:group_id>/issues", methods=["GET", "POST"])
@login_required
def add_issue(group_id: int) -> ResponseReturnValue:
    """Add an issue (owner only); GET goes back to the group page."""
    membership = require_owner(group_id)
    form = IssueForm()
    if not form.is_submitted():
        return redirect(url_for("groups.show", group_id=group_id))
    if form.validate():
        try:
            issue = rules.add_issue(membership.group, form.key.data or "", form.description.data or "")
        except RuleError as error:
            db.session.rollback()
            form.key.errors = [*form.key.errors, str(error)]
        else:
            db.session.commit()
            flash(f"Issue {issue.key} added: the team can vote now.", "success")
            return redirect(url_for("groups.show", group_id=group_id))
    return render_group(membership, issue_form=form, status=422)


@bp.route("/groups/<id:group_id>/settings", methods=["GET", "POST"])
@login_required
def settings(group_id: int) -> ResponseReturnValue:
    """Change the group's settings (owner only); GET goes back to the group page."""
    membership = require_owner(group_id)
    form = SettingsForm(obj=membership.group)
    if not form.is_submitted():
        return redirect(url_for("groups.show", group_id=group_id))
    if not form.validate():
        return render_group(membership, settings_form=form, status=422)
    assert form.min_votes.data is not None  # required, or the group's own
    rules.change_settings(
        membership.group,
        auto_reveal=form.auto_reveal.data,
        min_votes=form.min_votes.data,
        facilitator_votes=form.facilitator_votes.data,
    )
    db.session.commit()
    flash("Settings saved. They apply to the next reveal.", "success")
    return redirect(url_for("groups.show", group_id=group_id))


@bp.route("/join/<token>", methods=["GET", "POST"])
@login_required
@limiter.limit(configured("JOIN_RATE_LIMIT"), methods=["POST"])
def join(token: str) -> ResponseReturnValue:
    """GET asks "Join <group>?"; POST joins."""
    group = rules.group_by_invite(token)
    if group is None:
        abort(404, "This invite link is unknown or has been replaced by a new one.")
    if any(m.user_id == current_user.id for m in group.memberships):
        return render_template("groups/already_member.html", group=group), 409
    form = JoinForm()
    if form.validate_on_submit():
        try:
            rules.join_group(group, current_user, form.role.data)
        except RuleError:
            db.session.rollback()
            return render_template("groups/already_member.html", group=group), 409
        else:
            db.session.commit()
            flash(f"You joined “{group.name}”.", "success")
            return redirect(url_for("groups.show", group_id=group.id))
    return render_template("groups/join.html", group=group, form=form), 422 if form.errors else 200


@bp.route("/groups/<id:group_id>/invite", methods=["GET", "POST"])
@login_required
def regenerate_invite(group_id: int) -> ResponseReturnValue:
    """Replace the invite link (owner only); the old link stops working."""
    membership = require_owner(group_id)
    if EmptyForm().validate_on_submit():
        rules.new_invite(membership.group)
        db.session.commit()
        flash("A new invite link was made; the old one no longer works.", "success")
    return redirect(url_for("groups.show", group_id=group_id))


@bp.route("/groups/<id:group_id>/members/<id:user_id>/role", methods=["GET", "POST"])
@login_required
def change_role(group_id: int, user_id: int) -> ResponseReturnValue:
    """Make a member an observer or a voting member again (owner only)."""
    membership = require_owner(group_id)
    form = RoleForm()
    if form.validate_on_submit():
        try:
            changed = rules.set_role(membership.group, user_id, form.role.data)
        except RuleError as error:
            db.session.rollback()
            flash(str(error), "warning")
        else:
            db.session.commit()
            flash(f"{changed.user.nickname} is now {changed.role}, from the next round on.", "success")
    elif form.is_submitted():
        flash("Please choose member or observer.", "danger")
    return redirect(url_for("groups.show", group_id=group_id))


@bp.route("/groups/<id:group_id>/members/<id:user_id>/remove", methods=["GET", "POST"])
@login_required
def remove(group_id: int, user_id: int) -> ResponseReturnValue:
    """Remove a member from the group (owner only)."""
    membership = require_owner(group_id)
    if EmptyForm().validate_on_submit():
        try:
            nickname = rules.remove_member(membership.group, user_id)
        except RuleError as error:
            db.session.rollback()
            flash(str(error), "warning")
        else:
            db.session.commit()
            flash(f"{nickname} was removed from the group.", "success")
    return redirect(url_for("groups.show", group_id=group_id))
