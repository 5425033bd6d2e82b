"""How Alembic reaches the Improve database and compares it with the SQLModel tables."""

import logging
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from alembic.operations.ops import MigrationScript
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

import models  # noqa: F401  (registers every table)
from improve.settings import settings
from models.db import UtcDateTime, make_engine

config = context.config
log = logging.getLogger("alembic.env")
target_metadata = SQLModel.metadata

# Only the `alembic` command line logs as alembic.ini says; Improve's processes keep their own.
if config.cmd_opts is not None and config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write Improve's column types into revisions as code that does not reach into sqlmodel."""
    if type_ != "type":
        return False
    if isinstance(obj, UtcDateTime):
        autogen_context.imports.add("import models.db")
        return "models.db.UtcDateTime()"
    if isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def prepare_revision(_context: Any, _revision: Any, directives: list[MigrationScript]) -> None:
    """Number a new revision one after the head (0001, 0002, …) unless given --rev-id; write
    none when autogenerate finds the database already matches the models."""
    script = directives[0]
    if getattr(config.cmd_opts, "autogenerate", False) and script.upgrade_ops_list[0].is_empty():
        log.info("The database matches the models: no revision written.")
        directives.clear()
        return
    if not getattr(config.cmd_opts, "rev_id", None):
        head = ScriptDirectory.from_config(config).get_current_head()
        script.rev_id = f"{int(head or 0) + 1:04d}"


def configure(**options: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_item=render_item,
        process_revision_directives=prepare_revision,
        **options,
    )


def run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    # Batch mode alters a SQLite table by copying it, dropping the old one and renaming the copy,
    # which foreign keys refuse while other tables refer to its rows. SQLite switches them only
    # between transactions, so this is done when the migrations own theirs.
    switch_foreign_keys = sqlite and not connection.in_transaction()
    if switch_foreign_keys:
        sqlite_foreign_keys(connection, on=False)
    try:
        configure(connection=connection, render_as_batch=sqlite)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if switch_foreign_keys:
            sqlite_foreign_keys(connection, on=True)


def sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    connection.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    connection.commit()


def run_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL for a database administrator to run."""
    url = settings.effective_database_url
    configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    # A caller that holds a connection (init_db, the tests) migrates that very database.
    connection = config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    engine = make_engine(settings.effective_database_url)
    try:
        with engine.connect() as connection:
            run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
