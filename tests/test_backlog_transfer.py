"""Bulk import of a backlog (CSV file or pasted lines) and its export as CSV."""

from __future__ import annotations

import csv
import io
import re

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from estimator.backlog_csv import EXPORT_HEADER, MAX_BYTES, MAX_ROWS, read_csv
from estimator.extensions import db
from estimator.models import Group
from tests.conftest import add_issue, create_group, join, login, members_vote, vote
from tests.helpers import text, visible

BOM = b"\xef\xbb\xbf"

#: A Jira Cloud export as it comes: BOM, CRLF, the summary first, a repeated column, quoted
#: multi-line descriptions with doubled quotes, and commas inside cells.
JIRA_EXPORT = (
    BOM
    + (
        "Summary,Issue key,Issue id,Issue Type,Status,Project key,Priority,Assignee,Created,"
        "Description,Sprint,Sprint\r\n"
        "Log in with a nickname,EST-101,10101,Story,To Do,EST,Medium,,12/Mar/25 9:14 AM,"
        '"As a player I want to log in.\r\n'
        "\r\n"
        '*Acceptance:* the nickname is kept, ""Alice"" and ""alice"" are one.",Sprint 4,Sprint 5\r\n'
        "Export the backlog as CSV,EST-102,10102,Task,In Progress,EST,High,Olivia,12/Mar/25 9:20 AM,"
        "Plain text,Sprint 5,\r\n"
        '"Café au lait, naïve résumé",EST-103,10103,Bug,Done,EST,Low,,13/Mar/25 4:01 PM,'
        '"Line one\nline two",,\r\n'
    ).encode()
)


def post_form(client, group_id: int, fields: dict[str, object]):
    """POST multipart/form-data to the import, encoded in memory (the test client would spool a
    large body to a temporary file that it never closes)."""
    boundary, body = encode_multipart(fields)
    return client.post(
        f"/groups/{group_id}/import", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )


def upload(client, group_id: int, data: bytes, filename: str = "backlog.csv", **extra: str):
    """Send a file through the import page's upload form."""
    return post_form(client, group_id, {"file": FileStorage(io.BytesIO(data), filename, "file"), **extra})


def paste(client, group_id: int, lines: str):
    """Send pasted lines through the import page's text form."""
    return post_form(client, group_id, {"text": lines})


def backlog(app, group_id: int) -> list[tuple[str, str]]:
    """The group's issues, key and description, in backlog order."""
    with app.app_context():
        group = db.session.get(Group, group_id)
        assert group is not None
        return [(issue.key, issue.description) for issue in group.issues]


def version(app, group_id: int) -> int:
    with app.app_context():
        return int(db.session.scalar(sa.select(Group.version).where(Group.id == group_id)) or 0)


def csv_file(rows: list[tuple[str, str]], header: str = "key,description") -> bytes:
    out = io.StringIO()
    out.write(header + "\r\n")
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()


@pytest.fixture
def group(app, owner) -> int:
    """Olivia's group with one issue, PROJ-1."""
    group_id = create_group(owner)
    add_issue(app, owner, group_id, "PROJ-1", "Already there")
    return group_id


# --- import ---------------------------------------------------------------------------------------


def test_the_import_page_offers_a_file_and_pasted_lines(owner, group):
    response = owner.get(f"/groups/{group}/import")
    assert response.status_code == 200
    page = text(response)
    assert 'enctype="multipart/form-data"' in page
    assert re.search(r'<input[^>]+type="file"[^>]+name="file"|<input[^>]+name="file"[^>]+type="file"', page)
    assert re.search(r'<textarea[^>]+name="text"', page)


def test_a_jira_export_is_imported_at_the_end_in_its_order(app, owner, group):
    response = upload(owner, group, JIRA_EXPORT, "Jira.csv")
    assert response.status_code == 200
    assert "Added 3, skipped 0." in visible(response)
    assert backlog(app, group) == [
        ("PROJ-1", "Already there"),
        ("EST-101", "Log in with a nickname"),  # the summary, not the long description
        ("EST-102", "Export the backlog as CSV"),
        ("EST-103", "Café au lait, naïve résumé"),
    ]
    # the group page lists them, and each is open for voting
    page = visible(owner.get(f"/groups/{group}"))
    assert page.index("PROJ-1") < page.index("EST-101") < page.index("EST-103")
    state = owner.get(f"/api/groups/{group}").json
    assert [i["state"] for i in state["issues"]] == ["voting"] * 4


