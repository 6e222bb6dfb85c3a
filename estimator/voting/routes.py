"""Issue status, secret estimates, reveal, final estimate, re-vote, and the room."""

from typing import Any, NamedTuple

import sqlalchemy as sa
from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_login import current_user, login_required

from ..auth.session import session_claim
from ..changes import RuleError
from ..database import locks_later
from ..estimates import deck_named, total
from ..extensions import db, login_manager
from ..forms import EmptyForm
from ..groups.forms import SettingsForm
from ..groups.routes import confirm
from ..live import Seat, live_context, live_view, present_users, reused
from ..models import Group, Issue, IssueState, Membership, Round
from ..permissions import ensure_owner, ensure_voter, require_member, require_owner
from ..trackers.base import TrackerError
from ..trackers.sync import Outgoing, automatic, deliver
from . import bp, rules
from .booth import open_booth
from .forms import AcceptForm, EstimateForm, TimerForm
from .state import (
    issue_state,
    joined_late,
    load_current_issue,
    load_issue,
    read_round_again,
    seconds_left,
    voted_now,
)

#: The answer to every accepted vote, whatever the card: nothing in it varies with the card.
VOTE_RECORDED = _l("Your vote is recorded. Only you can see your card; you can change it until the reveal.")


def member_issue(issue_id: int) -> tuple[Issue, Membership]:
    """The issue with everything its pages show, and the current user's membership (or 404)."""
    issue = load_issue(issue_id)
    if issue is None:
        abort(404)
    return issue, require_member(issue.group_id)


def wants_json() -> bool:
    """Whether the request came from the page's script rather than a plain form."""
    return request.accept_mimetypes.best == "application/json"


def issue_page(
    issue: Issue,
    seat: Membership | Seat,
    own: rules.OwnBallot | None,
    accept_form: AcceptForm | None = None,
    present: set[int] | None = None,
) -> dict[str, Any]:
    """What the issue's pages and the room share: the state, the voter's own ballot (`own`: on
    a page for one viewer, never in shared regions), the facilitator's form and the timer.
    `present`: who has the group open, when the caller read it already."""
    voted = voted_now(issue)
    state = issue_state(issue, voted)
    if present is None:
        present = present_users(issue.group_id)
    expected = rules.expected_voters(issue, present)
    if accept_form is None:
        suggestion = (state["result"] or {}).get("suggestion")
        accept_form = AcceptForm(issue.deck_rules, formdata=None, estimate=issue.final_estimate or suggestion)
    return {
        "issue": issue,
        "group": issue.group,
        "state": state,
        "deck": issue.deck_rules,
        "membership": seat,
        "own": own,
        "lost_ballots": issue.current_round.lost_ballots,
        "reveal": rules.reveal_check(issue, voted, expected),
        "present": {m.user.nickname for m in issue.group.memberships if m.user_id in present},
        "nudged": rules.waiting_for(issue, voted, expected),
        "joined_late": joined_late(issue),
        "restarts": issue.current_round.restarts,
        "timer_left": seconds_left(issue.current_round),
        "accept_form": accept_form,
    }


@live_view(
    "issue",
    "voting/status.html",
    ("heading", "details", "small-votes", "timer", "vote", "result", "controls", "voters", "history"),
)
def status_context(group_id: int, issue_id: int | None, role: str) -> dict[str, Any] | None:
    """What the status page of an issue shows a viewer in this role (their own card aside)."""
    if issue_id is None:
        return None
    loaded = reused("issue", lambda: Loaded(load_issue(issue_id), present_users(group_id)), read_again)
    issue = loaded.issue
    if issue is None or issue.group_id != group_id:
        return None
    return status_page(issue, Seat.of(role, issue.group.facilitator_votes), None, present=loaded.present)


class Loaded(NamedTuple):
    """What a live view's build reads of its group before it derives anything: all of it stays as
    it is while only ballots are added (live/reuse.py keeps it for such versions; presence, like
    any change but a ballot, is a version of its own)."""

    issue: Issue | None
    #: Who has the group open (present_users).
    present: set[int]
    #: The rows of the group's backlog (backlog_of), for the room.
    backlog: list[Any] | None = None


