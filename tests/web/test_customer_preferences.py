"""A customer's preferences over the JSON API: read and changed by operations, nobody else."""

import httpx
from sqlmodel import Session

from models import Customer, OutboxEmail, OutboxStatus, Purpose
from tasks.consent import queue_customer_email
from tests.factories import make_colleague, make_customer
from tests.web.conftest import sign_in


async def test_operations_change_a_customers_preferences_and_consents(
    client: httpx.AsyncClient, session: Session
) -> None:
    nia = make_customer(session, "Nia Brown")
    waiting = queue_customer_email(
        session=session, key="n:1", customer=nia, template="customer_notice",
        context={"reference": "IMP-1", "title": "T"}, purpose=Purpose.improvement_updates,
    )  # fmt: skip
    session.commit()
    path = f"/api/customers/{nia.id}/preferences"

    before = await client.get(path)
    assert before.status_code == 200, before.text
    assert before.json() == {
        "id": nia.id, "name": "Nia Brown", "language": "en", "contact_format": "html",
        "window": "any time", "weekly_limit": None,
        "consents": {"improvement_updates": True, "policy_news": False, "invitations": False},
    }  # fmt: skip

    changed = await client.patch(
        path,
        json={"language": "cy", "contact_format": "text", "window": "22:00-06:00",
              "weekly_limit": 3, "consents": {"improvement_updates": False}},
    )  # fmt: skip

    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["language"], body["contact_format"], body["weekly_limit"]) == ("cy", "text", 3)
    assert body["window"] == "22:00–06:00 Europe/London"
    assert body["consents"]["improvement_updates"] is False
    session.expire_all()
    row = session.get(OutboxEmail, waiting.id)
    assert row is not None and row.status == OutboxStatus.skipped  # the no stops what waits

    # Left out stays; null takes the weekly limit away.
    again = await client.patch(path, json={"weekly_limit": None})
    assert again.json()["weekly_limit"] is None and again.json()["language"] == "cy"
    customer = session.get(Customer, nia.id, populate_existing=True)
    assert customer is not None and customer.contact_until is not None


async def test_bad_preferences_are_named_and_change_nothing(
    client: httpx.AsyncClient, session: Session
) -> None:
    nia = make_customer(session, "Nia Brown")
    path = f"/api/customers/{nia.id}/preferences"

    refused = await client.patch(path, json={"language": "fr", "window": "nine till five"})

    assert refused.status_code == 422
    assert set(refused.json()["errors"]) == {"language", "window"}
    customer = session.get(Customer, nia.id, populate_existing=True)
    assert customer is not None and customer.language == "en" and customer.contact_from is None
    assert (await client.get("/api/customers/999999/preferences")).status_code == 404


async def test_a_colleague_without_the_operations_role_sees_no_customer(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    nia = make_customer(session, "Nia Brown")
    sign_in(anonymous, make_colleague(session, "Asha Patel"))

    response = await anonymous.get(f"/api/customers/{nia.id}/preferences")

    assert response.status_code == 403
    assert "operations role" in response.json()["detail"]