def test_the_description_column_is_used_when_there_is_no_summary(app, owner, group):
    # Excel saves CSV with semicolons where the decimal mark is a comma (German, French…)
    data = b'Issue Key;Description\r\nA-1;First, with a comma\r\nA-2;"Two\r\nlines"\r\n'
    assert "Added 2, skipped 0." in visible(upload(owner, group, data))
    assert backlog(app, group)[1:] == [("A-1", "First, with a comma"), ("A-2", "Two\r\nlines")]


def test_pasted_lines_key_white_space_description(app, owner, group):
    lines = "WEB-1 Log in\r\n\r\n  WEB-2\tExport the backlog  \nWEB-3\nWEB-4   Several   spaces inside\n"
    response = paste(owner, group, lines)
    assert response.status_code == 200
    assert "Added 4, skipped 0." in visible(response)
    assert backlog(app, group)[1:] == [
        ("WEB-1", "Log in"),
        ("WEB-2", "Export the backlog"),
        ("WEB-3", ""),
        ("WEB-4", "Several   spaces inside"),
    ]


def test_keys_already_there_or_earlier_in_the_file_are_skipped_with_their_line(app, owner, group):
    data = csv_file(
        [
            ("NEW-1", "first"),
            ("proj-1", "clashes with PROJ-1"),
            ("NEW-2", "second"),
            ("new-1", "again"),
            ("N\u0415W-2", "a Cyrillic Е: looks like NEW-2"),
            ("ᴘʀᴏᴊ-1", "small capitals: looks like PROJ-1"),
        ]
    )
    response = upload(owner, group, data)
    assert response.status_code == 200
    page = visible(response)
    assert "Added 2, skipped 4." in page
    assert "3 proj-1 The group already has this issue." in page  # line 3: the header is line 1
    assert "5 new-1 The same key is on line 2." in page
    assert "6 N\u0415W-2 The same key is on line 4." in page
    assert "7 ᴘʀᴏᴊ-1 The group already has this issue." in page
    assert backlog(app, group)[1:] == [("NEW-1", "first"), ("NEW-2", "second")]


def test_rows_that_break_the_issue_rules_are_refused_and_the_rest_added(app, owner, group):
    data = csv_file(
        [
            ("K" * 33, "over-long key"),
            ("", "no key"),
            ("OK-1", "fine"),
            ("LONG-1", "x" * 501),
            ("ZW\u200b-1", "a zero-width space in the key"),
            ("BIDI-1", "a right-to-left override \u202e in the description"),
            ("OK-2", "x" * 500),
        ]
    )
    response = upload(owner, group, data)
    assert response.status_code == 200
    page = visible(response)
    assert "Added 2, skipped 5." in page
    assert "2 " + "K" * 33 + " An issue key has at most 32 characters." in page
    assert "3 — An issue key cannot be empty." in page
    assert "5 LONG-1 A description has at most 500 characters." in page
    assert "6 ZW\ufffd-1 An issue key cannot contain control characters or invisible characters." in page
    assert "7 BIDI-1 A description cannot contain control characters or invisible characters." in page
    assert [key for key, _ in backlog(app, group)] == ["PROJ-1", "OK-1", "OK-2"]


def test_an_export_imported_into_another_group_gives_the_same_backlog(app, owner, group):
    paste(owner, group, "+1 =cmd|' /C calc'!A0\n@SUM Ünïcödé\n-dash - and a, comma")
    exported = owner.get(f"/groups/{group}/export.csv").data
    other = create_group(owner, "Team Two")
    assert "Added 4, skipped 0." in visible(upload(owner, other, exported, "export.csv"))
    assert backlog(app, other) == backlog(app, group)