def read_again(loaded: Loaded) -> int | None:
    """Read the loaded issue's open round again (read_round_again); None without an issue."""
    return read_round_again(loaded.issue) if loaded.issue is not None else None


def status_page(
    issue: Issue,
    seat: Membership | Seat,
    own: rules.OwnBallot | None,
    accept_form: AcceptForm | None = None,
    present: set[int] | None = None,
) -> dict[str, Any]:
    """The status page's template context."""
    page = issue_page(issue, seat, own, accept_form, present)
    history = [(h["round"], h["result"]) for h in reversed(page["state"]["history"])]
    return page | {"history": history}


def render_status(
    issue: Issue, membership: Membership, *, accept_form: AcceptForm | None = None, status: int = 200
) -> ResponseReturnValue:
    """The status page: who has voted, progress, result and history, the owner's controls."""
    page = status_page(issue, membership, rules.own_ballot(issue.current_round, current_user.id), accept_form)
    live = live_context(f"issue-{issue.id}", issue.group_id, issue.group.version)
    return render_template("voting/status.html", **page, **live), status


def back_to(issue: Issue) -> ResponseReturnValue:
    """Where a facilitator's step returns: the room when it was taken there, else the status page."""
    if request.args.get("back") == "room":
        return redirect(url_for("voting.room", group_id=issue.group_id))
    return redirect(url_for("voting.status", issue_id=issue.id))


#: The regions of the room, as its template names them.
ROOM_REGIONS = (
    "room-heading",
    "room-details",
    "small-votes",
    "timer",
    "vote",
    "result",
    "controls",
    "voters",
)


@live_view("room", "voting/room.html", ROOM_REGIONS)
def room_context(group_id: int, _arg: int | None, role: str) -> dict[str, Any] | None:
    """What the room shows a viewer in this role (their own card aside)."""
    loaded = reused("room", lambda: load_room(group_id), read_again)
    group = loaded.issue.group if loaded.issue is not None else db.session.get(Group, group_id)
    if group is None:
        return None
    seat = Seat.of(role, group.facilitator_votes)
    return room_page(group, seat, None, loaded.issue, loaded.backlog, loaded.present)


def load_room(group_id: int) -> Loaded:
    """The room's issue (None when it has none), loaded with its group in one statement, who has
    the group open, and the rows of its backlog."""
    return Loaded(load_current_issue(group_id), present_users(group_id), backlog_of(group_id))


_other = sa.orm.aliased(Round)
_LATEST = sa.select(sa.func.max(_other.number)).where(_other.issue_id == Issue.id).scalar_subquery()
#: Each issue of a group with its latest round's deck (made once, as the issue's statements in
#: state.py are).
BACKLOG = (
    sa.select(Issue.state, Issue.final_estimate, Round.deck, Round.cards)
    .join(Round, (Round.issue_id == Issue.id) & (Round.number == _LATEST))
    .where(Issue.group_id == sa.bindparam("group_id"))
)


def backlog_of(group_id: int) -> list[Any]:
    """Each issue of the group: its state, its final estimate, its latest round's deck."""
    return list(db.session.execute(BACKLOG, {"group_id": group_id}).all())


def room_page(
    group: Group,
    seat: Membership | Seat,
    viewer_id: int | None,
    issue: Issue | None = None,
    backlog: list[Any] | None = None,
    present: set[int] | None = None,
) -> dict[str, Any]:
    """The room's template context; the own card of `viewer_id` when the page is theirs alone.
    `issue`, `backlog` and `present`: the room's current issue (load_current_issue), the backlog's
    rows (backlog_of) and who has the group open, when the caller has them already."""
    if issue is None and group.current_issue_id:
        issue = load_issue(group.current_issue_id)
    if issue is not None:
        own = rules.own_ballot(issue.current_round, viewer_id) if viewer_id else None
        page = issue_page(issue, seat, own, present=present)
    else:
        present = present_users(group.id) if present is None else present
        page = {
            "group": group,
            "membership": seat,
            "own": rules.OwnBallot() if viewer_id else None,
            "present": {m.user.nickname for m in group.memberships if m.user_id in present},
        }
    # plain rows: the room needs only how many there are, what was recorded and with which deck
    if backlog is None:
        backlog = backlog_of(group.id)
    estimated = sum(1 for state, *_rest in backlog if state == IssueState.ESTIMATED)
    finals = [
        (final, deck_named(deck, cards) if deck else group.deck_rules)
        for _state, final, deck, cards in backlog
        if final
    ]
    return page | {
        "room_issue": issue,
        "issue_count": len(backlog),
        "estimated_count": estimated,
        "total": total(group.deck_rules, finals),
    }


