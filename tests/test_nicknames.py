"""Nicknames that cannot impersonate: shape, one script, case and look-alikes; the migration."""

import os
import uuid

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from config import database_url
from estimator import create_app
from estimator.auth.nicknames import is_single_script, nickname_skeleton
from estimator.extensions import db
from estimator.models import User
from tests.conftest import login, make_config

SIMILAR = "too similar to an existing nickname"
INVISIBLE = "control characters or invisible characters"
ONE_SCRIPT = "letters of one script only"


def nicknames(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(User.nickname).order_by(User.id)))


@pytest.mark.parametrize(
    "typed, shown",
    [
        ("  Bob   Smith  ", "Bob Smith"),
        ("Bob\u00a0\u3000Smith", "Bob Smith"),  # other spaces become one plain space
        ("Ｆｒｅｄ", "Fred"),  # NFKC: full-width letters
        ("ﬁona", "fiona"),  # NFKC: the ligature
        ("Ju\u0308rgen", "Jürgen"),  # composed
        ("Zoë_d.o-1", "Zoë_d.o-1"),
        ("田中さん", "田中さん"),  # Han with Hiragana is one writing system, as TR39 says
        ("김철수", "김철수"),
        ("Σωκράτης", "Σωκράτης"),
        ("Сергей 2", "Сергей 2"),
        ("x" * 32, "x" * 32),
    ],
)
def test_good_nicknames_are_stored_normalised(app, client, typed, shown):
    assert login(client, typed).status_code == 302
    assert nicknames(app) == [shown]


@pytest.mark.parametrize(
    "typed, message",
    [
        ("\u3164", INVISIBLE),  # HANGUL FILLER, a "letter" that shows nothing
        ("Alice9\u3164", INVISIBLE),
        ("\u115fBob", INVISIBLE),  # HANGUL CHOSEONG FILLER
        ("\uffa0", INVISIBLE),  # HALFWIDTH HANGUL FILLER
        ("Bo\u200bb", INVISIBLE),  # ZERO WIDTH SPACE
        ("Bo\u200db", INVISIBLE),  # ZERO WIDTH JOINER
        ("\u202eBob", INVISIBLE),  # RIGHT-TO-LEFT OVERRIDE
        ("\u2066Bob\u2069", INVISIBLE),  # LEFT-TO-RIGHT ISOLATE
        ("\ufeffBob", INVISIBLE),  # BYTE ORDER MARK
        ("Bo\u00adb", INVISIBLE),  # SOFT HYPHEN
        ("B\u034fob", INVISIBLE),  # COMBINING GRAPHEME JOINER
        ("Bob\U000e0041", INVISIBLE),  # TAG LATIN CAPITAL LETTER A
        ("Bob\ue000", INVISIBLE),  # private use
        ("Bob\u0378", INVISIBLE),  # unassigned
        ("Bob\u2028", INVISIBLE),  # LINE SEPARATOR
        ("\u0301", "mark must follow a letter"),
        ("\u0301Bob", "mark must follow a letter"),
        ("Bob \u0301", "mark must follow a letter"),
        ("pаypal", ONE_SCRIPT),  # Cyrillic а
        ("Αlice9", ONE_SCRIPT),  # Greek Alpha
        ("Аlice9", ONE_SCRIPT),  # Cyrillic A
        ("Bob Сергей", ONE_SCRIPT),
        ("Bob 🚀", "letters, digits, spaces"),
        ("Bob#1", "letters, digits, spaces"),
        ("Bob½", "letters, digits, spaces"),
        ("", "Please choose a nickname"),
        ("\u00a0 \u3000", "Please choose a nickname"),
        ("x" * 33, "at most 32 characters"),
        ("ﬃ" * 11, "at most 32 characters"),  # 11 characters typed, 33 once normalised
    ],
)
def test_bad_nicknames_are_refused_and_nothing_is_stored(app, client, typed, message):
    response = login(client, typed)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert nicknames(app) == []