def test_nothing_to_add_changes_nothing(app, owner, group):
    before = version(app, group)
    response = paste(owner, group, "PROJ-1 again")
    assert response.status_code == 200 and "Added 0, skipped 1." in visible(response)
    assert version(app, group) == before  # open pages are not told to reload for nothing


NOT_UTF8 = "The file is not UTF-8 text."


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), NOT_UTF8, id="png"),
        pytest.param(b"key,description\r\nA-1,\x00\x00\x00\x00\r\n", NOT_UTF8, id="utf8-with-nul"),
        pytest.param("key,description\r\nA-1,Café crème\r\n".encode("latin-1"), NOT_UTF8, id="latin-1"),
        pytest.param(b"", "The file is empty.", id="empty"),
        pytest.param(BOM + b"\r\n  \r\n", "The file is empty.", id="bom-and-blank-lines"),
        pytest.param(b"key,summary\r\n", "The file has no issues below its header line.", id="header-only"),
        pytest.param(b"Summary,Status\r\nA,To Do\r\n", "The file has no key column", id="no-key-column"),
        pytest.param(b'key\r\nA-1,"never closed\r\n', "The file is not valid CSV", id="open-quote"),
        pytest.param(
            csv_file([(f"R-{n}", "") for n in range(MAX_ROWS + 1)]),
            "At most 500 issues can be imported at once.",
            id="501-rows",
        ),
        pytest.param(
            b"key,description\r\n" + b"A-1," + b"x" * MAX_BYTES + b"\r\n",
            "The file is larger than 1 MiB.",
            id="over-1-MiB",
        ),
    ],
)
def test_a_wholly_unusable_file_is_refused_and_changes_nothing(app, owner, group, data, message):
    before = version(app, group)
    response = upload(owner, group, data)
    assert response.status_code == 422
    assert message in visible(response)
    assert backlog(app, group) == [("PROJ-1", "Already there")]
    assert version(app, group) == before


def test_500_rows_are_fine(app, owner, group):
    response = upload(owner, group, csv_file([(f"R-{n}", f"Row {n}") for n in range(MAX_ROWS)]))
    assert response.status_code == 200 and "Added 500, skipped 0." in visible(response)
    assert len(backlog(app, group)) == 501


def test_a_file_far_over_the_limit_is_refused_before_it_is_read(app, owner, group):
    response = upload(owner, group, b"key\r\n" + b"A\r\n" * MAX_BYTES)  # 3 MiB
    assert response.status_code == 413
    assert "A backlog file has at most 1 MiB." in visible(response)
    assert len(backlog(app, group)) == 1


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("   \n\n", "Paste at least one line"),
        ("\n".join(f"P-{n}" for n in range(MAX_ROWS + 1)), "At most 500 issues can be imported at once."),
        ("P-1 " + "é" * (MAX_BYTES // 2), "The text is larger than 1 MiB."),
    ],
    ids=["blank", "501-lines", "over-1-MiB"],
)
def test_unusable_pasted_text_is_refused(app, owner, group, lines, message):
    response = paste(owner, group, lines)
    assert response.status_code == 422 and message in visible(response)
    assert len(backlog(app, group)) == 1


def test_a_post_with_neither_file_nor_text_is_refused(app, owner, group):
    response = owner.post(f"/groups/{group}/import", data={})
    assert response.status_code == 422 and "Paste at least one line" in visible(response)
    chosen_nothing = post_form(owner, group, {"file": FileStorage(io.BytesIO(b""), "", "file")})
    assert chosen_nothing.status_code == 422 and "Choose a CSV file to import." in visible(chosen_nothing)


def test_an_import_that_would_pass_the_issue_limit_adds_nothing(app, owner, group):
    for start in (0, 500):
        rows = [(f"R-{n}", "") for n in range(start, start + 500 if start == 0 else start + 99)]
        assert upload(owner, group, csv_file(rows)).status_code == 200
    assert len(backlog(app, group)) == 600
    before = version(app, group)
    response = upload(owner, group, csv_file([(f"S-{n}", "") for n in range(401)]))
    assert response.status_code == 422
    page = visible(response)
    assert "Nothing was imported." in page and "A group holds at most 1000 issues" in page
    assert len(backlog(app, group)) == 600  # not the 400 that would have fitted either
    assert version(app, group) == before
    fits = upload(owner, group, csv_file([(f"S-{n}", "") for n in range(400)]))
    assert "Added 400, skipped 0." in visible(fits)
    assert len(backlog(app, group)) == 1000


