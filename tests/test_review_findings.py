"""What a review of the room's newest features found: each test shows a problem a facilitator or a
member would meet, and holds the fix to it."""

import sqlalchemy as sa

from estimator.extensions import db
from estimator.models import Ballot, Round
from tests.conftest import add_issue, create_group, join, vote
from tests.helpers import at_once, group_json, issue_json, text, visible


def revealed(team, dave, issue: int, cards=("3", "5", "8")) -> None:
    """The team votes on the issue and the facilitator reveals it."""
    for member, card in zip((team["bob"], team["carol"], dave), cards, strict=True):
        assert vote(member, issue, card).status_code == 302
    assert team["owner"].post(f"/issues/{issue}/reveal").status_code == 302


def test_pressing_record_and_next_twice_does_not_skip_an_issue(app, team, dave):
    owner, group, first = team["owner"], team["group"], team["issue"]
    second = add_issue(app, owner, group, "PROJ-2")
    add_issue(app, owner, group, "PROJ-3")
    owner.post(f"/issues/{first}/start")
    revealed(team, dave, first)
    # A double click, or a reload that sends the form again: the same request twice.
    for _ in range(2):
        response = owner.post(
            f"/issues/{first}/accept?back=room", data={"estimate": "5", "then": "next"}, follow_redirects=True
        )
    assert group_json(owner, group)["current_issue"] == second, "PROJ-2 was skipped, never estimated"
    assert issue_json(owner, first)["final_estimate"] == "5"
    assert "Next: PROJ-3" not in visible(response)


def test_record_and_next_from_an_issue_the_room_has_left_does_not_move_the_room(app, team, dave):
    owner, group, first = team["owner"], team["group"], team["issue"]
    second = add_issue(app, owner, group, "PROJ-2")
    add_issue(app, owner, group, "PROJ-3")
    owner.post(f"/issues/{first}/start")
    revealed(team, dave, first)
    owner.post(f"/issues/{second}/start")  # the team moved on while PROJ-1's page stayed open
    assert vote(team["bob"], second, "3").status_code == 302

    response = owner.post(
        f"/issues/{first}/accept?back=room", data={"estimate": "5", "then": "next"}, follow_redirects=True
    )
    assert issue_json(owner, first)["final_estimate"] == "5", "the estimate is recorded"
    assert group_json(owner, group)["current_issue"] == second, "the half-voted PROJ-2 was left behind"
    assert "stays" in visible(response)


def test_the_total_keeps_estimates_recorded_with_an_earlier_deck(app, team, dave):
    owner, group, first = team["owner"], team["group"], team["issue"]
    second = add_issue(app, owner, group, "PROJ-2")
    revealed(team, dave, first)
    assert owner.post(f"/issues/{first}/accept", data={"estimate": "40"}).status_code == 302
    assert group_json(owner, group)["total"] == 40

    # The team goes on with Fibonacci cards, on which 40 is not a card.
    owner.post(f"/groups/{group}/settings", data={"deck": "fibonacci"})
    assert group_json(owner, group)["total"] == 40, "the recorded 40 vanished from the total"
    revealed(team, dave, second, ("3", "5", "8"))
    assert owner.post(f"/issues/{second}/accept", data={"estimate": "5"}).status_code == 302
    assert group_json(owner, group)["total"] == 45
    assert "Total: 45" in visible(owner.get(f"/groups/{group}/room"))
    assert "Total of the final estimates: 45" in visible(owner.get(f"/groups/{group}"))


def test_sizes_keep_every_recorded_estimate_after_a_deck_change(app, team, dave):
    owner, group, first = team["owner"], team["group"], team["issue"]
    revealed(team, dave, first)
    assert owner.post(f"/issues/{first}/accept", data={"estimate": "5"}).status_code == 302
    owner.post(f"/groups/{group}/settings", data={"deck": "tshirt"})
    assert group_json(owner, group)["total"] == {"5": 1}, "the recorded 5 vanished from the total"
    assert "1 × 5" in visible(owner.get(f"/groups/{group}"))


def test_a_round_voted_in_before_rounds_kept_their_deck_keeps_the_cards_cast_in_it(app, team, dave):
    """A round whose voter left before the upgrade has its threshold fixed but no deck of its own
    (the upgrade gave one only to rounds holding ballots): its next vote must fix it."""
    owner, group, issue = team["owner"], team["group"], team["issue"]
    owner.post(f"/groups/{group}/settings", data={"deck": "fibonacci"})
    assert vote(team["bob"], issue, "5").status_code == 302
    with app.app_context():
        db.session.execute(sa.update(Round).where(Round.issue_id == issue).values(deck=None, cards=None))
        db.session.execute(sa.delete(Ballot))  # Bob's ballot, withdrawn as he left
        db.session.commit()

    assert vote(team["carol"], issue, "8").status_code == 302
    owner.post(f"/groups/{group}/settings", data={"deck": "tshirt"})
    assert issue_json(owner, issue)["deck"] == "fibonacci", "Carol's 8 is now read as a size"
    assert vote(dave, issue, "13").status_code == 302
    assert vote(team["bob"], issue, "5").status_code == 302
    response = owner.post(f"/issues/{issue}/reveal")
    assert response.status_code == 302
    assert issue_json(owner, issue)["result"]["distribution"] == {"5": 1, "8": 1, "13": 1}


