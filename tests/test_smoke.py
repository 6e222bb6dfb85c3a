from tests.conftest import vote


def test_whole_flow(app, team, dave):
    owner, bob, carol = team["owner"], team["bob"], team["carol"]
    issue = team["issue"]
    assert vote(bob, issue, "5").status_code == 302
    assert vote(carol, issue, "8").status_code == 302
    page = owner.get(f"/issues/{issue}").get_data(as_text=True)
    assert "2 of 4" in page
    assert vote(dave, issue, "13").status_code == 302
    assert owner.post(f"/issues/{issue}/reveal").status_code == 302
    page = owner.get(f"/issues/{issue}").get_data(as_text=True)
    assert "8.67" in page