@bp.route("/groups/<id:group_id>/room")
@login_required
def room(group_id: int) -> ResponseReturnValue:
    """The room: the issue the facilitator has the team on, and everything to estimate it."""
    membership = require_member(group_id)
    group = membership.group
    page = room_page(group, membership, current_user.id)
    settings_form = SettingsForm(obj=group) if membership.is_owner else None
    return render_template(
        "voting/room.html",
        **page,
        settings_form=settings_form,
        **live_context("room", group.id, group.version),
    )


@bp.route("/issues/<id:issue_id>/start", methods=["GET", "POST"])
@login_required
def start(issue_id: int) -> ResponseReturnValue:
    """Put the issue in the room (owner only): everybody's room follows; GET goes to the room."""
    issue, membership = member_issue(issue_id)
    ensure_owner(membership)
    if EmptyForm().validate_on_submit():
        rules.start(issue)
        db.session.commit()
        flash(_("%(key)s is in the room: the team can vote.", key=issue.key), "success")
    return redirect(url_for("voting.room", group_id=issue.group_id))


@bp.route("/groups/<id:group_id>/next", methods=["GET", "POST"])
@login_required
def next_issue(group_id: int) -> ResponseReturnValue:
    """Move the room to the next issue not yet estimated (owner only); GET goes to the room."""
    membership = require_owner(group_id)
    if EmptyForm().validate_on_submit():
        current = membership.group.current_issue
        if current is not None and current.state == IssueState.VOTING and request.form.get("confirm") != "1":
            state = issue_state(current)
            if 0 < state["votes_cast"] < state["votes_expected"]:  # a half-voted issue left behind: ask
                return confirm(
                    _("Move on from %(key)s?", key=current.key),
                    _(
                        "Only %(cast)d of %(expected)d have voted on %(key)s, and its round is not revealed. "
                        "The votes cast so far stay in the round for when you come back to it.",
                        cast=state["votes_cast"],
                        expected=state["votes_expected"],
                        key=current.key,
                    ),
                    url_for("voting.next_issue", group_id=group_id),
                    _("Move on to the next issue"),
                    url_for("voting.room", group_id=group_id),
                    fields={"confirm": "1"},
                    button_class="btn-primary",
                )
        issue = rules.next_issue(membership.group)
        db.session.commit()
        if issue is None and membership.group.issues:
            flash(_("Every issue is estimated: the session is done."), "success")
        elif issue is None:
            flash(_("The backlog is empty: add issues on the group page first."), "info")
    return redirect(url_for("voting.room", group_id=group_id))


@bp.route("/issues/<id:issue_id>/timer", methods=["GET", "POST"])
@login_required
def timer(issue_id: int) -> ResponseReturnValue:
    """Start a countdown for the open round, or stop it with 0 (owner only)."""
    issue, membership = member_issue(issue_id)
    ensure_owner(membership)
    form = TimerForm()
    if not form.is_submitted():
        return back_to(issue)
    if not form.validate():
        flash(" ".join(map(str, form.seconds.errors)) or _("Please try again."), "warning")
        return back_to(issue)
    try:
        ends = rules.set_timer(issue, form.seconds.data or 0)
    except RuleError as error:
        db.session.rollback()
        flash(str(error), "warning")
    else:
        db.session.commit()
        flash(_("The timer is running.") if ends else _("The timer is stopped."), "success")
    return back_to(issue)


