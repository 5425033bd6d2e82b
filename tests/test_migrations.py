"""Alembic's revisions, run from an empty database, make exactly the tables the models describe."""

import os
from collections.abc import Iterator
from pathlib import Path
from pprint import pformat
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from models import db

PG_URL = os.environ.get("IMPROVE_TEST_DATABASE_URL", "")
# A database of its own, so these tests never touch the one the rest of the suite shares.
PG_DATABASE = "improve_migrations_test"
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL.startswith("postgresql") else [])
HEAD = ScriptDirectory.from_config(db.alembic_config()).get_current_head()


@pytest.fixture(params=BACKENDS)
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a new, empty database."""
    if request.param == "sqlite":
        engine = db.make_engine(f"sqlite:///{tmp_path / 'migrations.db'}")
        yield engine
        engine.dispose()
        return
    admin = sa.create_engine(
        sa.make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        connection.exec_driver_sql(f"CREATE DATABASE {PG_DATABASE}")
    engine = db.make_engine(
        sa.make_url(PG_URL).set(database=PG_DATABASE).render_as_string(hide_password=False)
    )
    yield engine
    engine.dispose()
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
    admin.dispose()


def migrate(engine: Engine, direction: str, revision: str) -> None:
    with engine.connect() as connection:
        getattr(command, direction)(db.alembic_config(connection), revision)


def schema_diff(engine: Engine) -> list[Any]:
    """What autogenerate would still write: empty when the database matches the models."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, SQLModel.metadata)


def tables(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(sa.inspect(connection).get_table_names())


def assert_matches_models(engine: Engine) -> None:
    diff = schema_diff(engine)
    assert not diff, (
        "the migrations do not make the tables the models describe; make a revision "
        f"(see migrations/README). Autogenerate finds:\n{pformat(diff)}"
    )


def test_migrations_from_empty_match_the_models(empty: Engine) -> None:
    migrate(empty, "upgrade", "head")

    assert_matches_models(empty)


def test_downgrade_to_nothing_and_back(empty: Engine) -> None:
    migrate(empty, "upgrade", "head")
    migrate(empty, "downgrade", "base")
    assert tables(empty) == {"alembic_version"}

    migrate(empty, "upgrade", "head")
    assert_matches_models(empty)


def test_a_database_made_before_migrations_is_stamped_and_upgraded(
    empty: Engine,
) -> None:
    # What create_all made before Alembic: revision 0001's tables, with rows, and no version.
    migrate(empty, "upgrade", db.BASELINE_REVISION)
    with empty.begin() as connection:
        connection.exec_driver_sql("DROP TABLE alembic_version")
        connection.execute(
            sa.text(
                "INSERT INTO colleague (name, email, team, role, active, created_at) "
                "VALUES ('Ada', 'ada@example.org', 'Ops', 'Lead', true, :now)"
            ),
            {"now": db.utcnow()},
        )
    db.init_db(empty)

    assert db.schema_revision(empty) == HEAD
    assert_matches_models(empty)
    with empty.connect() as connection:
        assert connection.exec_driver_sql("SELECT email FROM colleague").scalars().all() == [
            "ada@example.org"
        ]


def test_init_db_again_changes_nothing(empty: Engine) -> None:
    db.init_db(empty)
    db.init_db(empty)

    assert db.schema_revision(empty) == HEAD
    assert_matches_models(empty)