def test_an_estimate_imported_from_the_tracker_keeps_its_deck_in_the_total(app, owner):
    from estimator.models import Group
    from estimator.trackers.base import TrackerIssue
    from estimator.trackers.sync import take_in

    group = create_group(owner, deck="modified")
    with app.test_request_context():
        result = take_in(db.session.get_one(Group, group), [TrackerIssue("WEB-1", "Login", "", "40", "1")])
        db.session.commit()
    assert result.estimated == 1
    assert group_json(owner, group)["total"] == 40
    owner.post(f"/groups/{group}/settings", data={"deck": "fibonacci"})
    assert group_json(owner, group)["total"] == 40, "the imported 40 vanished from the total"


def test_with_present_only_a_nudge_is_offered_only_when_someone_here_is_late(app, team, dave, new_client):
    from estimator.live.presence import PresenceBook
    from estimator.models import User

    group, issue, owner = team["group"], team["issue"], team["owner"]
    erin = new_client("Erin")
    assert join(app, erin, group).status_code == 302  # Erin joined but is not here
    owner.post(f"/issues/{issue}/start")
    owner.post(f"/groups/{group}/settings", data={"facilitator_votes": "0", "present_only": ["0", "y"]})
    book = PresenceBook()
    with app.app_context():
        for name in ("Olivia", "Bob", "Carol", "Dave"):
            book.opened(group, db.session.scalars(sa.select(User.id).where(User.nickname == name)).one())
        book.turn(db.engine)
    for member, card in ((team["bob"], "3"), (team["carol"], "5")):
        assert vote(member, issue, card).status_code == 302
    page = text(owner.get(f"/groups/{group}/room"))
    assert f'action="/issues/{issue}/nudge' in page, "Dave is here and has not voted"

    assert vote(dave, issue, "8").status_code == 302
    page = visible(owner.get(f"/groups/{group}/room"))
    assert "Everybody has voted. You can reveal." in page
    assert "Nudge who has not voted" not in page, "only absent Erin is missing: nobody to nudge"
    refused = visible(owner.post(f"/issues/{issue}/nudge?back=room", follow_redirects=True))
    assert "Everybody here has voted: whoever has not is away, so there is nobody to nudge." in refused


def test_two_record_and_next_at_the_same_instant_move_the_room_one_issue(app, team, dave):
    owner, group, first = team["owner"], team["group"], team["issue"]
    second = add_issue(app, owner, group, "PROJ-2")
    add_issue(app, owner, group, "PROJ-3")
    owner.post(f"/issues/{first}/start")
    revealed(team, dave, first)
    tabs = [owner, owner]  # a double click: the same browser sends the form twice at once
    statuses = at_once(
        [
            lambda tab=tab: (
                tab.post(
                    f"/issues/{first}/accept?back=room", data={"estimate": "5", "then": "next"}
                ).status_code
            )
            for tab in tabs
        ]
    )
    assert statuses == [302, 302]
    assert group_json(owner, group)["current_issue"] == second


def test_with_present_only_voters_who_are_away_still_count_as_voters_of_the_group(app, team, dave):
    from estimator.live.presence import PresenceBook
    from estimator.models import User

    group, issue, owner = team["group"], team["issue"], team["owner"]
    owner.post(f"/issues/{issue}/start")
    owner.post(f"/groups/{group}/settings", data={"present_only": ["0", "y"]})
    book = PresenceBook()
    with app.app_context():
        for name in ("Olivia", "Bob"):  # Carol and Dave are away for a moment
            book.opened(group, db.session.scalars(sa.select(User.id).where(User.nickname == name)).one())
        book.turn(db.engine)
    page = visible(owner.get(f"/groups/{group}/room"))
    assert "The reveal opens when at least 3 people other than you have voted: 3 more needed." in page
    assert "invite more" not in page, "three people besides Olivia vote in the group"


def test_a_second_account_made_an_observer_after_voting_stays_marked(app, team, dave, new_client):
    """The facilitator's second account joins mid-round and votes; making it an observer then
    must not take its mark away: its card still counts toward the threshold."""
    owner, group, issue = team["owner"], team["group"], team["issue"]
    owner.post(f"/issues/{issue}/start")
    assert vote(team["bob"], issue, "34").status_code == 302  # the round is open
    olly = new_client("Olly")
    assert join(app, olly, group).status_code == 302
    assert vote(olly, issue, "1").status_code == 302
    olly_id = next(m["user_id"] for m in members(app, group) if m["nickname"] == "Olly")
    assert owner.post(f"/groups/{group}/members/{olly_id}/role", data={"role": "observer"}).status_code == 302
    for viewer in (owner, team["bob"], team["carol"]):
        page = text(viewer.get(f"/groups/{group}/room"))
        assert page.count("joined during this round") == 1, "Olly's card is in the round: he stays marked"


def members(app, group: int) -> list[dict[str, object]]:
    from estimator.models import Membership, User

    with app.app_context():
        rows = db.session.execute(
            sa.select(User.id, User.nickname).join(Membership).where(Membership.group_id == group)
        )
        return [{"user_id": user_id, "nickname": nickname} for user_id, nickname in rows]


def test_a_key_that_normalizes_to_a_lone_mark_is_refused(app, team):
    """ "¨" passes the form's check, but kept in NFKC it is a space and a lone diaeresis."""
    owner, group = team["owner"], team["group"]
    before = group_json(owner, group)["issues"]
    for key in ("¨", "῭", "A-1 ῁"):
        response = owner.post(f"/groups/{group}/issues", data={"key": key, "description": ""})
        assert response.status_code == 422, key
        assert "mark on its own" in visible(response) or "cannot be empty" in visible(response)
    assert group_json(owner, group)["issues"] == before
