"""Bulk import of a backlog (CSV file or pasted lines) and its export as CSV."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from playwright.sync_api import FilePayload, expect
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from estimator.backlog_csv import EXPORT_HEADER
from estimator.backlog_files import DETAILS_MAX, MAX_BYTES, MAX_ROWS, MAX_TEXT_BYTES, read_csv
from estimator.extensions import db
from estimator.models import Group, Issue
from tests.conftest import add_issue, create_group, join, login, members_vote, vote
from tests.helpers import logged_in_page, text, visible

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


def csv_file(rows: Sequence[tuple[str, ...]], header: str = "key,description") -> bytes:
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


def test_an_export_keeps_its_final_estimates_in_a_group_of_the_same_deck(app, owner):
    first = create_group(owner, "Sprint 1", "fibonacci")
    upload(owner, first, b"Issue key,Summary,Story Points\r\nF-1,Estimated,13\r\nF-2,Open,\r\n")
    exported = owner.get(f"/groups/{first}/export.csv").data
    second = create_group(owner, "Sprint 2", "fibonacci")
    assert "Added 2, skipped 0." in visible(upload(owner, second, exported, "export.csv"))
    assert issues(app, second) == issues(app, first)
    assert issues(app, second)["F-1"][2:] == ("estimated", "13")


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
        pytest.param(b"key,description\r\nA-1,\x81\x8d\r\n", NOT_UTF8, id="not-windows-1252-either"),
        pytest.param(b"key\r\nA-1\x01\x02\xff\r\n", NOT_UTF8, id="windows-1252-with-controls"),
        pytest.param(b"", "The file is empty.", id="empty"),
        pytest.param(BOM + b"\r\n  \r\n", "The file is empty.", id="bom-and-blank-lines"),
        pytest.param(b"key,summary\r\n", "The file has no issues below its header line.", id="header-only"),
        pytest.param(b'key\r\nA-1,"never closed\r\n', "The file is not valid CSV", id="open-quote"),
        pytest.param(
            csv_file([(f"R-{n}", "") for n in range(MAX_ROWS + 1)]),
            "At most 1000 issues can be imported at once.",
            id="1001-rows",
        ),
        pytest.param(
            b"key,description\r\n" + b"A-1," + b"x" * MAX_BYTES + b"\r\n",
            "The file is larger than 10 MiB.",
            id="over-10-MiB",
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


def test_a_file_may_fill_the_group(app, owner, group):
    response = upload(owner, group, csv_file([(f"R-{n}", f"Row {n}") for n in range(MAX_ROWS - 1)]))
    assert response.status_code == 200 and "Added 999, skipped 0." in visible(response)
    assert len(backlog(app, group)) == 1000


def test_a_file_far_over_the_limit_is_refused_before_it_is_read(app, owner, group):
    response = upload(owner, group, b"key\r\n" + b"A\r\n" * MAX_BYTES)  # 30 MiB
    assert response.status_code == 413
    assert "A backlog file has at most 10 MiB." in visible(response)
    assert len(backlog(app, group)) == 1


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("   \n\n", "Paste at least one line"),
        ("\n".join(f"P-{n}" for n in range(MAX_ROWS + 1)), "At most 1000 issues can be imported at once."),
        ("P-1 " + "é" * (MAX_TEXT_BYTES // 2), "The text is larger than 1 MiB."),
    ],
    ids=["blank", "1001-lines", "over-1-MiB"],
)
def test_unusable_pasted_text_is_refused(app, owner, group, lines, message):
    response = paste(owner, group, lines)
    assert response.status_code == 422 and message in visible(response)
    assert len(backlog(app, group)) == 1


def test_a_post_with_neither_file_nor_text_is_refused(app, owner, group):
    response = owner.post(f"/groups/{group}/import", data={})
    assert response.status_code == 422 and "Paste at least one line" in visible(response)
    chosen_nothing = post_form(owner, group, {"file": FileStorage(io.BytesIO(b""), "", "file")})
    assert chosen_nothing.status_code == 422 and "Choose a file to import." in visible(chosen_nothing)


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
    assert response.status_code == 200 and "Added 1000, skipped 0." in visible(response)
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


# --- real trackers' files -------------------------------------------------------------------------

#: Exports and fixtures that teams' trackers really wrote, kept beside the repository (not in it).
REAL_BACKLOGS = Path(__file__).resolve().parents[2] / "shared" / "real-backlogs"


def real_file(name: str) -> bytes:
    """A real tracker's file, read at test time from ../shared/real-backlogs."""
    if not REAL_BACKLOGS.is_dir():
        pytest.skip(f"{REAL_BACKLOGS} is absent: the real trackers' files are kept beside the repository")
    return (REAL_BACKLOGS / name).read_bytes()


