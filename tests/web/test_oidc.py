"""Signing in with OpenID Connect, against a real provider (npm's oidc-provider) on loopback."""

import secrets
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import Session, select

from improve.settings import settings
from models import WebSession
from tests.factories import make_colleague
from tests.oidc_provider import Provider, log_in_at_provider, running_provider
from web.signin import callback_url


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running_provider(
        client_id="improve",
        client_secret=secrets.token_urlsafe(24),
        redirect_uri=callback_url(),
    ) as running:
        yield running


@pytest.fixture(autouse=True)
def configured(provider: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    """Improve set up for this provider, as the IMPROVE_OIDC_* settings do."""
    monkeypatch.setattr(settings, "oidc_issuer", provider.issuer)
    monkeypatch.setattr(settings, "oidc_client_id", provider.client_id)
    monkeypatch.setattr(settings, "oidc_client_secret", SecretStr(provider.client_secret))
    monkeypatch.setattr(settings, "oidc_name", "Brightwater ID")


@pytest.fixture
async def browser() -> AsyncIterator[httpx.AsyncClient]:
    """The provider's side of the person's browser: real HTTP, its own cookies."""
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def _sign_in(anonymous: httpx.AsyncClient, browser: httpx.AsyncClient, login: str):
    """Start at Improve, log in at the provider, come back to Improve's callback."""
    started = await anonymous.get("/signin/oidc", params={"next": "/improvements"})
    assert started.status_code == 302, started.text
    assert started.headers["location"].startswith(settings.oidc_issuer)
    back = await log_in_at_provider(browser, started.headers["location"], login=login)
    assert back.startswith(callback_url())
    parts = urlsplit(back)
    return await anonymous.get(f"{parts.path}?{parts.query}")


async def test_a_colleague_signs_in_with_the_organisations_provider(
    anonymous: httpx.AsyncClient, browser: httpx.AsyncClient, session: Session
) -> None:
    asha = make_colleague(session, "Asha Patel", email="asha.patel@brightwater.example")
    offered = await anonymous.get("/signin")
    assert "Sign in with Brightwater ID" in offered.text

    signed = await _sign_in(anonymous, browser, login="Asha.Patel@brightwater.example")

    assert signed.status_code == 303, signed.text
    assert signed.headers["location"] == "/improvements"
    page = await anonymous.get("/improvements")
    assert page.status_code == 200 and "Asha Patel" in page.text
    [row] = session.exec(select(WebSession)).all()
    assert (row.colleague_id, row.via) == (asha.id, "oidc")


async def test_someone_the_provider_knows_but_improve_does_not_is_refused(
    anonymous: httpx.AsyncClient, browser: httpx.AsyncClient, session: Session
) -> None:
    refused = await _sign_in(anonymous, browser, login="visitor@elsewhere.example")

    assert refused.status_code == 403
    assert "visitor@elsewhere.example is not the email of an active colleague" in refused.text
    assert session.exec(select(WebSession)).all() == []
    assert (await anonymous.get("/")).status_code == 303


async def test_an_email_the_provider_has_not_verified_is_refused(
    anonymous: httpx.AsyncClient, browser: httpx.AsyncClient, session: Session
) -> None:
    make_colleague(session, "Eve Adams", email="eve@brightwater.example")

    refused = await _sign_in(anonymous, browser, login="unverified:eve@brightwater.example")

    assert refused.status_code == 403 and "did not confirm an email address" in refused.text
    assert session.exec(select(WebSession)).all() == []


async def test_a_callback_that_did_not_start_here_is_refused(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    forged = await anonymous.get("/signin/oidc/callback?code=stolen&state=made-up")

    assert forged.status_code == 400
    assert "The identity provider did not sign you in" in forged.text
    assert session.exec(select(WebSession)).all() == []
