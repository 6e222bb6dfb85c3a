"""Dashboard, group page, invitations, members and settings."""

import hashlib
import io
from typing import Any, NamedTuple, NoReturn

import segno
import sqlalchemy as sa
from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required
from werkzeug.exceptions import TooManyRequests

from .. import counters
from ..changes import RuleError
from ..errors import wants_json
from ..extensions import configured, db, limiter
from ..forms import EmptyForm
from ..live import Seat, live_context, live_view
from ..models import Group, Issue, Membership, Role
from ..permissions import require_member, require_owner
from . import bp, rules
from .forms import EditIssueForm, GroupForm, IssueForm, JoinForm, MoveForm, OwnerForm, RoleForm, SettingsForm
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
    context = group_page(
        group,
        membership,
        issue_form=issue_form,
        settings_form=settings_form,
        page=request.args.get("page", type=int),
    )
    return render_template("groups/group.html", **context), status


def group_page(
    group: Group,
    membership: Membership | Seat,
    *,
    issue_form: IssueForm | None = None,
    settings_form: SettingsForm | None = None,
    page: int | None = None,
) -> dict[str, Any]:
    """What groups/group.html shows of the loaded group to this member (or seat)."""
    state = group_state(group)
    backlog = backlog_page(state["issues"], page)
    view = "group" if backlog.page == 1 else f"group-{backlog.page}"
    return dict(
        group=group,
        state=state,
        membership=membership,
        issue_form=issue_form or IssueForm(),
        settings_form=settings_form or SettingsForm(obj=group),
        adding=request.args.get("added") == "1",
        backlog=backlog,
        **live_context(view, group.id, group.version),
    )


@live_view("group", "groups/group.html", ("small-votes", "issues", "members"))
def group_context(group_id: int, page: int | None, role: str) -> dict[str, Any] | None:
    """What the group page (backlog page `page`) shows a viewer in this role."""
    group = load_group(group_id)
    if group is None:
        return None
    return group_page(group, Seat.of(role, group.facilitator_votes), page=page)


#: Issues shown at once on the group page: a long backlog is shown a page at a time.
BACKLOG_PAGE = 100


class BacklogPage(NamedTuple):
    """One page of the backlog: its issues, where they start, which page of how many."""

    issues: list[dict[str, Any]]
    start: int
    page: int
    pages: int


