"""Flow tests call the flows directly, against a real Prefect server of their own."""

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

from improve.stack import Stack, free_port

HERE = Path(__file__).parent

# Prefect 3.8.8 opens a sync API client per flow run to look up the server's default result
# storage (prefect/results.py, _read_server_default_result_storage_block_id) and never closes
# it; its socket is reported when collected. Served runs are processes of their own, so only
# in-process runs like these show it. Collected after each test, it stays attributed to them.
PREFECT_CLIENT_LEAK = (
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.filterwarnings(PREFECT_CLIENT_LEAK))


@pytest.fixture(autouse=True)
def _collect_leaked_clients() -> Iterator[None]:
    yield
    gc.collect()


@pytest.fixture(scope="package", autouse=True)
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prefect server process (its own home and SQLite database) that the flows report to."""
    root: Path = tmp_path_factory.mktemp("prefect-flows")
    stack = Stack(
        prefect_home=root / "home", logs=root / "logs", prefect_port=free_port(), ui=False
    )
    try:
        stack.start_prefect()
        # Logs stay in the test output: shipped to the API, the last ones would outlive it.
        updates = {PREFECT_API_URL: stack.api_url, PREFECT_LOGGING_TO_API_ENABLED: False}
        with temporary_settings(updates=updates):
            yield stack.api_url
            # Deliver this process's events while the server still listens.
            EventsWorker.drain_all(timeout=30)
    finally:
        stack.stop()