@bp.route("/issues/<id:issue_id>")
@login_required
def status(issue_id: int) -> ResponseReturnValue:
    """Who has voted (never what), progress, and after the reveal the anonymous result."""
    return render_status(*member_issue(issue_id))


@bp.route("/issues/<id:issue_id>/estimate", methods=["GET", "POST"])
@locks_later
def estimate(issue_id: int) -> ResponseReturnValue:
    """GET shows the deck; POST seals (or replaces) the voter's secret card.

    A vote reads in one query what it checks, the login the session cookie claims included
    (open_booth), then writes. On PostgreSQL most votes read at a glance and write in one statement
    that holds the group's lock and writes only if the group is still as read; any other vote, or
    one whose group changed in between, is cast again under the group's lock held for it all.
    """
    if request.method == "GET":
        return deck_page(issue_id)  # type: ignore[no-any-return]
    try:
        return cast(issue_id, glance=True)
    except rules.LockNeeded:
        return cast(issue_id, glance=False)


def cast(issue_id: int, *, glance: bool) -> ResponseReturnValue:
    """A vote from a booth read at a glance or under the group's lock (see open_booth)."""
    claim = session_claim()
    booth = open_booth(issue_id, claim, glance=glance) if claim is not None else None
    if booth is None or not booth.logged_in:
        if not current_user.is_authenticated:
            return login_manager.unauthorized()  # type: ignore[no-any-return]
        abort(404)
    if booth.role is None:
        abort(404)
    ensure_voter(booth)
    form = EstimateForm(booth.deck)
    if not form.validate_on_submit():
        code = 422
    else:
        try:
            rules.cast_vote(booth, form.value.data or "")
        except RuleError as error:
            db.session.rollback()
            form.value.errors = [*form.value.errors, str(error)]
            code = 409
        else:
            db.session.commit()
            if wants_json():
                return jsonify(message=str(VOTE_RECORDED))
            flash(str(VOTE_RECORDED), "success")
            return redirect(url_for("voting.status", issue_id=issue_id))
    if wants_json():
        return jsonify(error=" ".join(map(str, form.value.errors)) or _("Please try again.")), code
    return ballot_page(issue_id, form, code)


@login_required
def deck_page(issue_id: int) -> ResponseReturnValue:
    """The deck to choose a card from."""
    issue, membership = member_issue(issue_id)
    ensure_voter(membership)
    return ballot_page(issue_id, EstimateForm(issue.deck_rules), 200)


def ballot_page(issue_id: int, form: EstimateForm, code: int) -> ResponseReturnValue:
    """The issue with the voter's deck, and what was wrong with a refused card."""
    issue, membership = member_issue(issue_id)
    page = issue_page(issue, membership, rules.own_ballot(issue.current_round, current_user.id))
    return render_template("voting/estimate.html", **page, form=form), code


def owner_step(issue_id: int, step: str) -> ResponseReturnValue:
    """Run an owner's button-only step on the issue; a refused step is explained and changes nothing."""
    issue, membership = member_issue(issue_id)
    ensure_owner(membership)
    if EmptyForm().validate_on_submit():
        try:
            message = STEPS[step](issue)
        except RuleError as error:
            db.session.rollback()
            flash(str(error), "warning")
        else:
            db.session.commit()
            flash(message, "success")
    return back_to(issue)


def _reveal(issue: Issue) -> str:
    round_ = rules.reveal(issue)
    if round_.lost_ballots:
        return str(
            ngettext(
                "Votes revealed. %(num)d vote could not be read because the ballot key store restarted, "
                "and is not counted.",
                "Votes revealed. %(num)d votes could not be read because the ballot key store restarted, "
                "and are not counted.",
                round_.lost_ballots,
            )
        )
    return str(_("Votes revealed. Nobody's card can be traced back to them."))


def _revote(issue: Issue) -> str:
    return str(_("Round %(number)d is open: everybody votes again.", number=rules.revote(issue).number))


def _nudge(issue: Issue) -> str:
    names = rules.nudge(issue)
    return str(
        ngettext(
            "Nudged %(names)s: their screen now says the team is waiting for their vote.",
            "Nudged %(names)s: their screens now say the team is waiting for their votes.",
            len(names),
            names=", ".join(names),
        )
    )


