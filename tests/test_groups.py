"""Groups: creating, the group page, invite links, joining, issues and members."""

import html
import re
import threading
import unicodedata

import pytest
import sqlalchemy as sa

from estimator.extensions import db
from estimator.models import Group, Issue, Membership
from tests.conftest import add_issue, create_group, invite_path, join


def count(app, model) -> int:
    with app.app_context():
        return db.session.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()


def test_create_group_and_see_its_page_with_invite_link(app, owner):
    group_id = create_group(owner, "Team Rocket", "fibonacci")
    page = owner.get(f"/groups/{group_id}").get_data(as_text=True)
    assert "Team Rocket" in page and "Fibonacci" in page
    assert f"http://localhost{invite_path(app, group_id)}" in page
    assert "Add an issue" in page and "Olivia" in page and "facilitator" in page
    assert "Team Rocket" in owner.get("/").get_data(as_text=True)


def test_deck_defaults_to_range(app, owner):
    response = owner.post("/groups", data={"name": "No deck given"})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(Group.deck)) == "range"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "", "deck": "range"}, "cannot be empty"),
        ({"name": "   ", "deck": "range"}, "cannot be empty"),
        ({"name": "x" * 81, "deck": "range"}, "at most 80"),
        ({"name": "ok", "deck": "poker"}, "Not a valid choice"),
        ({"name": "a\x07b", "deck": "range"}, "control characters"),
    ],
)
def test_bad_group_forms_change_nothing(app, owner, data, message):
    response = owner.post("/groups", data=data)
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert count(app, Group) == 0


def test_get_on_post_only_routes_redirects_to_their_form(app, team):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    expected = {
        "/groups": "/",
        f"/groups/{group}/issues": f"/groups/{group}",
        f"/groups/{group}/invite": f"/groups/{group}",
        f"/groups/{group}/members/1/role": f"/groups/{group}",
        f"/groups/{group}/members/1/remove": f"/groups/{group}",
        f"/issues/{issue}/reveal": f"/issues/{issue}",
        f"/issues/{issue}/accept": f"/issues/{issue}",
        f"/issues/{issue}/revote": f"/issues/{issue}",
    }
    for path, target in expected.items():
        response = owner.get(path)
        assert (response.status_code, response.headers["Location"]) == (302, target), path


def test_post_only_route_via_login_comes_back_to_its_form(app, team):
    browser = team["owner"]  # logged out, Olivia's browser still holds her nickname
    browser.post("/logout")
    response = browser.get(f"/groups/{team['group']}/issues")
    assert response.status_code == 302 and "/login?next=" in response.headers["Location"]
    response = browser.post(response.headers["Location"], data={"nickname": "Olivia"})
    response = browser.get(response.headers["Location"])
    assert response.headers["Location"] == f"/groups/{team['group']}"


def test_invite_flow_through_login(app, owner):
    group_id = create_group(owner, "Rockets")
    path = invite_path(app, group_id)
    bob = app.test_client()
    response = bob.get(path)
    assert response.status_code == 302
    response = bob.post(response.headers["Location"], data={"nickname": "Bob"})
    assert response.headers["Location"] == path
    page = bob.get(path).get_data(as_text=True)
    assert "Join “Rockets”?" in page
    assert count(app, Membership) == 1  # GET joined nobody
    response = bob.post(path, data={"role": "member"})
    assert response.headers["Location"] == f"/groups/{group_id}"
    page = bob.get(f"/groups/{group_id}").get_data(as_text=True)
    assert "Bob" in page and "Add an issue" not in page and "Invite link" not in page
    again = bob.get(path)
    assert again.status_code == 409 and "already a member" in again.get_data(as_text=True)
    assert bob.post(path, data={"role": "member"}).status_code == 409
    assert count(app, Membership) == 2


def test_unknown_invite_is_404(owner):
    assert owner.get("/join/not-a-real-token").status_code == 404
    assert owner.post("/join/not-a-real-token").status_code == 404


def test_join_as_observer(app, team, new_client):
    dora = new_client("Dora")
    assert join(app, dora, team["group"], role="observer").status_code == 302
    page = dora.get(f"/issues/{team['issue']}").get_data(as_text=True)
    assert "You are observing" in page
    assert dora.post(f"/issues/{team['issue']}/estimate", data={"value": "3"}).status_code == 403
    assert "0 of 3" in page  # observers are never waited for


def test_joining_lands_on_the_group_page_or_in_the_room_when_a_meeting_is_on(app, team, new_client):
    dora = new_client("Dora")
    response = join(app, dora, team["group"])
    assert response.headers["Location"] == f"/groups/{team['group']}"
    assert team["owner"].post(f"/issues/{team['issue']}/start").status_code == 302
    erin = new_client("Erin")
    response = join(app, erin, team["group"])
    assert response.headers["Location"] == f"/groups/{team['group']}/room"
    room = erin.get(response.headers["Location"]).get_data(as_text=True)
    assert "You joined" in room and "PROJ-1" in room