def issues(app, group_id: int) -> dict[str, tuple[str, str, str, str | None]]:
    """The group's issues by key: title, details, state and final estimate."""
    with app.app_context():
        group = db.session.get(Group, group_id)
        assert group is not None
        return {i.key: (i.description, i.details, i.state, i.final_estimate) for i in group.issues}


def import_real(app, owner, name: str, deck: str = "range") -> tuple[int, str, dict[str, Any]]:
    """Upload a real file into a new group through the import form: the group, the page's text,
    and the issues it holds then."""
    group_id = create_group(owner, "Imported", deck)
    response = upload(owner, group_id, real_file(name), name)
    assert response.status_code == 200, visible(response)
    return group_id, visible(response), issues(app, group_id)


def test_a_jira_csv_with_cr_only_line_ends_and_320_issues(app, owner):
    _group, page, found = import_real(app, owner, "timurm-MM_Jira_Story_with_subtask_id_7.9.csv")
    assert "Added 320, skipped 0." in page
    assert found["AS-1023"][0] == (
        "Design: Replace white AutoTrader.com logo on startup screen with full color logo"
    )
    assert found["AS-1028"][0] == "VDP: As a user, I can see thumbnails of all photos available to quick jump"
    assert found["AS-105"][0] == (  # doubled quotes inside a quoted cell
        'Home: User can access "I\'m Considering" section to view previously saved materials'
    )
    assert found["AS-996"][0].startswith("SRP: Design: As a user, I want vehicle pricing")


def test_a_jira_csv_with_repeated_sprint_and_labels_columns(app, owner):
    _group, page, found = import_real(app, owner, "sprintreports-jira_export.csv")
    assert "Added 3, skipped 0." in page
    assert list(found) == ["PROJ-1", "PROJ-2", "PROJ-3"]
    assert found["PROJ-3"][:2] == ("You guessed it - Third issue!", "")


def test_a_jira_csv_with_multi_line_descriptions(app, owner):
    group_id, page, found = import_real(app, owner, "poinz-testJiraIssueExport.csv")
    assert "Added 4, skipped 0." in page
    assert list(found) == ["SMRGR-6275", "SMRGR-3672", "SMRGR-2643", "SMRGR-2151"]
    assert found["SMRGR-2643"][0] == "timezone from AWST to HKT/SGT"  # the summary, trimmed
    details = found["SMRGR-2643"][1]
    assert details.startswith("Dear test,\n\nMay sdgs.\n\nLocal Time 6:57 pm\nWednesday, 4 March 2020")
    assert details.endswith("Much appreciated! =)")
    assert found["SMRGR-2151"][1] == (
        "Use cases:\n * sssss\n * sdgsdgsg\n\nSteps to reproduce:\n * sdhgfhdhfdh\n\nDsfh"
    )
    assert all(state == "voting" for _t, _d, state, _e in found.values())  # no estimate column


def test_a_jira_csv_with_earlier_estimates_records_them(app, owner):
    group_id, page, found = import_real(app, owner, "poinz-testJiraIssueExportConsensus.csv", "fibonacci")
    assert "Added 4, skipped 0." in page
    assert found["SMRGR-6275"][2:] == ("estimated", "5")
    assert found["SMRGR-3672"][2:] == ("estimated", "3")
    assert found["SMRGR-2643"][2:] == ("voting", None)  # no estimate in the file
    assert owner.get(f"/api/groups/{group_id}").json["total"] == 8