def _restart(issue: Issue) -> str:
    rules.restart(issue)
    return str(
        _(
            "Round %(number)d starts over: every vote was discarded unread, and everybody votes again.",
            number=issue.current_round.number,
        )
    )


STEPS = {"reveal": _reveal, "revote": _revote, "restart": _restart, "nudge": _nudge}


@bp.route("/issues/<id:issue_id>/reveal", methods=["GET", "POST"])
@login_required
def reveal(issue_id: int) -> ResponseReturnValue:
    """Reveal the round's anonymous result (owner only); GET goes back to the status page."""
    return owner_step(issue_id, "reveal")


@bp.route("/issues/<id:issue_id>/revote", methods=["GET", "POST"])
@login_required
def revote(issue_id: int) -> ResponseReturnValue:
    """Start a new round (owner only); GET goes back to the status page."""
    return owner_step(issue_id, "revote")


@bp.route("/issues/<id:issue_id>/restart", methods=["GET", "POST"])
@login_required
def restart(issue_id: int) -> ResponseReturnValue:
    """Start the open round over, discarding every ballot unread (owner only); GET goes back."""
    return owner_step(issue_id, "restart")


@bp.route("/issues/<id:issue_id>/nudge", methods=["GET", "POST"])
@login_required
def nudge(issue_id: int) -> ResponseReturnValue:
    """Nudge the voters who have not voted (owner only); GET goes back."""
    return owner_step(issue_id, "nudge")


@bp.route("/issues/<id:issue_id>/accept", methods=["GET", "POST"])
@login_required
def accept(issue_id: int) -> ResponseReturnValue:
    """Record the final estimate (owner only); GET goes back to the status page."""
    issue, membership = member_issue(issue_id)
    ensure_owner(membership)
    form = AcceptForm(issue.deck_rules)
    if not form.is_submitted():
        return back_to(issue)
    if not form.validate():
        return render_status(issue, membership, accept_form=form, status=422)
    try:
        rules.accept(issue, form.estimate.data or "")
        db.session.flush()  # moving on locks the group again, which reads it afresh
        # "Record and next issue": one step where the meeting takes two, and only from the issue
        # the room is on (read under the group's lock): the same form sent twice, or from a page
        # the room has left, would otherwise move the room past an issue nobody estimated.
        asked_next = request.form.get("then") == "next"
        moving_on = asked_next and issue.group.current_issue_id == issue.id
        following = rules.next_issue(issue.group) if moving_on else None
    except RuleError as error:
        db.session.rollback()
        flash(str(error), "warning")
    else:
        sending, problem = to_send(issue)
        key, final = issue.key, issue.final_estimate
        message = _("Final estimate for %(key)s: %(estimate)s.", key=key, estimate=final)
        if moving_on:
            more = _("Next: %(key)s.", key=following.key) if following else _("Every issue is estimated.")
            message = f"{message} {more}"
        elif asked_next:
            message = f"{message} {_('The room is not on %(key)s, so it stays where it is.', key=key)}"
        db.session.commit()  # read nothing more before the tracker is asked: no lock is held then
        flash(message, "success")
        if sending is not None:
            problem = send_recorded(sending, key)
        if problem is not None:
            flash(
                _("The estimate is recorded but was not sent to the tracker. %(reason)s", reason=problem),
                "warning",
            )
    return back_to(issue)


def to_send(issue: Issue) -> tuple[Outgoing | None, str | None]:
    """What the group sends to its tracker automatically once the estimate is recorded (read before
    the commit, so that nothing is read while the tracker is asked), or why it cannot."""
    try:
        return automatic(issue), None
    except TrackerError as error:
        return None, str(error)


def send_recorded(sending: Outgoing, key: str) -> str | None:
    """Send a recorded estimate; None when the tracker took it, else why not."""
    try:
        deliver(sending)
    except TrackerError as error:
        return str(error)
    flash(_("Sent %(estimate)s to the tracker for %(key)s.", estimate=sending.value, key=key), "success")
    return None