@pytest.mark.parametrize(
    "taken, look_alike",
    [
        ("Alice9", "A1ice9"),  # digit one for l
        ("Alice9", "AIice9"),  # capital I for l
        ("alice", "aIice"),
        ("Bob", "B0b"),
        ("Bob", "ВОВ"),  # all Cyrillic: one script, and looks like Latin
        ("cope", "соре"),  # all Cyrillic
        ("Tom", "Torn"),  # rn for m
        ("Anna", "ΑΝΝΑ"),  # all Greek
        ("Alice9", "Аlice9"),  # Cyrillic А among Latin letters: mixed, and above all a look-alike
        ("Alice9", "Αlice9"),  # Greek Alpha likewise
        ("Pia", "ᴘia"),  # small capitals look like capitals
        ("Bea", "ʙea"),
        ("Nico", "ɴico"),
        ("Alice", "ᴀlice"),
        ("ᴀlice", "Alice"),  # and the other way round
        ("Ida", "ɪda"),
        ("Will", "VVill"),  # two v for a w
        ("VVolf", "Wolf"),
        ("Will", "ᴡill"),
    ],
)
def test_a_look_alike_of_a_taken_nickname_is_refused(app, client, taken, look_alike):
    assert login(client, taken).status_code == 302
    other = app.test_client()
    response = login(other, look_alike)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert SIMILAR in page and look_alike in page
    assert nicknames(app) == [taken]


def test_look_alikes_made_of_forbidden_or_mixed_characters_are_refused_too(app, client):
    assert login(client, "Alice9").status_code == 302
    for look_alike in ("Аlice9", "Αlice9", "Alice9\u3164", "\u3164", "Alice\u200b9", "\u202eAlice9"):
        assert login(app.test_client(), look_alike).status_code == 422, look_alike
    assert nicknames(app) == ["Alice9"]


def test_any_case_or_width_is_the_same_user_shown_as_first_spelled(app, client):
    assert login(client, "Alice").status_code == 302
    for spelling in ("ALICE", "alice", "ａｌｉｃｅ", "  aLiCe "):
        client.post("/logout")
        assert login(client, spelling).status_code == 302, spelling
        assert "Welcome back, Alice!" in client.get("/").get_data(as_text=True)
    assert nicknames(app) == ["Alice"]


def test_different_nicknames_are_not_mistaken_for_look_alikes(app, client):
    for nickname in ("Alice", "Alicia", "Al", "Member 1", "Member 11", "Member 2", "Bob Smith", "Bob-Smith",
                     "Viv", "Vivi", "Uwe", "Vava"):  # fmt: skip
        assert login(app.test_client(), nickname).status_code == 302, nickname
    assert len(nicknames(app)) == 12


def test_skeletons_follow_tr39_and_ignore_case():
    assert nickname_skeleton("Alice") == nickname_skeleton("alice") == nickname_skeleton("A1ice")
    assert nickname_skeleton("Bob") == nickname_skeleton("ВОВ") == nickname_skeleton("B0B".lower())
    assert nickname_skeleton("Alice") != nickname_skeleton("Alicia")
    assert is_single_script("田中 さん 2") and is_single_script("Bob_1") and is_single_script("1234")
    assert not is_single_script("pаypal") and not is_single_script("한국 日本 ひ")


# The migration: users from before get keys and skeletons; old look-alikes are kept.

OLD_USERS = [
    (1, "Alice9", "alice9"),
    (2, "Аlice9", "аlice9"),  # Cyrillic А: mixed scripts were allowed before
    (3, "A1ice9", "a1ice9"),
    (4, "Bob", "bob"),
    (5, "\u01f0an", "j\u030can"),  # the old key: case folded after NFKC, so left decomposed
]


def migration_databases() -> list[str]:
    """SQLite always; PostgreSQL too when the suite runs on it."""
    return ["sqlite"] + (
        ["postgresql"] if (database_url(os.environ.get("DATABASE_URL")) or "").startswith("postgres") else []
    )