def test_a_database_error_mid_import_adds_nothing(app, make_app, monkeypatch):
    from estimator.groups import rules

    failing = make_app(TESTING=False, PROPAGATE_EXCEPTIONS=False)
    client = failing.test_client()
    login(client, "Olivia")
    group_id = create_group(client)
    real = rules.add_issues

    def fail_after_adding(group_, rows):
        real(group_, rows)  # the rows are in the transaction now
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(rules, "add_issues", fail_after_adding)
    response = paste(client, group_id, "A-1 one\nA-2 two")
    assert response.status_code == 500 and "Nothing was saved" in visible(response)
    assert backlog(app, group_id) == []


def test_a_large_file_passes_the_csrf_check(app, make_app):
    """The token is read from the body, so the larger limit must hold before the check runs."""
    client = make_app(WTF_CSRF_ENABLED=True).test_client()

    def token(path: str) -> str:
        match = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', text(client.get(path)))
        assert match is not None, path
        return match.group(1)

    logged_in = client.post("/login", data={"nickname": "Olivia", "csrf_token": token("/login")})
    assert logged_in.status_code == 302
    created = client.post("/groups", data={"name": "Big", "deck": "range", "csrf_token": token("/")})
    group_id = int(created.headers["Location"].rsplit("/", 1)[1])
    data = csv_file([(f"B-{n}", "d" * 450) for n in range(MAX_ROWS)])
    assert 200 * 1024 < len(data) < MAX_BYTES  # far over the app's 64 KiB for other forms
    response = upload(client, group_id, data, csrf_token=token(f"/groups/{group_id}/import"))
    assert response.status_code == 200 and "Added 500, skipped 0." in visible(response)
    assert upload(client, group_id, b"key\r\nX-1\r\n").status_code == 400  # no token: refused


def test_only_the_owner_imports(app, owner, group, new_client):
    bob = new_client("Bob")
    join(app, bob, group)
    assert bob.get(f"/groups/{group}/import").status_code == 403
    assert paste(bob, group, "BOB-1 mine").status_code == 403
    eve = new_client("Eve")
    assert eve.get(f"/groups/{group}/import").status_code == 404
    assert paste(eve, group, "EVE-1 mine").status_code == 404
    assert [key for key, _ in backlog(app, group)] == ["PROJ-1"]


def test_import_needs_a_login(app, client, group):
    anonymous = app.test_client()
    response = anonymous.get(f"/groups/{group}/import")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")


# --- export ---------------------------------------------------------------------------------------


