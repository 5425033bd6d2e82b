"""The staff submission form: server-side validation beside each field, or stored and announced."""

import httpx
import pytest
from sqlmodel import Session, select

from models import Improvement, ImprovementCustomer, ImprovementPartner, Status
from tests.factories import make_colleague, make_customer, make_partner
from tests.web.conftest import Events
from tests.web.helpers import snapshot

GOOD = {
    "title": "Paperless statements for account customers",
    "description": "Offer e-statements.",
    "category": "resource",
    "submitter_email": "",
    "estimated_cost": "£1,500",
    "annual_saving": "3200",
    "kwh": "",
    "kg_co2e": "120.5",
    "kg_waste": "",
    "sheets_paper": "24000",
    "customer_emails": "",
    "partner_emails": "",
}


async def test_the_form_offers_every_field(client: httpx.AsyncClient) -> None:
    response = await client.get("/submit")

    assert response.status_code == 200
    for name in GOOD:
        assert f'name="{name}"' in response.text, name
    assert '<option value="customer_update">Customer update</option>' in response.text


async def test_a_good_submission_is_stored_announced_and_shown(
    client: httpx.AsyncClient, session: Session, events: Events
) -> None:
    asha = make_colleague(session, "Asha Patel")
    nia = make_customer(session, "Nia Brown")
    kim = make_customer(session, "Kim Lee")
    print_co = make_partner(session, "PrintCo")

    response = await client.post(
        "/submit",
        data={
            **GOOD,
            "submitter_email": asha.email.upper(),
            "customer_emails": f"{nia.email}, {kim.email};",
            "partner_emails": print_co.email,
        },
    )

    assert response.status_code == 303
    improvement = session.exec(select(Improvement)).one()
    assert response.headers["location"] == f"/improvements/{improvement.id}"
    assert improvement.status == Status.submitted
    assert (improvement.estimated_cost, improvement.annual_saving) == (1500, 3200)
    assert (improvement.kg_co2e, improvement.sheets_paper) == (120.5, 24000)
    assert len(session.exec(select(ImprovementCustomer)).all()) == 2
    assert len(session.exec(select(ImprovementPartner)).all()) == 1
    assert events.emitted() == [
        (
            "improve.improvement.submitted",
            f"improve.improvement.{improvement.id}",
            [("submitter", f"improve.colleague.{asha.id}")],
        )
    ]
    page = await client.get(response.headers["location"])
    assert "Paperless statements for account customers" in page.text
    assert "Nia Brown" in page.text and "PrintCo" in page.text


async def test_every_problem_is_named_beside_its_field_and_the_input_kept(
    client: httpx.AsyncClient, session: Session, events: Events
) -> None:
    make_colleague(session, "Asha Patel")
    before = snapshot()

    response = await client.post(
        "/submit",
        data={
            **GOOD,
            "title": "x",
            "category": "",
            "submitter_email": "",
            "estimated_cost": "-3",
            "annual_saving": "lots",
            "sheets_paper": "2.5",
            "description": "Keep <this> text",
        },
    )

    assert response.status_code == 422
    errors = {
        "title": "needs at least 3 characters",
        "category": "choose a category",
        "estimated_cost": "cannot be negative",
        "annual_saving": "is not a number",
        "sheets_paper": "must be a whole number",
    }
    for field, message in errors.items():
        assert f'id="{field}-error"' in response.text, field
        assert message in response.text, field
        assert f'href="#{field}"' in response.text  # the summary links to the field
    assert "Keep &lt;this&gt; text</textarea>" in response.text
    assert 'value="lots"' in response.text
    assert snapshot() == before
    assert events.emitted() == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("submitter_email", "nobody@example.org", "no colleague has the email"),
        ("customer_emails", "ghost@example.com", "unknown: ghost@example.com"),
        ("partner_emails", "ghost@example.net", "unknown: ghost@example.net"),
        ("category", "teleportation", "must be one of"),
    ],
)
async def test_unknown_people_or_categories_are_named_and_nothing_is_written(
    client: httpx.AsyncClient, session: Session, field: str, value: str, message: str
) -> None:
    asha = make_colleague(session, "Asha Patel")
    before = snapshot()

    response = await client.post(
        "/submit", data={**GOOD, "submitter_email": asha.email, field: value}
    )

    assert response.status_code == 422
    assert f'id="{field}-error"' in response.text
    assert message in response.text
    assert snapshot() == before