def test_an_issue_nobody_voted_on_reads_not_started_until_the_first_vote(app, team):
    def listed() -> str:
        page = html.unescape(team["owner"].get(f"/groups/{team['group']}").get_data(as_text=True))
        return " ".join(re.sub(r"<[^>]+>", " ", page[page.index('id="issue-') :].split("</li>")[0]).split())

    assert "not started" in listed() and "voted" not in listed()
    vote = team["bob"].post(f"/issues/{team['issue']}/estimate", data={"value": "5"})
    assert vote.status_code in (200, 302)
    assert "not started" not in listed() and "voting" in listed() and "1 of 3 voted" in listed()


def test_join_with_an_invalid_role_changes_nothing(app, owner, new_client):
    group_id = create_group(owner)
    eve = new_client("Eve")
    response = join(app, eve, group_id, role="owner")
    assert response.status_code == 422
    assert count(app, Membership) == 1


def test_regenerated_invite_kills_the_old_link(app, owner, new_client):
    group_id = create_group(owner)
    old = invite_path(app, group_id)
    assert owner.post(f"/groups/{group_id}/invite").status_code == 302
    new = invite_path(app, group_id)
    assert new != old and len(new.rsplit("/", 1)[1]) >= 22  # at least 128 bits, URL-safe
    fred = new_client("Fred")
    assert fred.get(old).status_code == 404
    assert fred.get(new).status_code == 200


def test_non_members_get_404_and_members_403_for_owner_actions(app, team, new_client):
    group, issue = team["group"], team["issue"]
    outsider = new_client("Mallory")
    for path in (f"/groups/{group}", f"/issues/{issue}", f"/issues/{issue}/estimate"):
        assert outsider.get(path).status_code == 404, path
    for path in (f"/groups/{group}/issues", f"/issues/{issue}/reveal", f"/issues/{issue}/estimate"):
        assert outsider.post(path, data={"key": "X", "value": "3"}).status_code == 404, path
    bob = team["bob"]
    assert bob.post(f"/groups/{group}/issues", data={"key": "BOB-1"}).status_code == 403
    assert bob.post(f"/issues/{issue}/reveal").status_code == 403
    assert bob.post(f"/groups/{group}/invite").status_code == 403
    assert count(app, Issue) == 1


def test_missing_group_and_issue_are_404_even_for_huge_ids(owner):
    for path in (
        "/groups/999",
        "/issues/999",
        "/groups/99999999999999999999",
        "/issues/-1",
        "/api/issues/99999999999999999999",
    ):
        assert owner.get(path).status_code == 404, path


def test_owner_adds_issues_members_see_them(app, team):
    page = team["bob"].get(f"/groups/{team['group']}").get_data(as_text=True)
    assert "PROJ-1" in page and "not started" in page  # nobody has voted on it yet (SPEC)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"key": "", "description": ""}, "cannot be empty"),
        ({"key": "   ", "description": ""}, "cannot be empty"),
        ({"key": "K" * 33, "description": ""}, "at most 32"),
        ({"key": "PROJ-1", "description": ""}, "already has an issue PROJ-1"),
        ({"key": "proj-1", "description": ""}, "already has an issue"),
        ({"key": "NEW-1", "description": "d" * 501}, "at most 500"),
        ({"key": "NEW\x1b", "description": ""}, "control characters"),
    ],
)
def test_bad_issue_forms_change_nothing(app, team, data, message):
    response = team["owner"].post(f"/groups/{team['group']}/issues", data=data)
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert count(app, Issue) == 1


