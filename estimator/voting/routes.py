"""Issue status, secret estimates, reveal, final estimate and re-vote."""

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..changes import commit_or_explain
from ..estimates import DECKS, UNSURE
from ..extensions import db
from ..forms import EmptyForm
from ..live import live_context
from ..models import Issue, Membership
from ..permissions import ensure_owner, ensure_voter, require_member
from . import bp
from .forms import AcceptForm, EstimateForm
from .rules import VotingError, accept, cast_vote, reveal, revote
from .state import issue_state, load_issue


def member_issue(issue_id: int) -> tuple[Issue, Membership]:
    """The issue with everything its pages show, and the current user's membership (or 404)."""
    issue = load_issue(issue_id)
    if issue is None:
        abort(404)
    return issue, require_member(issue.group_id)


def own_card(issue: Issue) -> str | None:
    """The current user's card in the open round: the only card anyone is ever shown."""
    for ballot in issue.current_round.ballots:
        if ballot.user_id == current_user.id:
            return ballot.card
    return None


def wants_json() -> bool:
    """Whether the request came from the page's script rather than a plain form."""
    return request.accept_mimetypes.best == "application/json"


def render_status(
    issue: Issue, membership: Membership, *, accept_form: AcceptForm | None = None, status: int = 200
):
    """The status page: who has voted, progress, result and history, the owner's controls."""
    deck = DECKS[issue.group.deck]
    state = issue_state(issue)
    if accept_form is None:
        accept_form = AcceptForm(
            deck, formdata=None, estimate=issue.final_estimate or (state["result"] or {}).get("suggestion")
        )
    return render_template(
        "voting/status.html",
        issue=issue,
        group=issue.group,
        state=state,
        deck=deck,
        membership=membership,
        my_card=own_card(issue),
        accept_form=accept_form,
        **live_context("issue", issue.id, issue.group.version),
        # the same aggregates the API sends, computed once (templates read dicts like objects)
        history=[(h["round"], h["result"]) for h in reversed(state["history"])],
        result=state["result"],
    ), status


@bp.route("/issues/<id:issue_id>")
@login_required
def status(issue_id: int):
    """Who has voted (never what), progress, and after the reveal the anonymous result."""
    return render_status(*member_issue(issue_id))


@bp.route("/issues/<id:issue_id>/estimate", methods=["GET", "POST"])
@login_required
def estimate(issue_id: int):
    """GET shows the deck; POST records (or replaces) the voter's secret card."""
    issue, membership = member_issue(issue_id)
    ensure_voter(membership)
    deck = DECKS[issue.group.deck]
    form = EstimateForm(deck)
    code = 200
    if form.validate_on_submit():
        try:
            cast_vote(issue, current_user, form.value.data)
        except VotingError as error:
            db.session.rollback()
            form.value.errors.append(str(error))
            code = 409
        else:
            db.session.commit()
            card = form.value.data
            message = (
                "You voted ? (not sure)." if card == UNSURE else f"You voted {card}."
            ) + " You can change your vote until the reveal."
            if wants_json():
                return jsonify(card=card, message=message)
            flash(message, "success")
            return redirect(url_for("voting.status", issue_id=issue_id))
    elif form.is_submitted():
        code = 422
    if wants_json() and code != 200:
        return jsonify(error=" ".join(form.value.errors) or "Please try again."), code
    issue, membership = member_issue(issue_id)
    return render_template(
        "voting/estimate.html",
        issue=issue,
        group=issue.group,
        deck=deck,
        form=form,
        my_card=own_card(issue),
        state=issue_state(issue),
        **live_context("issue", issue.id, issue.group.version),
    ), code


def owner_action(issue_id: int, action) -> None:
    """Run an owner's button-only step on the issue; a refused step is explained and changes nothing."""
    issue, membership = member_issue(issue_id)
    ensure_owner(membership)
    if EmptyForm().validate_on_submit():
        commit_or_explain(lambda: action(issue))


@bp.route("/issues/<id:issue_id>/reveal", methods=["GET", "POST"])
@login_required
def reveal_view(issue_id: int):
    """Reveal the round's anonymous result (owner only); GET goes back to the status page."""

    def do_reveal(issue: Issue) -> str:
        reveal(issue)
        return "Votes revealed. Nobody's card can be traced back to them."

    owner_action(issue_id, do_reveal)
    return redirect(url_for("voting.status", issue_id=issue_id))


@bp.route("/issues/<id:issue_id>/revote", methods=["GET", "POST"])
@login_required
def revote_view(issue_id: int):
    """Start a new round (owner only); GET goes back to the status page."""

    def do_revote(issue: Issue) -> str:
        new_round = revote(issue)
        return f"Round {new_round.number} is open: everybody votes again."

    owner_action(issue_id, do_revote)
    return redirect(url_for("voting.status", issue_id=issue_id))


@bp.route("/issues/<id:issue_id>/accept", methods=["GET", "POST"])
@login_required
def accept_view(issue_id: int):
    """Record the final estimate (owner only); GET goes back to the status page."""
    issue, membership = member_issue(issue_id)
    ensure_owner(membership)
    form = AcceptForm(DECKS[issue.group.deck])
    if not form.is_submitted():
        return redirect(url_for("voting.status", issue_id=issue_id))
    if not form.validate():
        return render_status(issue, membership, accept_form=form, status=422)

    def record() -> str:
        accept(issue, form.estimate.data)
        return f"Final estimate for {issue.key}: {issue.final_estimate}."

    commit_or_explain(record)
    return redirect(url_for("voting.status", issue_id=issue_id))
