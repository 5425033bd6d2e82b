"""The public suggestion pages: the form, its refusals, the confirmation link, the staff list."""

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlmodel import Session, select

from improve.settings import settings
from models import Customer, Improvement, Source, Suggestion, SuggestionStatus
from tests.factories import make_colleague
from tests.smtpd import SmtpServer
from tests.web.conftest import Events, sign_in
from tests.web.helpers import snapshot
from web.suggest import HONEYPOT, STAMP, form_age_seconds

FORM = {
    "name": "Ruth Ames",
    "email": "ruth@example.com",
    "title": "Send my bills by email",
    "description": "I recycle a paper bill every month.",
    "category": "resource",
    HONEYPOT: "",
}


@pytest.fixture
def no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test fills the form faster than a person: let it, where the time check is not the point."""
    monkeypatch.setattr(settings, "suggestion_min_seconds", 0.0)


async def stamp_of(client: httpx.AsyncClient) -> str:
    shown = await client.get("/suggest")
    found = re.search(rf'name="{STAMP}" value="([^"]+)"', shown.text)
    assert found is not None
    return found.group(1)


async def suggest(client: httpx.AsyncClient, **changes: str) -> httpx.Response:
    return await client.post("/suggest", data={**FORM, STAMP: await stamp_of(client), **changes})


def rows(session: Session, table: type) -> list:
    return list(session.exec(select(table).execution_options(populate_existing=True)).all())


async def test_anyone_may_open_the_form(anonymous: httpx.AsyncClient) -> None:
    shown = await anonymous.get("/suggest")
    assert shown.status_code == 200
    assert "Suggest an improvement" in shown.text
    for field in ("name", "email", "title", "description", "category", HONEYPOT, STAMP):
        assert f'name="{field}"' in shown.text
    assert 'class="visually-hidden" aria-hidden="true"' in shown.text  # the honeypot is hidden
    assert shown.headers["Cache-Control"] == "no-store"


def test_the_timestamp_is_signed() -> None:
    assert form_age_seconds("suggest.1700000000.forged") is None
    assert form_age_seconds("") is None


async def test_errors_show_the_form_again_with_what_was_typed(
    anonymous: httpx.AsyncClient, no_wait: None
) -> None:
    before = snapshot()
    refused = await suggest(anonymous, email="ruth at example", title="ok", description="Typed")
    assert refused.status_code == 422
    assert "&#39;ruth at example&#39; is not an email address" in refused.text
    assert "needs at least 3 characters" in refused.text
    assert 'value="ruth at example"' in refused.text
    assert ">Typed</textarea>" in refused.text
    assert '<option value="resource" selected>' in refused.text
    assert snapshot() == before


async def test_a_form_sent_at_once_is_answered_alike_and_stores_nothing(
    anonymous: httpx.AsyncClient,
) -> None:
    before = snapshot()
    too_fast = await suggest(anonymous)  # settings.suggestion_min_seconds is 3 s
    assert too_fast.status_code == 200 and "Check your email" in too_fast.text
    honeypot = await anonymous.post(
        "/suggest", data={**FORM, HONEYPOT: "http://spam.example", STAMP: "x"}
    )
    assert honeypot.status_code == 200 and "Check your email" in honeypot.text
    assert snapshot() == before


async def test_too_many_from_one_client_get_a_page_saying_when(
    anonymous: httpx.AsyncClient, no_wait: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "suggestions_per_hour", 1)
    assert (await suggest(anonymous)).status_code == 200
    refused = await suggest(anonymous, email="someone.else@example.com")
    assert refused.status_code == 429
    assert 3500 < int(refused.headers["Retry-After"]) <= 3600
    assert "Please try again after" in refused.text


async def test_the_emailed_link_confirms_once_and_the_improvement_is_announced(
    anonymous: httpx.AsyncClient,
    session: Session,
    smtp: SmtpServer,
    events: Events,
    no_wait: None,
) -> None:
    sent = await suggest(anonymous)
    assert sent.status_code == 200
    assert "Check your email" in sent.text and "ruth@example.com" in sent.text
    # The confirmation went at once, not with the next sweep.
    [email] = smtp.handler.to("ruth@example.com")
    assert email.subject == "Please confirm your suggestion: Send my bills by email"
    found = re.search(r"http://\S+/suggest/confirm/\d+/\S+", email.text)
    assert found is not None
    path = found.group(0).removeprefix(settings.base_url)
    assert rows(session, Improvement) == [] and events.emitted() == []

    before = snapshot()
    shown = await anonymous.get(path)  # a mail scanner, or the person: nothing changes
    assert shown.status_code == 200 and "Confirm my suggestion" in shown.text
    assert "Send my bills by email" in shown.text
    assert snapshot() == before

    confirmed = await anonymous.post(path)
    assert confirmed.status_code == 200
    [improvement] = rows(session, Improvement)
    assert improvement.source == Source.customer
    assert f"is now {improvement.reference}" in confirmed.text
    [suggestion] = rows(session, Suggestion)
    assert suggestion.status == SuggestionStatus.confirmed
    assert [c.email for c in rows(session, Customer)] == ["ruth@example.com"]
    assert events.emitted() == [
        ("improve.improvement.submitted", f"improve.improvement.{improvement.id}", [])
    ]

    again = await anonymous.post(path)
    assert again.status_code == 410
    assert "This link has already been used" in again.text
    assert f"it became {improvement.reference}" in again.text
    assert len(rows(session, Improvement)) == 1
    opened_again = await anonymous.get(path)
    assert opened_again.status_code == 410


async def test_a_wrong_or_expired_link_gets_a_page_that_says_so(
    anonymous: httpx.AsyncClient, session: Session, smtp: SmtpServer, no_wait: None
) -> None:
    await suggest(anonymous)
    [suggestion] = rows(session, Suggestion)
    wrong = await anonymous.get(f"/suggest/confirm/{suggestion.id}/process.not-the-token")
    assert wrong.status_code == 404 and "This link is not valid" in wrong.text
    suggestion.expires_at = datetime.now(UTC) - timedelta(minutes=1)
    session.add(suggestion)
    session.commit()
    [email] = smtp.handler.to("ruth@example.com")
    found = re.search(r"/suggest/confirm/\d+/\S+", email.text)
    assert found is not None
    late = await anonymous.post(found.group(0))
    assert late.status_code == 410 and "This link has expired" in late.text
    assert "send it again from the suggestion page" in late.text
    assert rows(session, Improvement) == []


async def test_staff_list_suggestions_and_only_operations_see_who_sent_them(
    client: httpx.AsyncClient, session: Session, smtp: SmtpServer, no_wait: None
) -> None:
    await suggest(client)
    listed = await client.get("/api/suggestions")
    assert listed.status_code == 200
    [item] = listed.json()["items"]
    assert (item["status"], item["title"], item["email"]) == (
        "unconfirmed",
        "Send my bills by email",
        "ruth@example.com",
    )
    assert item["improvement_id"] is None
    assert (await client.get("/api/suggestions?status=confirmed")).json()["items"] == []

    sign_in(client, make_colleague(session, "Lucy Evans"))
    [hidden] = (await client.get("/api/suggestions")).json()["items"]
    assert (hidden["name"], hidden["email"]) == (None, None)