def test_a_jira_csv_estimate_that_is_no_card_is_reported_and_left_out(app, owner):
    group_id = create_group(owner, "T-shirts", "tshirt")
    response = upload(owner, group_id, real_file("poinz-testJiraIssueExportConsensus.csv"))
    page = visible(response)
    assert "Added 4, skipped 0." in page
    assert (
        "2 SMRGR-6275 The estimate 5 is not a card of this deck; the issue was imported without it." in page
    )
    assert "3 SMRGR-3672 The estimate 3 is not a card of this deck" in page
    assert {state for _t, _d, state, _e in issues(app, group_id).values()} == {"voting"}


def test_thunderdomes_headerless_csv(app, owner):
    _group, page, found = import_real(app, owner, "thunderdome-csv-issues.csv")
    assert "Added 3, skipped 0." in page  # its first line is an issue, not a header
    assert list(found) == ["REF001", "REF002", "REF003"]
    title, details, _state, _estimate = found["REF002"]
    assert title == "Plan_2"
    assert details == (
        "This is a description for Test Plan 2\n\nAcceptance criteria:\n"
        "This is acceptance criteria for Test Plan 2"
    )


def test_jiras_xml_export_with_one_item(app, owner):
    _group, page, found = import_real(app, owner, "thunderdome-tdjira.xml")
    assert "Added 1, skipped 0." in page
    assert found == {"THUN-2": ("Just another ticket", "With a description", "voting", None)}


def test_jira_clouds_xml_export_with_a_leading_comment(app, owner):
    group_id, page, found = import_real(app, owner, "thunderdome-jira-example-xml-export.xml")
    assert "Added 2, skipped 0." in page
    assert list(found) == ["THUN-2", "THUN-1"]
    assert found["THUN-1"][:2] == (
        "Testing Jira export and import",
        "Testing the idea of exporting jira issues to import into Thunderdome",  # HTML made plain text
    )


def test_gitlabs_csv_numbers_become_hash_keys(app, owner):
    _group, page, found = import_real(app, owner, "gitlab-csv_gitlab_export.csv")
    assert "Added 4, skipped 0." in page
    assert list(found) == ["#1", "#3", "#34", "#35"]
    assert found["#3"][:2] == (
        "Nihil impedit neque quos totam ut aut enim cupiditate doloribus molestiae.",
        "Omnis aliquid sint laudantium quam.",
    )
    assert found["#35"][:2] == ("Test Title", "Test Description")
    assert found["#34"][1] == ""


def test_linears_csv(app, owner):
    _group, page, found = import_real(app, owner, "linear-csv-test.csv")
    assert "Added 3, skipped 0." in page
    assert found["CSV-1"][0] == "Auth"
    assert found["CSV-2"][0] == "Login page"
    assert found["CSV-3"][:3] == ("Onboarding", "", "voting")  # its Estimate cell is empty


def test_planes_csv_with_json_in_its_cells(app, owner):
    _group, page, found = import_real(app, owner, "linear-plane-sample.csv", "fibonacci")
    assert "Added 9, skipped 0." in page
    assert list(found)[:5] == ["TEST-1", "TEST-2", "TEST-3", "TEST-4", "ANT-1"]
    assert found["TEST-1"] == ("Implement user authentication", "", "estimated", "5")
    assert found["TEST-7"][0] == "Sub-task: Profile dashboard"
    assert found["ANT-1"][2:] == ("voting", None)
    assert found["TEST-8"][0] == "Draft task"


@pytest.mark.parametrize("name", ["redmine-import_issues.csv", "redmine-import_issues_utf8_with_bom.csv"])
def test_redmines_semicolon_csv_without_an_id_column(app, owner, name):
    _group, page, found = import_real(app, owner, name, "fibonacci")
    assert "Added 3, skipped 0." in page
    assert "The file has no key column, so the issues were numbered ROW-1, ROW-2… in file order." in page
    assert found == {
        "ROW-1": ("First", "First description", "estimated", "1"),
        "ROW-2": ("Child 1", "Child description", "estimated", "2"),
        "ROW-3": ("Child of existing issue", "Child description", "estimated", "3"),
    }


