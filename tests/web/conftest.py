"""Fixtures for the web app: an HTTP client over ASGI, and Prefect's own recording events client."""

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from prefect.events import Event
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from models import Colleague
from models.db import session_scope
from tasks.access import start_session
from tests.factories import make_operator
from web import auth
from web.app import create_app
from web.limits import reset_all


@pytest.fixture(autouse=True)
def _fresh_limits() -> None:
    """Each test starts with no sign-in requests or refused tokens counted against it."""
    reset_all()


@pytest.fixture
async def anonymous() -> AsyncIterator[httpx.AsyncClient]:
    """httpx speaking HTTP to the app in process, signed in as nobody; redirects are not
    followed, so tests see them."""
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def sign_in(client: httpx.AsyncClient, colleague: Colleague) -> None:
    """Give the client a session for this colleague, as following a sign-in link does, and the
    CSRF header its forms would carry."""
    assert colleague.id is not None
    with session_scope() as session:
        token = start_session(session=session, colleague_id=colleague.id, via="email")
    client.cookies.set(auth.COOKIE, auth.sign_cookie(token))
    client.headers["X-CSRF-Token"] = auth.csrf_token_for(token)


@pytest.fixture
def operator() -> Colleague:
    """The signed-in colleague of `client`: in operations, so they may submit for others."""
    with session_scope() as session:
        return make_operator(session)


@pytest.fixture
async def client(
    anonymous: httpx.AsyncClient, operator: Colleague
) -> AsyncIterator[httpx.AsyncClient]:
    """The app in process, signed in as `operator`."""
    sign_in(anonymous, operator)
    yield anonymous


class Events:
    """What the app announced, as received by Prefect's AssertingEventsClient."""

    def __init__(self, worker: EventsWorker) -> None:
        self.worker = worker

    def _events(self) -> list[Event]:
        self.worker.wait_until_empty()
        # The worker starts its client with the first event: none sent, no client yet.
        client = getattr(self.worker, "_client", None)
        return list(getattr(client, "events", []))

    def emitted(self) -> list[tuple[str, str, list[tuple[str, str]]]]:
        """(event, resource id, [(role, related id)]) of each event, in order."""
        return [
            (e.event, e.resource.id, [(r.role, r.id) for r in e.related]) for e in self._events()
        ]

    def payloads(self) -> list[dict]:
        return [dict(e.payload) for e in self._events()]


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[Events]:
    """Events go through improve.events.emit and Prefect's real emit_event into Prefect's
    recording client. The API address only has to be set (emit skips events without one);
    nothing connects to it."""
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        worker = EventsWorker.instance(AssertingEventsClient)
        monkeypatch.setattr(EventsWorker, "instance", lambda *_args, **_kw: worker)
        try:
            yield Events(worker)
        finally:
            worker.drain()
