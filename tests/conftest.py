"""Shared fixtures: a real database (SQLite, or PostgreSQL when asked) and a real SMTP server."""

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.smtpd import SmtpServer, free_port

# Settings are read once at import, so the test environment is fixed before Improve is imported.
_DATA_DIR = Path(tempfile.mkdtemp(prefix="improve-test-"))
SMTP_PORT = free_port()
os.environ.update(
    IMPROVE_ENVIRONMENT="test",
    IMPROVE_SECRET_KEY="test-secret-not-for-production",
    IMPROVE_DATA_DIR=str(_DATA_DIR),
    IMPROVE_DATABASE_URL=os.environ.get("IMPROVE_TEST_DATABASE_URL")
    or f"sqlite:///{_DATA_DIR / 'improve.db'}",
    IMPROVE_SMTP_HOST="127.0.0.1",
    IMPROVE_SMTP_PORT=str(SMTP_PORT),
    IMPROVE_SMTP_TIMEOUT_SECONDS="5",
    IMPROVE_OUTBOX_BACKOFF_SECONDS="[0, 0, 0, 0, 0]",
    IMPROVE_BASE_URL="http://127.0.0.1:8000",
    PREFECT_HOME=str(_DATA_DIR / "prefect"),
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
)

import pytest  # noqa: E402
from sqlalchemy import MetaData  # noqa: E402
from sqlmodel import Session, SQLModel  # noqa: E402

import models  # noqa: E402,F401
from models import db  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _schema() -> Iterator[None]:
    # From nothing, as a new installation: every table the database holds goes, alembic_version
    # and any a newer or older checkout left behind too, or no revision would run.
    everything = MetaData()
    everything.reflect(db.get_engine())
    everything.drop_all(db.get_engine())
    db.init_db()
    yield
    db.get_engine().dispose()


@pytest.fixture(autouse=True)
def clean_db(_schema: None) -> Iterator[None]:
    """Every test starts from empty tables on the same real database."""
    with db.get_engine().begin() as connection:
        for table in reversed(SQLModel.metadata.sorted_tables):
            connection.execute(table.delete())
    yield


@pytest.fixture
def session() -> Iterator[Session]:
    with Session(db.get_engine(), expire_on_commit=False) as s:
        yield s


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(SMTP_PORT)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> Iterator[SmtpServer]:
    """The real SMTP server, emptied for this test."""
    smtp_server.clear()
    yield smtp_server
    smtp_server.clear()
