"""The staff submission form: server-side validation beside each field, or stored and announced."""

import asyncio
import re
from datetime import timedelta

import httpx
import pytest
from sqlmodel import Session, select

from models import Improvement, ImprovementCustomer, ImprovementPartner, Status
from models.db import utcnow
from tests.factories import make_colleague, make_customer, make_partner
from tests.web.conftest import Events
from tests.web.helpers import snapshot
from web import pages

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


def form_token(page: str) -> str:
    [token] = re.findall(r'name="form_token" value="([^"]*)"', page)
    return token


async def opened(client: httpx.AsyncClient) -> dict[str, str]:
    """GOOD as the form sends it: with the one-time token of a freshly rendered form."""
    return {**GOOD, "form_token": form_token((await client.get("/submit")).text)}


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
            **await opened(client),
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
            **await opened(client),
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
        "/submit", data={**await opened(client), "submitter_email": asha.email, field: value}
    )

    assert response.status_code == 422
    assert f'id="{field}-error"' in response.text
    assert message in response.text
    assert snapshot() == before


# --- the one-time form token: a double click or a resend makes one improvement ----------------


async def test_each_rendering_of_the_form_has_its_own_token(client: httpx.AsyncClient) -> None:
    first, second = [form_token((await client.get("/submit")).text) for _ in range(2)]

    assert first and second and first != second


async def test_a_double_click_makes_one_improvement_and_both_go_to_it(
    client: httpx.AsyncClient, session: Session, events: Events
) -> None:
    form = await opened(client)

    first = await client.post("/submit", data=form)
    second = await client.post("/submit", data=form)

    assert (first.status_code, second.status_code) == (303, 303)
    improvement = session.exec(select(Improvement)).one()
    assert first.headers["location"] == second.headers["location"]
    assert first.headers["location"] == f"/improvements/{improvement.id}"
    assert len(events.emitted()) == 1


async def test_two_clicks_at_once_make_one_improvement(
    client: httpx.AsyncClient, session: Session, events: Events
) -> None:
    form = await opened(client)

    answers = await asyncio.gather(*(client.post("/submit", data=form) for _ in range(3)))

    assert {a.status_code for a in answers} == {303}, [a.text for a in answers]
    assert len({a.headers["location"] for a in answers}) == 1
    assert len(session.exec(select(Improvement)).all()) == 1
    assert len(events.emitted()) == 1


async def test_a_used_form_sent_again_changed_goes_to_what_it_made(
    client: httpx.AsyncClient, session: Session, events: Events
) -> None:
    """Back, edit, send: the token was used, so the browser is taken to the improvement."""
    form = await opened(client)
    first = await client.post("/submit", data=form)
    before = snapshot()

    again = await client.post("/submit", data={**form, "title": "Something else entirely"})

    assert again.status_code == 303
    assert again.headers["location"] == first.headers["location"]
    assert snapshot() == before
    assert len(events.emitted()) == 1


@pytest.mark.parametrize(
    "token",
    ["", "forged", "1700000000.abc.def", "{fresh}x"],
    ids=["missing", "forged", "wrong-signature", "tampered"],
)
async def test_a_missing_or_forged_token_shows_the_form_again_with_what_was_typed(
    client: httpx.AsyncClient, session: Session, events: Events, token: str
) -> None:
    form = await opened(client)
    form["form_token"] = token.format(fresh=form["form_token"])
    before = snapshot()

    refused = await client.post("/submit", data={**form, "description": "Keep <this> text"})

    assert refused.status_code == 422
    assert "check the fields and submit again" in refused.text
    assert "Keep &lt;this&gt; text</textarea>" in refused.text
    assert snapshot() == before
    assert events.emitted() == []
    fresh = form_token(refused.text)
    assert fresh and fresh != form["form_token"]
    sent = await client.post("/submit", data={**form, "form_token": fresh})
    assert sent.status_code == 303
    assert len(session.exec(select(Improvement)).all()) == 1


async def test_a_form_with_errors_keeps_its_token_so_the_fixed_one_is_sent_once(
    client: httpx.AsyncClient, session: Session
) -> None:
    form = await opened(client)

    refused = await client.post("/submit", data={**form, "title": "x"})
    assert refused.status_code == 422
    assert form_token(refused.text) == form["form_token"]
    for _ in range(2):
        assert (await client.post("/submit", data=form)).status_code == 303

    assert len(session.exec(select(Improvement)).all()) == 1


async def test_a_form_opened_more_than_a_day_ago_must_be_sent_again(
    client: httpx.AsyncClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a day its key would be forgotten, so an old form could make a second improvement."""
    monkeypatch.setattr(pages, "utcnow", lambda: utcnow() - timedelta(hours=24, seconds=1))
    old = await opened(client)
    monkeypatch.undo()

    refused = await client.post("/submit", data=old)

    assert refused.status_code == 422
    assert "had expired" in refused.text
    assert session.exec(select(Improvement)).all() == []


async def test_a_token_is_only_good_for_the_colleague_it_was_given_to(
    client: httpx.AsyncClient, session: Session
) -> None:
    asha = make_colleague(session, "Asha Patel")
    assert asha.id is not None
    theirs = pages.new_form_token(asha.id)

    refused = await client.post("/submit", data={**GOOD, "form_token": theirs})

    assert refused.status_code == 422
    assert session.exec(select(Improvement)).all() == []