def test_an_iso_8859_1_file_is_read_as_windows_1252_and_the_page_says_so(app, owner):
    _group, page, found = import_real(app, owner, "redmine-import_iso8859-1.csv")
    assert "Added 2, skipped 0." in page
    assert "The file is not UTF-8 text, so it was read as Windows-1252 (Western European)." in page
    assert "the first column, “column A”, was taken as the titles" in page
    assert found["ROW-1"][0] == "Contenu en français"
    assert found["ROW-2"][0] == "value2A"


def test_trellos_board_json(app, owner):
    _group, page, found = import_real(app, owner, "trello2beads-simple_board.json")
    assert "Added 10, skipped 0." in page
    assert found["abc001"][:2] == ("Write README", "Add project documentation")
    assert found["abc004"][:2] == ("Implement authentication", "Add user authentication system")
    assert found["abc010"][:2] == ("Get approval", "Project approved by stakeholders")


def test_the_same_real_file_twice_skips_every_issue_the_second_time(app, owner):
    group_id, _page, _found = import_real(app, owner, "gitlab-csv_gitlab_export.csv")
    page = visible(upload(owner, group_id, real_file("gitlab-csv_gitlab_export.csv")))
    assert "Added 0, skipped 4." in page and "2 #1 The group already has this issue." in page


# --- other formats' rules -------------------------------------------------------------------------


def trello(cards: list[dict[str, Any]], lists: list[dict[str, Any]] | None = None) -> bytes:
    return json.dumps({"name": "Board", "lists": lists or [], "cards": cards}).encode()


def test_trello_cards_take_their_number_and_archived_ones_are_left_out(app, owner, group):
    data = trello(
        [
            {"idShort": 7, "shortLink": "x7", "name": "Öffnen", "desc": "Zeile 1\nZeile 2", "idList": "a"},
            {"idShort": 8, "shortLink": "x8", "name": "Archived", "closed": True, "idList": "a"},
            {"idShort": 9, "shortLink": "x9", "name": "In an archived list", "idList": "old"},
            {"shortLink": "x10", "name": "No number", "idList": "a"},
        ],
        [{"id": "a", "closed": False}, {"id": "old", "closed": True}],
    )
    page = visible(upload(owner, group, data, "board.json"))
    assert "Added 2, skipped 0." in page and "2 archived cards were left out." in page
    found = issues(app, group)
    assert found["#7"][:2] == ("Öffnen", "Zeile 1\nZeile 2")
    assert found["x10"][0] == "No number"
    assert "#8" not in found and "#9" not in found


def jira_xml(items: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><rss version="0.92"><channel>{items}</channel></rss>'.encode()
    )


def test_jira_xml_html_becomes_plain_text_never_markup(app, owner, group):
    description = html.escape(
        "<p>Steps:</p><ul><li>open &amp; close</li><li>type &lt;b&gt;</li></ul>"
        '<script>alert("x")</script><p onclick="x()">Done</p>'
    )
    points = (
        "<customfields><customfield><customfieldname>Story Points</customfieldname>"
        "<customfieldvalues><customfieldvalue>5.0</customfieldvalue></customfieldvalues>"
        "</customfield></customfields>"
    )
    data = jira_xml(
        f"<item><title>[XSS-1] Escaped</title><key>XSS-1</key><summary>Escaped &lt;i&gt;</summary>"
        f"<description>{description}</description>{points}</item>"
    )
    assert "Added 1, skipped 0." in visible(upload(owner, group, data, "jira.xml"))
    title, details, state, final = issues(app, group)["XSS-1"]
    assert title == "Escaped <i>"
    assert details == "Steps:\n\n• open & close\n• type <b>\n\nDone"
    assert (state, final) == ("estimated", "5")  # "5.0" in Jira is the card 5
    with app.app_context():
        issue_id = db.session.scalar(sa.select(Issue.id).where(Issue.key == "XSS-1"))
    page = text(owner.get(f"/issues/{issue_id}"))
    assert "type &lt;b&gt;" in page and "<script" not in page.split("<main", 1)[1].split("</main>")[0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
            b"<rss><channel><item><key>A-1</key><summary>&b;</summary></item></channel></rss>",
            "The XML file declares entities or a document type, which are refused.",
            id="entities",
        ),
        pytest.param(
            b"<rss><channel><item><key>A-1</key>", "The file is not valid XML near line 1.", id="cut"
        ),
        pytest.param(b"<rss><channel></channel></rss>", "The XML file holds no issues", id="no-items"),
        pytest.param(b'{"cards": [', "The file is not valid JSON.", id="json-cut"),
        pytest.param(b'{"issues": []}', "The JSON file is not a Trello board export", id="not-trello"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "The file is not valid JSON.", id="json-deep"),
        pytest.param(
            trello([{"name": "gone", "closed": True}]), "The board has no cards to import.", id="all-archived"
        ),
    ],
)
def test_a_broken_xml_or_json_file_is_refused_and_changes_nothing(app, owner, group, data, message):
    before = version(app, group)
    response = upload(owner, group, data, "backlog.xml")
    assert response.status_code == 422
    assert message in visible(response)
    assert backlog(app, group) == [("PROJ-1", "Already there")]
    assert version(app, group) == before


