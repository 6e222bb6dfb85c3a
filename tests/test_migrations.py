"""The committed migrations build exactly the schema the models describe."""

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from estimator import create_app
from estimator.extensions import db
from tests.conftest import make_config


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