def backlog_pages(issues: int) -> int:
    """How many pages a backlog of this many issues takes (one when it is empty)."""
    return max(1, -(-issues // BACKLOG_PAGE))


def clamped_page(page: int | None, issues: int) -> int:
    """The asked-for page of the backlog: the first, or the last one there is, when out of range."""
    return min(max(page or 1, 1), backlog_pages(issues))


def backlog_page(issues: list[dict[str, Any]], page: int | None) -> BacklogPage:
    """The asked-for page of the backlog (the first, or the last one there is, when out of range)."""
    page = clamped_page(page, len(issues))
    start = (page - 1) * BACKLOG_PAGE
    return BacklogPage(issues[start : start + BACKLOG_PAGE], start, page, backlog_pages(len(issues)))


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
    try:
        group = rules.create_group(
            current_user, form.name.data or "", form.deck.data, getattr(form, "parsed_cards", ())
        )
    except RuleError as error:
        db.session.rollback()
        form.name.errors = [*form.name.errors, str(error)]
        return render_dashboard(form, 422)
    db.session.commit()
    flash(_("Group “%(name)s” created. Share its invite link with your team.", name=group.name), "success")
    if not current_user.has_password:
        # The group belongs to a nickname that only this browser can use until it has a password.
        flash(
            _(
                "Your nickname works only in this browser. Set a password on your account page to "
                "facilitate from another device — and so as not to lose the group with this browser."
            ),
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
            flash(_("Issue %(key)s added.", key=issue.key), "success")
            return redirect(url_for("groups.show", group_id=group_id, added=1, _anchor="add-issue"))
    return render_group(membership, issue_form=form, status=422)


@bp.route("/groups/<id:group_id>/settings", methods=["GET", "POST"])
@login_required
def settings(group_id: int) -> ResponseReturnValue:
    """Change the group's settings (owner only); GET goes back to the group page."""
    membership = require_owner(group_id)
    form = SettingsForm(obj=membership.group)
    # From the room's settings panel (?back=room) the facilitator goes back to the room.
    back = url_for("voting.room", group_id=group_id) if request.args.get("back") == "room" else None
    if not form.is_submitted():
        return redirect(back or url_for("groups.show", group_id=group_id))
    if not form.validate():
        if back:
            flash(" ".join(str(error) for errors in form.errors.values() for error in errors), "warning")
            return redirect(back)
        return render_group(membership, settings_form=form, status=422)
    assert form.min_votes.data is not None  # required, or the group's own
    new_deck = rules.change_settings(
        membership.group,
        auto_reveal=form.auto_reveal.data,
        min_votes=form.min_votes.data,
        facilitator_votes=form.facilitator_votes.data,
        present_only=form.present_only.data,
        deck=form.deck.data,  # the group's own when the request names none
        cards=form.parsed_cards,
    )
    db.session.commit()
    if new_deck:
        flash(
            _("Settings saved. The new deck applies from the next round: votes cast keep theirs."),
            "success",
        )
    else:
        flash(_("Settings saved. They apply to the next reveal."), "success")
    return redirect(back or url_for("groups.show", group_id=group_id))


@bp.route("/join/<token>", methods=["GET", "POST"])
@login_required
@limiter.limit(configured("JOIN_RATE_LIMIT"), methods=["POST"])
def join(token: str) -> ResponseReturnValue:
    """GET asks "Join <group>?"; POST joins."""
    group = rules.group_by_invite(token)
    if group is None:
        refuse_guess(token)
    if any(m.user_id == current_user.id for m in group.memberships):
        return render_template("groups/already_member.html", group=group), 409
    form = JoinForm()
    if form.validate_on_submit():
        try:
            rules.join_group(group, current_user, form.role.data)
        except RuleError as error:
            db.session.rollback()
            if rules.is_member(group, current_user):  # a second tab got there first
                return render_template("groups/already_member.html", group=group), 409
            form.role.errors = [*form.role.errors, str(error)]
            return render_template("groups/join.html", group=group, form=form), 409
        else:
            db.session.commit()
            flash(_("You joined “%(name)s”.", name=group.name), "success")
            # Joining mid-meeting: straight to where the team is estimating.
            where = "voting.room" if group.current_issue_id is not None else "groups.show"
            return redirect(url_for(where, group_id=group.id))
    return render_template("groups/join.html", group=group, form=form), 422 if form.errors else 200


def refuse_guess(token: str) -> NoReturn:
    """404 for an unknown invite token, counted per client address and per token; 429 past the
    limit. Only unknown tokens are counted and refused: a valid link always works, for a whole team
    behind the address of somebody who guessed (a hit past the limit is worth nothing to a guesser,
    as a token carries 256 random bits)."""
    guessers = (f"address:{get_remote_address()}", f"token:{hashlib.sha256(token.encode()).hexdigest()}")
    if not counters.within("INVITE_GUESS_LIMIT", "invite-guesses", *guessers):
        raise TooManyRequests(
            _(
                "Too many unknown invite links were tried from here. Please wait a few minutes, "
                "and check the link with whoever sent it."
            ),
            retry_after=int(counters.limit("INVITE_GUESS_LIMIT").get_expiry()),
        )
    counters.count("INVITE_GUESS_LIMIT", "invite-guesses", *guessers)
    abort(404, _("This invite link is unknown or has been replaced by a new one."))


@bp.route("/groups/<id:group_id>/invite", methods=["GET", "POST"])
@login_required
def regenerate_invite(group_id: int) -> ResponseReturnValue:
    """Replace the invite link (owner only); the old link stops working."""
    membership = require_owner(group_id)
    if EmptyForm().validate_on_submit():
        rules.new_invite(membership.group)
        db.session.commit()
        flash(_("A new invite link was made; the old one no longer works."), "success")
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
            message = (
                _("%(nickname)s is now a member, from the next round on.", nickname=changed.user.nickname)
                if changed.role == Role.MEMBER
                else _(
                    "%(nickname)s is now an observer, from the next round on.", nickname=changed.user.nickname
                )
            )
            flash(message, "success")
    elif form.is_submitted():
        flash(_("Please choose member or observer."), "danger")
    return redirect(url_for("groups.show", group_id=group_id))


@bp.route("/groups/<id:group_id>/members/<id:user_id>/remove", methods=["GET", "POST"])
@login_required
def remove(group_id: int, user_id: int) -> ResponseReturnValue:
    """GET asks for confirmation; POST removes a member from the group (owner only)."""
    membership = require_owner(group_id)
    if request.method == "GET":
        member = next((m for m in membership.group.memberships if m.user_id == user_id), None)
        if member is None or member.is_owner:
            return redirect(url_for("groups.show", group_id=group_id))
        return confirm(
            _("Remove %(nickname)s?", nickname=member.user.nickname),
            _(
                "Their votes in rounds still open stay and are counted; they can join again only with a new "
                "invite link if you make one."
            ),
            url_for("groups.remove", group_id=group_id, user_id=user_id),
            _("Remove %(nickname)s", nickname=member.user.nickname),
            url_for("groups.show", group_id=group_id),
        )
    if EmptyForm().validate_on_submit():
        try:
            nickname = rules.remove_member(membership.group, user_id)
        except RuleError as error:
            db.session.rollback()
            flash(str(error), "warning")
        else:
            db.session.commit()
            flash(_("%(nickname)s was removed from the group.", nickname=nickname), "success")
    return redirect(url_for("groups.show", group_id=group_id))


def owned_issue(issue_id: int) -> tuple[Issue, Membership]:
    """The issue and the current user's membership, which must be the owner's (403), of a group
    they belong to (404 otherwise, as for an unknown issue)."""
    issue = db.session.get(Issue, issue_id)
    if issue is None:
        abort(404)
    return issue, require_owner(issue.group_id)


def confirm(
    title: str, message: str, action: str, button: str, back: str, **more: Any
) -> ResponseReturnValue:
    """The page that asks before something that cannot be undone; its form posts to `action`
    (with `fields`, hidden, and a `button_class` other than the danger red, when given)."""
    return render_template(
        "groups/confirm.html", title=title, message=message, action=action, button=button, back=back, **more
    )


@bp.route("/issues/<id:issue_id>/move", methods=["GET", "POST"])
@login_required
def move_issue(issue_id: int) -> ResponseReturnValue:
    """Move an issue in the backlog (owner only); GET goes back to the group page."""
    issue = owned_issue(issue_id)[0]
    form = MoveForm()
    if form.validate_on_submit():
        place = rules.move_issue(issue, form.to.data or "", form.place.data)
        db.session.commit()
        moved = _("%(key)s is now number %(place)d of the backlog.", key=issue.key, place=place)
        if wants_json():  # dragged on the page: the page announces it and the stream redraws it
            return jsonify(moved=moved, place=place)
        flash(moved, "success")
    elif form.is_submitted():
        message = " ".join(map(str, [*form.to.errors, *form.place.errors])) or _("Please try again.")
        if wants_json():
            return jsonify(error=message), 422
        flash(message, "warning")
    return redirect(url_for("groups.show", group_id=issue.group_id, _anchor=f"issue-{issue.id}"))


@bp.route("/issues/<id:issue_id>/edit", methods=["GET", "POST"])
@login_required
def edit_issue(issue_id: int) -> ResponseReturnValue:
    """Change an issue's key, description and details (owner only)."""
    issue = owned_issue(issue_id)[0]
    form = EditIssueForm(obj=issue)
    if form.validate_on_submit():
        details = form.details.data if form.details.raw_data else None
        try:
            rules.edit_issue(issue, form.key.data or "", form.description.data or "", details)
        except RuleError as error:
            db.session.rollback()
            form.key.errors = [*form.key.errors, str(error)]
        else:
            db.session.commit()
            flash(_("Issue %(key)s saved.", key=issue.key), "success")
            return redirect(url_for("groups.show", group_id=issue.group_id))
    status = 422 if form.errors else 200
    return render_template("groups/edit_issue.html", issue=issue, form=form), status


@bp.route("/issues/<id:issue_id>/delete", methods=["GET", "POST"])
@login_required
def delete_issue(issue_id: int) -> ResponseReturnValue:
    """GET asks for confirmation; POST deletes the issue with its rounds (owner only)."""
    issue = owned_issue(issue_id)[0]
    group_id = issue.group_id
    if EmptyForm().validate_on_submit():
        key = rules.delete_issue(issue)
        db.session.commit()
        flash(_("Issue %(key)s was deleted, with its rounds.", key=key), "success")
        return redirect(url_for("groups.show", group_id=group_id))
    return confirm(
        _("Delete %(key)s?", key=issue.key),
        _("Its rounds and results are deleted too. This cannot be undone."),
        url_for("groups.delete_issue", issue_id=issue.id),
        _("Delete the issue"),
        url_for("groups.show", group_id=group_id),
    )


@bp.route("/groups/<id:group_id>/leave", methods=["GET", "POST"])
@login_required
def leave(group_id: int) -> ResponseReturnValue:
    """GET asks for confirmation; POST leaves the group, withdrawing one's own open votes."""
    membership = require_member(group_id)
    group = membership.group
    if EmptyForm().validate_on_submit():
        try:
            rules.leave_group(group, current_user)
        except RuleError as error:
            db.session.rollback()
            flash(str(error), "warning")
            return redirect(url_for("groups.show", group_id=group_id))
        else:
            db.session.commit()
            flash(_("You left “%(name)s”.", name=group.name), "success")
            return redirect(url_for("groups.dashboard"))
    if membership.is_owner:
        flash(str(rules.OWNER_CANNOT_LEAVE), "warning")
        return redirect(url_for("groups.show", group_id=group_id))
    return confirm(
        _("Leave “%(name)s”?", name=group.name),
        _("Your votes in rounds still open are withdrawn. You can join again with the invite link."),
        url_for("groups.leave", group_id=group_id),
        _("Leave the group"),
        url_for("groups.show", group_id=group_id),
    )


@bp.route("/groups/<id:group_id>/owner", methods=["GET", "POST"])
@login_required
def hand_over(group_id: int) -> ResponseReturnValue:
    """Hand the facilitator role to a member (owner only); GET goes back to the group page."""
    membership = require_owner(group_id)
    form = OwnerForm()
    if form.validate_on_submit():
        try:
            new_owner = rules.hand_over(membership.group, form.user_id.data or 0)
        except RuleError as error:
            db.session.rollback()
            flash(str(error), "warning")
        else:
            db.session.commit()
            flash(
                _(
                    "%(nickname)s facilitates the group now; you are a member.",
                    nickname=new_owner.user.nickname,
                ),
                "success",
            )
    elif form.is_submitted():
        flash(" ".join(map(str, form.user_id.errors)) or _("Choose the member to hand over to."), "warning")
    return redirect(url_for("groups.show", group_id=group_id))


@bp.route("/groups/<id:group_id>/delete", methods=["GET", "POST"])
@login_required
def delete(group_id: int) -> ResponseReturnValue:
    """GET asks for confirmation; POST deletes the group and all it holds (owner only)."""
    membership = require_owner(group_id)
    group = membership.group
    if EmptyForm().validate_on_submit():
        name = rules.delete_group(group)
        db.session.commit()
        flash(_("The group “%(name)s” was deleted.", name=name), "success")
        return redirect(url_for("groups.dashboard"))
    return confirm(
        _("Delete “%(name)s”?", name=group.name),
        " ".join(
            (
                ngettext(
                    "Its %(num)d issue, with its rounds and results,",
                    "Its %(num)d issues, their rounds and results,",
                    len(group.issues),
                ),
                ngettext(
                    "and its %(num)d membership are deleted.",
                    "and its %(num)d memberships are deleted.",
                    len(group.memberships),
                ),
                _("This cannot be undone."),
            )
        ),
        url_for("groups.delete", group_id=group_id),
        _("Delete the group"),
        url_for("groups.show", group_id=group_id),
    )


@bp.route("/groups/<id:group_id>/invite.svg")
@login_required
def invite_qr(group_id: int) -> ResponseReturnValue:
    """The invite link as a QR code (owner only), for people in the room to scan."""
    group = require_owner(group_id).group
    link = url_for("groups.join", token=group.invite_token, _external=True)
    svg = io.BytesIO()
    segno.make(link, error="m").save(svg, kind="svg", scale=6, border=2, title=_("Invite link"))
    response = current_app.response_class(svg.getvalue(), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "private, no-store"  # the link is a secret of the group
    return response