@pytest.mark.parametrize(
    ("deck", "estimate", "final"),
    [
        ("fibonacci", "5.0", "5"),
        ("fibonacci", "13", "13"),
        ("modified", "0.5", "½"),
        ("range", "42", "42"),
        ("range", "7.00", "7"),
        ("tshirt", "m", "M"),
    ],
)
def test_an_estimate_that_fits_the_deck_is_recorded(app, owner, deck, estimate, final):
    group_id = create_group(owner, "Deck", deck)
    data = f"Issue key,Summary,Story Points\r\nE-1,Fits,{estimate}\r\n".encode()
    page = visible(upload(owner, group_id, data))
    assert "Added 1, skipped 0." in page and "note" not in page.lower()
    assert issues(app, group_id)["E-1"][2:] == ("estimated", final)
    status = owner.get(f"/api/issues/{owner.get(f'/api/groups/{group_id}').json['issues'][0]['id']}").json
    assert (status["state"], status["final_estimate"]) == ("estimated", final)


@pytest.mark.parametrize(
    ("deck", "estimate"),
    [("fibonacci", "4"), ("range", "2.5"), ("range", "101"), ("tshirt", "3"), ("fibonacci", "lots")],
)
def test_an_estimate_that_does_not_fit_is_noted_with_its_line(app, owner, deck, estimate):
    group_id = create_group(owner, "Deck", deck)
    data = f"Issue key,Summary,Weight\r\nE-1,Fine,\r\nE-2,Fits not,{estimate}\r\n".encode()
    page = visible(upload(owner, group_id, data))
    assert "Added 2, skipped 0." in page
    assert (
        f"3 E-2 The estimate {estimate} is not a card of this deck; the issue was imported without it."
        in page
    )
    assert issues(app, group_id)["E-2"][2:] == ("voting", None)


def test_a_long_description_is_cut_with_a_note(app, owner, group):
    long = "x" * (DETAILS_MAX + 10)
    data = csv_file([("L-1", "Title", long), ("L-2", "Short", "y\r\nz")], header="key,summary,description")
    page = visible(upload(owner, group, data))
    assert "Added 2, skipped 0." in page
    assert "2 L-1 The description was cut at 20000 characters." in page
    found = issues(app, group)
    assert len(found["L-1"][1]) == DETAILS_MAX and found["L-1"][1].endswith("x…")
    assert found["L-2"][1] == "y\nz"


def test_a_description_longer_than_csvs_own_cell_limit_is_cut_not_refused(app, owner, group):
    data = csv_file([("B-1", "Big log", "log line\n" * 30_000)], header="key,summary,description")
    assert len(data) > 256 * 1024
    page = visible(upload(owner, group, data))
    assert "Added 1, skipped 0." in page and "2 B-1 The description was cut at 20000 characters." in page


def test_details_hide_no_text(app, owner, group):
    data = csv_file([("H-1", "Title", "left \u202e right\u200b")], header="key,title,description")
    assert "Added 1, skipped 0." in visible(upload(owner, group, data))
    assert issues(app, group)["H-1"][1] == "left \ufffd right\ufffd"