@pytest.fixture(params=migration_databases())
def empty_database(request, tmp_path):
    """The URL of an empty database: a SQLite file, or a PostgreSQL schema of its own in the test
    database (this worker's own under pytest-xdist)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite'}"
        return
    base = request.getfixturevalue("database_uri")
    schema = f"migration_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def old_database(empty_database, tmp_path):
    """An app on a database at the revision before claims, holding OLD_USERS and a group."""
    app = create_app(make_config(empty_database))
    app.instance_path = str(tmp_path)
    with app.app_context():
        upgrade(revision="13c89b68bf3a")
        with db.engine.begin() as connection:
            for user_id, nickname, key in OLD_USERS:
                connection.execute(
                    sa.text(
                        "INSERT INTO users (id, nickname, nickname_key, session_token, created_at) "
                        "VALUES (:id, :nickname, :key, :token, '2026-01-01 00:00:00')"
                    ),
                    {"id": user_id, "nickname": nickname, "key": key, "token": f"token{user_id}"},
                )
            connection.execute(
                sa.text(
                    "INSERT INTO groups (id, name, deck, owner_id, invite_token, version, created_at) "
                    "VALUES (1, 'Old team', 'range', 4, 'invite', 1, '2026-01-01 00:00:00')"
                )
            )
            connection.execute(
                sa.text(
                    "INSERT INTO memberships (group_id, user_id, role, joined_at) "
                    "VALUES (1, 4, 'owner', '2026-01-01 00:00:00'), (1, 1, 'member', '2026-01-01 00:00:00')"
                )
            )
    yield app
    with app.app_context():
        db.engine.dispose()


def test_migration_keeps_old_look_alikes_and_reports_each_clash(old_database, capsys):
    with old_database.app_context():
        upgrade(revision="4f1c2a9e7b10")
        with db.engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT id, nickname_key, nickname_skeleton FROM users ORDER BY id")
            ).all()
            memberships = connection.execute(sa.text("SELECT count(*) FROM memberships")).scalar()
    report = capsys.readouterr().out
    skeletons = {user_id: skeleton for user_id, _, skeleton in rows}
    assert skeletons[1] == nickname_skeleton("Alice9")  # the oldest keeps the plain form
    assert skeletons[2] == f"{skeletons[1]}#2" and skeletons[3] == f"{skeletons[1]}#3"
    assert skeletons[4] == nickname_skeleton("Bob")
    assert dict((user_id, key) for user_id, key, _ in rows)[5] == "\u01f0an"  # recomputed: composed
    clashes = [line for line in report.splitlines() if line.startswith("nickname clash")]
    assert len(clashes) == 2
    assert "user 2" in clashes[0] and "user 1" in clashes[0] and "user 3" in clashes[1]
    assert memberships == 2  # the users table was changed in place: nothing cascaded


def test_after_the_migration_old_users_log_in_and_no_new_look_alike_can_be_made(old_database):
    with old_database.app_context():
        upgrade()
    first, second = old_database.test_client(), old_database.test_client()
    assert login(first, "Bob").status_code == 302  # unclaimed: the first browser claims it
    assert login(second, "bob").status_code == 422  # from then on it is that browser's
    assert login(second, "Аlice9").status_code == 302  # an old mixed-script nickname still works
    assert login(old_database.test_client(), "\u01f0AN").status_code == 302  # found by its new key
    response = login(old_database.test_client(), "AIice9")
    assert response.status_code == 422 and SIMILAR in response.get_data(as_text=True)
    response = login(old_database.test_client(), "Аlice8")  # mixed scripts: never for a new one
    assert response.status_code == 422 and ONE_SCRIPT in response.get_data(as_text=True)


def test_upgrade_recomputes_skeletons_so_small_capitals_from_before_keep_working(old_database, capsys):
    with old_database.app_context():
        upgrade(revision="e4a1c7b9d2f3")
        with db.engine.begin() as connection:  # made before small capitals were told apart
            connection.execute(
                sa.text(
                    "INSERT INTO users (id, nickname, nickname_key, nickname_skeleton, session_token, "
                    "created_at) VALUES (6, 'ʙob', 'ʙob', 'ʙob', 'token6', '2026-01-01 00:00:00'), "
                    "(7, 'Pia', 'pia', 'pia', 'token7', '2026-01-01 00:00:00')"
                )
            )
        upgrade()
        with db.engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT id, nickname_skeleton FROM users")).all()
    skeletons: dict[int, str] = {user_id: skeleton for user_id, skeleton in rows}
    assert skeletons[6] == f"{skeletons[4]}#6"  # Bob came first and keeps the plain form
    assert skeletons[7] == nickname_skeleton("ᴘia")
    assert "user 6 'ʙob' is a look-alike of user 4 'Bob'" in capsys.readouterr().out
    assert login(old_database.test_client(), "ʙob").status_code == 302  # still theirs
    response = login(old_database.test_client(), "ᴘia")
    assert response.status_code == 422 and SIMILAR in response.get_data(as_text=True)


def test_migration_downgrades_and_upgrades_again(old_database):
    with old_database.app_context():
        upgrade(revision="4f1c2a9e7b10")
        downgrade(revision="13c89b68bf3a")
        with db.engine.connect() as connection:
            assert "claims" not in sa.inspect(connection).get_table_names()
            assert "nickname_skeleton" not in {c["name"] for c in sa.inspect(connection).get_columns("users")}
        upgrade(revision="4f1c2a9e7b10")
        with db.engine.connect() as connection:
            count = connection.execute(sa.text("SELECT count(*) FROM users")).scalar()
        assert count == len(OLD_USERS)