def exported(client, group_id: int) -> list[dict[str, str]]:
    response = client.get(f"/groups/{group_id}/export.csv")
    assert response.status_code == 200
    body = response.data
    assert body.startswith(BOM)
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def test_the_export_is_a_utf8_csv_download_named_after_the_group(app, owner):
    group_id = create_group(owner, 'Équipe "Rocket"; 1/2')
    response = owner.get(f"/groups/{group_id}/export.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="')
    ascii_name = re.search(r'filename="([^"]*)"', disposition)
    assert ascii_name is not None and ascii_name.group(1) == "Equipe-Rocket-1-2-backlog.csv"
    assert "filename*=UTF-8''%C3%89quipe%20%22Rocket%22%3B%201%2F2%20backlog.csv" in disposition
    assert response.headers["Cache-Control"] == "no-store"
    header = b"key,description,state,final_estimate,rounds,votes,average,median,low,high\r\n"
    assert response.data == BOM + header  # no issues yet: the header alone


def test_the_export_round_trips_with_results_in_backlog_order(app, team, dave):
    owner, issue, group_id = team["owner"], team["issue"], team["group"]
    long_text = 'Zwei Zeilen:\nÄrger, "Zitate" und Kommas'
    add_issue(app, owner, group_id, "PROJ-2", long_text)
    second = add_issue(app, owner, group_id, "PROJ-3", "estimated twice")
    members_vote(team, issue, ("5", "13", "3"))
    assert owner.post(f"/issues/{issue}/reveal").status_code == 302
    assert owner.post(f"/issues/{issue}/accept", data={"estimate": "8"}).status_code == 302
    members_vote(team, second, ("2", "2", "1"))
    assert owner.post(f"/issues/{second}/reveal").status_code == 302
    owner.post(f"/issues/{second}/revote")  # a new round is open: the last revealed one counts
    vote(owner, second, "100")

    bob_reads = exported(team["bob"], group_id)  # any member may export
    assert list(bob_reads[0]) == list(EXPORT_HEADER)
    assert bob_reads == [
        {
            "key": "PROJ-1",
            "description": "",
            "state": "estimated",
            "final_estimate": "8",
            "rounds": "1",
            "votes": "3",
            "average": "7",
            "median": "5",
            "low": "3",
            "high": "13",
        },
        {
            "key": "PROJ-2",
            "description": long_text,
            "state": "voting",
            "final_estimate": "",
            "rounds": "1",
            "votes": "",
            "average": "",
            "median": "",
            "low": "",
            "high": "",
        },
        {
            "key": "PROJ-3",
            "description": "estimated twice",
            "state": "voting",
            "final_estimate": "",
            "rounds": "2",
            "votes": "3",
            "average": "1.67",
            "median": "2",
            "low": "1",
            "high": "2",
        },
    ]
    # the API agrees on the median
    assert owner.get(f"/api/issues/{issue}").json["result"]["median"] == 5


def test_an_ordinal_deck_exports_its_cards(app, owner, new_client):
    group_id = create_group(owner, "Sizes", "tshirt")
    issue = add_issue(app, owner, group_id, "T-1")
    voters = [new_client("Bob"), new_client("Carol"), new_client("Dave")]
    for client in voters:
        join(app, client, group_id)
    for client, card in zip(voters, ("S", "M", "XL"), strict=True):
        vote(client, issue, card)
    assert owner.post(f"/issues/{issue}/reveal").status_code == 302
    (row,) = exported(owner, group_id)
    assert (row["votes"], row["median"], row["low"], row["high"]) == ("3", "M", "S", "XL")


def test_no_cell_of_the_export_starts_a_formula(app, owner, group):
    paste(owner, group, "+1 =cmd|' /C calc'!A0\n@SUM -2+3\nSAFE-1 =1+1")
    rows = exported(owner, group)
    cells = [cell for row in rows for cell in row.values()]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")]
    assert [(row["key"], row["description"]) for row in rows] == [
        ("PROJ-1", "Already there"),
        ("'+1", "'=cmd|' /C calc'!A0"),
        ("'@SUM", "'-2+3"),
        ("SAFE-1", "'=1+1"),
    ]


def test_export_is_for_members_only(app, owner, group, new_client):
    eve = new_client("Eve")
    assert eve.get(f"/groups/{group}/export.csv").status_code == 404
    observer = new_client("Otto")
    join(app, observer, group, role="observer")
    assert observer.get(f"/groups/{group}/export.csv").status_code == 200
    anonymous = app.test_client()
    response = anonymous.get(f"/groups/{group}/export.csv")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/login?next=/groups/{group}/export.csv"


def test_the_group_page_links_to_import_and_export(app, owner, group, new_client):
    page = text(owner.get(f"/groups/{group}"))
    assert f'href="/groups/{group}/import"' in page
    assert f'href="/groups/{group}/export.csv"' in page
    bob = new_client("Bob")
    join(app, bob, group)
    members_page = text(bob.get(f"/groups/{group}"))
    assert f'href="/groups/{group}/export.csv"' in members_page
    assert f"/groups/{group}/import" not in members_page


# --- reading CSV ----------------------------------------------------------------------------------


def test_rows_are_numbered_by_the_line_they_start_on():
    rows = read_csv(JIRA_EXPORT)
    assert [row.line for row in rows] == [2, 5, 6]
    assert rows[0].key == "EST-101"