def test_a_file_is_recognised_by_its_content_not_its_name(app, owner, group):
    assert "Added 1, skipped 0." in visible(
        upload(owner, group, trello([{"name": "N", "shortLink": "s1"}]), "x.csv")
    )
    assert "Added 1, skipped 0." in visible(
        upload(owner, group, jira_xml("<item><key>X-1</key></item>"), "a.json")
    )
    assert "Added 1, skipped 0." in visible(upload(owner, group, b"key,title\r\nC-1,csv\r\n", "b.xml"))
    assert set(issues(app, group)) == {"PROJ-1", "s1", "X-1", "C-1"}


def test_items_of_xml_and_json_are_counted_by_item(app, owner, group):
    data = jira_xml("<item><key>I-1</key><summary>One</summary></item>" * 2)
    page = visible(upload(owner, group, data, "jira.xml"))
    assert "Added 1, skipped 1." in page
    assert "Item Key Why it was skipped 2 I-1 The same key is in item 1." in page


def test_an_imported_estimate_reads_as_recorded_on_the_pages(app, owner):
    group_id = create_group(owner, "Deck", "fibonacci")
    upload(owner, group_id, b"Issue key,Summary,Story Points\r\nE-1,Done before,8\r\nE-2,Open,\r\n")
    with app.app_context():
        issue_id = db.session.scalar(sa.select(Issue.id).where(Issue.key == "E-1"))
    status = owner.get(f"/issues/{issue_id}")
    assert status.status_code == 200 and "Final estimate: 8" in visible(status)
    assert owner.get(f"/api/groups/{group_id}").json["total"] == 8
    # the room's "next issue" goes to the one still to estimate
    owner.post(f"/groups/{group_id}/next")
    assert "E-2" in visible(owner.get(f"/groups/{group_id}/room")).split("Final estimate")[0]
    assert owner.get(f"/api/groups/{group_id}").json["current_issue"] != issue_id


def test_a_file_naming_no_known_column_is_refused_only_when_it_has_nothing(app, owner, group):
    page = visible(upload(owner, group, b"Summary,Status\r\nA title,To Do\r\n"))
    assert "Added 1, skipped 0." in page
    assert issues(app, group)["ROW-1"][0] == "A title"


def test_the_import_page_offers_every_format_and_says_when_it_is_busy(owner, group):
    page = text(owner.get(f"/groups/{group}/import"))
    assert re.search(r'<input[^>]+accept="\.csv,\.xml,\.json[^"]*"', page)
    assert "Backlog file (CSV, XML or JSON)" in page
    assert "at most 1000 issues and 10 MiB at once" in visible(owner.get(f"/groups/{group}/import"))
    # the busy state is the page script's (no inline script): the status it shows is in the page
    assert re.search(r"<form[^>]+data-busy-form", page)
    assert re.search(
        r'<p[^>]+role="status"[^>]+hidden[^>]+data-busy-status>\s*<span[^>]*></span>Importing…', page
    )
    assert "<script>" not in page and " onsubmit=" not in page


def test_a_10_mib_file_of_1000_issues_is_imported(app, owner):
    group_id = create_group(owner, "Big")
    details = "Lorem ipsum dolor sit amet, ünïcödé. " * 250  # about 10 KiB an issue
    data = csv_file([(f"BIG-{n}", f"Issue {n}", details) for n in range(MAX_ROWS)], "key,summary,description")
    assert MAX_BYTES - 512 * 1024 < len(data) <= MAX_BYTES
    response = upload(owner, group_id, data, "big.csv")
    assert response.status_code == 200 and "Added 1000, skipped 0." in visible(response)
    assert len(issues(app, group_id)) == 1000


# --- the tracker's description on the pages -------------------------------------------------------


