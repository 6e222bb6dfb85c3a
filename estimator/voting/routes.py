"""Issue status, secret estimates, reveal, final estimate and re-vote."""

from typing import Any

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from ..changes import RuleError
from ..estimates import DECKS
from ..extensions import db
from ..forms import EmptyForm
from ..live import key_ids_of, live_context
from ..models import Issue, Membership
from ..permissions import ensure_owner, ensure_voter, require_member
from . import bp, rules
from .forms import AcceptForm, EstimateForm
from .state import issue_state, load_issue

#: The answer to every accepted vote, whatever the card: nothing in it varies with the card.
VOTE_RECORDED = "Your vote is recorded. Only you can see your card; you can change it until the reveal."


def member_issue(issue_id: int) -> tuple[Issue, Membership]:
    """The issue with everything its pages show, and the current user's membership (or 404)."""
    issue = load_issue(issue_id)
    if issue is None:
        abort(404)
    return issue, require_member(issue.group_id)


def wants_json() -> bool:
    """Whether the request came from the page's script rather than a plain form."""
    return request.accept_mimetypes.best == "application/json"


def issue_page(issue: Issue, membership: Membership) -> dict[str, Any]:
    """What the status and estimate pages share: the state, the voter's own ballot, the live link."""
    return {
        "issue": issue,
        "group": issue.group,
        "state": issue_state(issue),
        "deck": DECKS[issue.group.deck],
        "membership": membership,
        "own": rules.own_ballot(issue.current_round, current_user.id),
        "lost_ballots": issue.current_round.lost_ballots,
        "threshold": rules.reveal_threshold(issue),
        **live_context("issue", issue.id, issue.group.version, key_ids_of([issue.current_round])),
    }


def render_status(
    issue: Issue, membership: Membership, *, accept_form: AcceptForm | None = None, status: int = 200
) -> ResponseReturnValue:
    """The status page: who has voted, progress, result and history, the owner's controls."""
    page = issue_page(issue, membership)
    state = page["state"]
    if accept_form is None:
        suggestion = (state["result"] or {}).get("suggestion")
        accept_form = AcceptForm(
            DECKS[issue.group.deck], formdata=None, estimate=issue.final_estimate or suggestion
        )
    history = [(h["round"], h["result"]) for h in reversed(state["history"])]
    return render_template("voting/status.html", **page, accept_form=accept_form, history=history), status


@bp.route("/issues/<id:issue_id>")
@login_required
def status(issue_id: int) -> ResponseReturnValue:
    """Who has voted (never what), progress, and after the reveal the anonymous result."""
    return render_status(*member_issue(issue_id))


@bp.route("/issues/<id:issue_id>/estimate", methods=["GET", "POST"])
@login_required
def estimate(issue_id: int) -> ResponseReturnValue:
    """GET shows the deck; POST seals (or replaces) the voter's secret card."""
    issue, membership = member_issue(issue_id)
    ensure_voter(membership)
    form = EstimateForm(DECKS[issue.group.deck])
    code = 200
    if form.validate_on_submit():
        try:
            rules.cast_vote(issue, current_user, form.value.data or "")
        except RuleError as error:
            db.session.rollback()
            form.value.errors = [*form.value.errors, str(error)]
            code = 409
        else:
            db.session.commit()
            if wants_json():
                return jsonify(message=VOTE_RECORDED)
            flash(VOTE_RECORDED, "success")
            return redirect(url_for("voting.status", issue_id=issue_id))
    elif form.is_submitted():
        code = 422
    if wants_json() and code != 200:
        return jsonify(error=" ".join(form.value.errors) or "Please try again."), code
    issue, membership = member_issue(issue_id)
    return render_template("voting/estimate.html", **issue_page(issue, membership), form=form), code


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
    return redirect(url_for("voting.status", issue_id=issue_id))


def _reveal(issue: Issue) -> str:
    round_ = rules.reveal(issue)
    if round_.lost_ballots:
        return (
            f"Votes revealed. {round_.lost_ballots} vote(s) could not be read because the ballot key "
            "store restarted, and are not counted."
        )
    return "Votes revealed. Nobody's card can be traced back to them."


def _revote(issue: Issue) -> str:
    return f"Round {rules.revote(issue).number} is open: everybody votes again."


STEPS = {"reveal": _reveal, "revote": _revote}


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


@bp.route("/issues/<id:issue_id>/accept", methods=["GET", "POST"])
@login_required
def accept(issue_id: int) -> ResponseReturnValue:
    """Record the final estimate (owner only); GET goes back to the status page."""
    issue, membership = member_issue(issue_id)
    ensure_owner(membership)
    form = AcceptForm(DECKS[issue.group.deck])
    if not form.is_submitted():
        return redirect(url_for("voting.status", issue_id=issue_id))
    if not form.validate():
        return render_status(issue, membership, accept_form=form, status=422)
    try:
        rules.accept(issue, form.estimate.data or "")
    except RuleError as error:
        db.session.rollback()
        flash(str(error), "warning")
    else:
        db.session.commit()
        flash(f"Final estimate for {issue.key}: {issue.final_estimate}.", "success")
    return redirect(url_for("voting.status", issue_id=issue_id))
