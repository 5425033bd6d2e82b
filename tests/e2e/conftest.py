"""The whole stack for end-to-end tests: a real Prefect server, the served flows, the web app.

The children are started with `improve.stack.Stack`, as `improve up` starts them, on free ports
and with a Prefect home of their own. They inherit the test environment that tests/conftest.py
fixed at import (IMPROVE_DATABASE_URL, IMPROVE_SMTP_PORT, ...), so the flows write to the test
database and send to the test SMTP server; IMPROVE_BASE_URL is set for them to the web app here.
The stack is package-scoped: other tests never run with flows listening to their events.
"""

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from improve.stack import Stack, free_port
from models.db import session_scope, utcnow
from tasks.access import create_api_token
from tests.e2e.helpers import wait_for_quiet
from tests.factories import make_operator
from tests.smtpd import SmtpServer


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory, smtp_server: SmtpServer) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("stack")
    stack = Stack(
        prefect_home=root / "prefect",
        logs=root / "logs",
        prefect_port=free_port(),
        web_port=free_port(),
        ui=False,
    )
    stack.start()
    try:
        # This process talks to the same server: it emits events and reads flow runs.
        with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
            yield stack
            # Deliver this process's events while the server still listens.
            EventsWorker.drain_all(timeout=30)
    finally:
        stack.stop()


@pytest.fixture(autouse=True)
async def quiet_afterwards(stack: Stack) -> AsyncIterator[None]:
    """Each test ends when its flows have: the next test empties the tables they write to."""
    yield
    await wait_for_quiet()
    stack.check_alive()


@pytest.fixture
def started() -> datetime:
    """When the test began: the flow runs it caused are the ones created since."""
    return utcnow()


@pytest.fixture
def web(stack: Stack) -> Iterator[httpx.Client]:
    """A person's browser, as far as the tests need one, with the API token of an operations
    colleague (so it may submit for the colleagues the tests name); links need no token."""
    with session_scope() as session:
        operator = make_operator(session)
        _, token = create_api_token(session=session, email=operator.email, name="e2e tests")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=stack.web_url, timeout=30.0, headers=headers) as client:
        yield client