def test_issue_description_keeps_line_breaks_and_is_escaped(app, team):
    add_issue(app, team["owner"], team["group"], "XSS-1", "<script>alert(1)</script>\nsecond line")
    page = team["bob"].get(f"/groups/{team['group']}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_owner_turns_a_member_into_an_observer_and_removes_another(app, team, dave):
    owner, group, issue = team["owner"], team["group"], team["issue"]
    team["bob"].post(f"/issues/{issue}/estimate", data={"value": "5"})
    with app.app_context():
        bob_id, carol_id, _dave_id = db.session.scalars(
            sa.select(Membership.user_id).where(Membership.role == "member").order_by(Membership.id)
        ).all()
    assert owner.post(f"/groups/{group}/members/{bob_id}/role", data={"role": "observer"}).status_code == 302
    page = owner.get(f"/issues/{issue}").get_data(as_text=True)
    assert "1 of 4" in page  # Bob's open ballot stays in the open round: it is his
    team["carol"].post(f"/issues/{issue}/estimate", data={"value": "8"})
    assert owner.post(f"/groups/{group}/members/{carol_id}/remove").status_code == 302
    assert team["carol"].get(f"/groups/{group}").status_code == 404
    assert "2 of 4" in owner.get(f"/issues/{issue}").get_data(as_text=True)  # so does Carol's
    # the next round expects only the voting members
    owner.post(f"/issues/{issue}/estimate", data={"value": "3"})
    dave.post(f"/issues/{issue}/estimate", data={"value": "13"})
    assert owner.post(f"/issues/{issue}/reveal").status_code == 302
    assert owner.get(f"/api/issues/{issue}").json["result"]["votes"] == 4
    owner.post(f"/issues/{issue}/revote")
    assert "0 of 2" in owner.get(f"/issues/{issue}").get_data(as_text=True)


def test_parallel_joins_by_one_person_make_one_membership(app, owner, new_client):
    group_id = create_group(owner)
    path = invite_path(app, group_id)
    gus = new_client("Gus")
    barrier = threading.Barrier(8)
    codes = []

    def attempt():
        client = app.test_client()
        client.set_cookie(*_session_cookie(gus))
        barrier.wait()
        codes.append(client.post(path, data={"role": "member"}).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [302] + [409] * 7
    assert count(app, Membership) == 2


def _session_cookie(client):
    cookie = client.get_cookie("session")
    return cookie.key, cookie.value


def test_issue_keys_differing_only_in_case_clash_beyond_ascii(app, team):
    add_issue(app, team["owner"], team["group"], "ÄRGER-1")
    response = team["owner"].post(f"/groups/{team['group']}/issues", data={"key": "ärger-1"})
    assert response.status_code == 422 and "already has an issue" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "first, second",
    [
        ("\u00c4-1", "A\u0308-1"),  # Ä as one character, then A with a combining diaeresis
        ("K-1", "\u041a-1"),  # Cyrillic К
        ("WEB-1", "ＷＥＢ-1"),  # full width
        ("WEB-2", "ᴡᴇʙ-2"),  # small capitals
        ("OPS-10", "0PS-10"),  # a zero for an O
    ],
)
def test_issue_keys_that_look_alike_cannot_both_be_in_a_group(app, team, first, second):
    owner, group = team["owner"], team["group"]
    add_issue(app, owner, group, first)
    response = owner.post(f"/groups/{group}/issues", data={"key": second})
    assert response.status_code == 422 and "already has an issue" in response.get_data(as_text=True)
    with app.app_context():
        keys = db.session.scalars(sa.select(Issue.key).where(Issue.group_id == group)).all()
    assert second not in keys and unicodedata.normalize("NFKC", first) in keys


def test_an_issue_key_is_kept_in_one_normal_form(app, team):
    owner, group = team["owner"], team["group"]
    assert owner.post(f"/groups/{group}/issues", data={"key": "A\u0308RGER-2"}).status_code == 302
    assert owner.post(f"/groups/{group}/issues", data={"key": "ＡＢＣ-3"}).status_code == 302
    with app.app_context():
        keys = db.session.scalars(sa.select(Issue.key).where(Issue.group_id == group)).all()
    assert "\u00c4RGER-2" in keys and "ABC-3" in keys


def test_a_key_that_grows_past_32_characters_when_normalised_is_refused(app, team):
    owner, group = team["owner"], team["group"]
    response = owner.post(f"/groups/{group}/issues", data={"key": "\u337f" * 10})  # ㍿ is four characters
    assert response.status_code == 422 and "at most 32 characters" in response.get_data(as_text=True)


def test_403_page_says_why(app, team):
    response = team["bob"].get(f"/issues/{team['issue']}/reveal")
    assert response.status_code == 403
    assert "Only the group's facilitator can do that." in html.unescape(response.get_data(as_text=True))


@pytest.mark.parametrize("value", ["0", "21", "-1", "abc", "", "2.5", "9" * 50])
def test_bad_min_votes_are_refused_and_change_nothing(app, team, value):
    response = team["owner"].post(f"/groups/{team['group']}/settings", data={"min_votes": value})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "whole number from 1 to 20" in page or "Please give a number of votes" in page
    with app.app_context():
        group = db.session.get(Group, team["group"])
        assert group is not None and group.min_votes == 3


def test_only_the_facilitator_changes_settings(app, team):
    path = f"/groups/{team['group']}/settings"
    assert team["bob"].post(path, data={"min_votes": "1"}).status_code == 403
    assert team["owner"].get(path).status_code == 302
    assert team["owner"].post(path, data={"min_votes": "5"}).headers["Location"] == f"/groups/{team['group']}"
    with app.app_context():
        group = db.session.get(Group, team["group"])
        assert group is not None and group.min_votes == 5