def test_details_show_folded_below_the_title_on_the_status_page_in_the_room_and_in_the_api(app, owner, group):
    data = csv_file(
        [("D-1", "Short title", 'First line\r\n  indented <b>"bold"</b>\r\n\r\nlast')],
        header="Issue key,Summary,Description",
    )
    assert "Added 1, skipped 0." in visible(upload(owner, group, data))
    with app.app_context():
        issue_id = db.session.scalar(sa.select(Issue.id).where(Issue.key == "D-1"))
    page = text(owner.get(f"/issues/{issue_id}"))
    folded = re.search(
        r'<details class="issue-details[^"]*">\s*<summary[^>]*>([^<]+)</summary>\s*<div[^>]*>([^<]*)</div>',
        page,
    )
    assert folded is not None
    assert folded.group(1) == "Description from the tracker"
    # escaped, its line breaks and indent kept as they are (the stylesheet shows them)
    assert folded.group(2) == "First line\n  indented &lt;b&gt;&#34;bold&#34;&lt;/b&gt;\n\nlast"
    assert 'class="issue-details-text' in page and ".issue-details-text { white-space: pre-wrap;" in text(
        owner.get("/static/app.css")
    )
    assert (
        owner.get(f"/api/issues/{issue_id}").json["details"] == 'First line\n  indented <b>"bold"</b>\n\nlast'
    )
    owner.post(f"/issues/{issue_id}/start")
    room = text(owner.get(f"/groups/{group}/room"))
    assert "Description from the tracker" in room and "indented &lt;b&gt;" in room
    # an issue without details shows no empty fold
    with app.app_context():
        first = db.session.scalar(sa.select(Issue.id).where(Issue.key == "PROJ-1"))
    assert "<details" not in text(owner.get(f"/issues/{first}"))
    assert owner.get(f"/api/issues/{first}").json["details"] == ""


def test_the_edit_form_changes_details_and_a_request_without_them_keeps_them(app, owner, group):
    upload(owner, group, csv_file([("E-1", "Title", "Kept")], header="key,summary,description"))
    with app.app_context():
        issue_id = db.session.scalar(sa.select(Issue.id).where(Issue.key == "E-1"))
    assert re.search(r'<textarea[^>]+name="details"', text(owner.get(f"/issues/{issue_id}/edit")))
    assert (
        owner.post(f"/issues/{issue_id}/edit", data={"key": "E-1", "description": "New"}).status_code == 302
    )
    assert issues(app, group)["E-1"][:2] == ("New", "Kept")
    saved = owner.post(
        f"/issues/{issue_id}/edit", data={"key": "E-1", "description": "New", "details": "Changed\nhere"}
    )
    assert saved.status_code == 302 and issues(app, group)["E-1"][1] == "Changed\nhere"
    refused = owner.post(
        f"/issues/{issue_id}/edit",
        data={"key": "E-1", "description": "New", "details": "x" * (DETAILS_MAX + 1)},
    )
    assert refused.status_code == 422 and "A description has at most 20000 characters." in visible(refused)
    assert issues(app, group)["E-1"][1] == "Changed\nhere"


@pytest.mark.browser
def test_the_import_button_is_busy_and_says_importing_while_the_file_is_sent(browser, server, app, contexts):
    problems: list[str] = []
    page = logged_in_page(browser, server, "Olivia", contexts, problems)
    page.fill("#name", "Busy team")
    page.click("text=Create group")
    import_page = urlsplit(page.url).path + "/import"
    page.goto(import_page)
    form = page.locator("form:has(#file)")
    status = form.locator("[data-busy-status]")
    expect(status).to_be_hidden()
    upload = FilePayload(
        name="t.json", mimeType="application/json", buffer=trello([{"name": "Slow", "shortLink": "s1"}])
    )
    # the upload held back on the page (a listener after the page's own), to see it while it is busy
    page.evaluate("document.addEventListener('submit', (event) => event.preventDefault())")
    page.set_input_files("#file", files=[upload])
    page.click("#submit_file")
    expect(status).to_be_visible()
    expect(status).to_have_text("Importing…")
    expect(form).to_have_attribute("aria-busy", "true")
    expect(page.locator("#submit_file")).to_be_disabled()
    # let go: the upload goes through and the page that answers is ready for the next file
    page.goto(import_page)
    page.set_input_files("#file", files=[upload])
    page.click("#submit_file")
    expect(page.locator("#import-result")).to_contain_text("Added 1, skipped 0.")
    expect(page.locator("#submit_file")).to_be_enabled()
    expect(page.locator("form:has(#file) [data-busy-status]")).to_be_hidden()
    assert not problems, problems
