"""The database engine, session factory, and the column types every table shares."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, create_engine

from improve.settings import settings

# The largest value an integer column holds on both databases (PostgreSQL's `integer`).
MAX_INT = 2_147_483_647
# The largest amount Improve takes: far beyond any real figure, and a sum of millions of them
# stays finite in a double-precision column.
MAX_AMOUNT = 1e12


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp, also on SQLite, which stores no zone."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: Improve stores UTC-aware timestamps")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and ":memory:" not in url:
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the web app read while a flow writes; foreign keys are off by default.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


engine: Engine = make_engine(settings.effective_database_url)


def get_engine() -> Engine:
    return engine


# alembic.ini sits at the root of the source tree, beside this package (installed editable).
ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"
# The revision whose tables `SQLModel.metadata.create_all` made before Alembic owned the schema.
BASELINE_REVISION = "0001"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration; given a connection, migrations run on that database."""
    config = Config(ALEMBIC_INI)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def init_db(on: sa.Engine | None = None) -> None:
    """Bring the database (Improve's, unless `on` another) to the newest schema: run every
    Alembic revision it lacks."""
    on = on or engine
    with on.connect() as connection:
        config = alembic_config(connection)
        if _made_by_create_all(on):
            command.stamp(config, BASELINE_REVISION)
        command.upgrade(config, "head")


def _made_by_create_all(on: sa.Engine) -> bool:
    """Whether the database predates migrations: 0001's tables, but no alembic_version.

    Such a database is stamped at 0001, so upgrading adds only the revisions after it instead of
    creating its tables again.
    """
    with on.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
    return "improvement" in tables and "alembic_version" not in tables


def schema_revision(on: sa.Engine | None = None) -> str | None:
    """The Alembic revision the database is at; None if it has none yet."""
    with (on or engine).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
