"""The committed migrations build exactly the schema the models describe."""

import sqlite3

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from estimator import create_app
from estimator.extensions import db
from tests.conftest import make_config

TABLES = ("users", "groups", "memberships", "issues", "rounds", "ballots")


def test_migrated_schema_matches_the_models(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []
        assert context.get_current_revision() is not None


def test_db_upgrade_command_builds_a_fresh_database(tmp_path):
    fresh = create_app(make_config(f"sqlite:///{tmp_path / 'fresh.sqlite'}"))
    result = fresh.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with fresh.app_context():
        tables = set(sa.inspect(db.engine).get_table_names())
        db.engine.dispose()
    assert {"users", "groups", "memberships", "issues", "rounds", "ballots", "tallies"} <= tables


def test_upgrading_sqlite_keeps_every_row_and_drops_plain_text_cards(tmp_path):
    """SQLite rebuilds a table to change it; that must never cascade into the rows referring to it."""
    path = tmp_path / "old.sqlite"
    old = create_app(make_config(f"sqlite:///{path}"))
    with old.app_context():
        upgrade(revision="4f1c2a9e7b10")  # before sealed ballots
        db.engine.dispose()
    with sqlite3.connect(path) as connection:
        connection.executescript(
            """
            INSERT INTO users (id, nickname, nickname_key, nickname_skeleton, session_token, created_at)
                VALUES (1, 'Ann', 'ann', 'ann', 't', '2026-01-01');
            INSERT INTO groups (id, name, deck, owner_id, invite_token, version, created_at)
                VALUES (1, 'Team', 'range', 1, 'token', 1, '2026-01-01');
            INSERT INTO memberships (id, group_id, user_id, role, joined_at)
                VALUES (1, 1, 1, 'owner', '2026-01-01');
            INSERT INTO issues (id, group_id, key, description, state, created_at)
                VALUES (1, 1, 'K-1', '', 'voting', '2026-01-01');
            INSERT INTO rounds (id, issue_id, number) VALUES (1, 1, 1);
            INSERT INTO ballots (id, round_id, user_id, card) VALUES (1, 1, 1, '13');
            """
        )
    with old.app_context():
        upgrade()
        assert db.session.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
        db.session.remove()
        db.engine.dispose()
    with sqlite3.connect(path) as connection:
        counts = [connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES]
        assert counts == [1] * len(TABLES)
        # the plain-text card of the open round is not carried over: its voter votes again
        assert connection.execute("SELECT sealed FROM ballots").fetchall() == [(None,)]
        assert connection.execute("SELECT min_votes FROM groups").fetchall() == [(3,)]


def test_every_migration_downgrades_and_upgrades_again(tmp_path):
    fresh = create_app(make_config(f"sqlite:///{tmp_path / 'roundtrip.sqlite'}"))
    with fresh.app_context():
        upgrade()
        downgrade(revision="13c89b68bf3a")
        upgrade()
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection)
            assert compare_metadata(context, db.metadata) == []
        db.engine.dispose()
