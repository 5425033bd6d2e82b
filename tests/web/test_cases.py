"""Cases through the web app: the pages and forms, the JSON API, and what bad input gets."""

import re
from datetime import timedelta

import httpx
import pytest
from sqlmodel import Session, select

from models import ActionStatus, Case, CaseStatus, CaseUpdate, Colleague, Improvement, OutboxEmail
from models.db import session_scope, utcnow
from tasks import cases, updates
from tasks.approvals import route_improvement
from tasks.planning import plan_actions
from tests.factories import make_colleague, make_customer
from tests.web.helpers import snapshot
from web.app import create_app, served_routes


@pytest.fixture
def ruth(session: Session):
    return make_customer(session, "Ruth Evans", email="ruth@example.com")


def open_case(session: Session, owner: Colleague, **fields: object) -> Case:
    case = cases.open_case(
        session=session, by=owner, channel="web", customer_email="ruth@example.com",
        subject=str(fields.pop("subject", "New water meter")), **fields,  # type: ignore[arg-type]
    )  # fmt: skip
    session.commit()
    return case


def test_the_case_routes_are_served() -> None:
    paths = {route.path for route in served_routes(create_app())}
    assert {"/cases", "/cases/{case_id}", "/cases/{case_id}/update"} <= paths
    assert {"/api/cases", "/api/cases/{case_id}", "/api/cases/{case_id}/updates"} <= paths


async def test_a_case_is_opened_from_the_list_page_and_shown(
    client: httpx.AsyncClient, operator: Colleague, ruth
) -> None:
    listed = await client.get("/cases")
    assert listed.status_code == 200 and 'href="/cases"' in listed.text  # in the navigation

    opened = await client.post(
        "/cases",
        data={"customer_email": "ruth@example.com", "subject": "New water meter",
              "promised_on": "2026-12-05"},
    )  # fmt: skip
    assert opened.status_code == 303
    page = await client.get(opened.headers["location"])
    assert page.status_code == 200
    assert "New water meter" in page.text and "Ruth Evans" in page.text
    assert "Olu Operations" in page.text and "Opened" in page.text

    assert "New water meter" in (await client.get("/cases?overdue=no")).text
    assert "None match" in (await client.get("/cases?overdue=yes")).text
    assert "None match" in (await client.get("/cases?status=closed")).text


async def test_an_unknown_customer_is_named_on_the_form_and_nothing_is_stored(
    client: httpx.AsyncClient,
) -> None:
    before = snapshot()
    answer = await client.post(
        "/cases", data={"customer_email": "nobody@example.com", "subject": "Hello"}
    )
    assert answer.status_code == 422
    assert "no customer has the email &#39;nobody@example.com&#39;" in answer.text
    assert snapshot() == before


async def test_delay_needs_a_reason_then_change_and_close(
    client: httpx.AsyncClient, session: Session, operator: Colleague, ruth
) -> None:
    case = open_case(session, operator)
    missing = await client.post(f"/cases/{case.id}/delay", data={"reason": ""})
    assert missing.status_code == 422 and "say why the case is off plan" in missing.text

    delayed = await client.post(
        f"/cases/{case.id}/delay",
        data={"reason": "Parts on order", "next_update_due": "2099-01-02T09:30"},
    )
    assert delayed.status_code == 303
    changed = await client.post(
        f"/cases/{case.id}/change",
        data={"subject": "Replacement meter", "details": "", "owner_email": operator.email},
    )
    assert changed.status_code == 303
    closed = await client.post(f"/cases/{case.id}/close", data={"reason": "Fitted"})
    assert closed.status_code == 303
    page = (await client.get(f"/cases/{case.id}?done=closed")).text
    assert "Parts on order" in page and "Replacement meter" in page and "Fitted" in page
    session.expire_all()
    stored = session.get(Case, case.id)
    assert stored is not None and stored.status == CaseStatus.closed


async def test_the_owner_previews_edits_and_sends_the_overdue_update_once(
    client: httpx.AsyncClient, session: Session, operator: Colleague, ruth
) -> None:
    case = open_case(session, operator)
    case.next_update_due = utcnow() - timedelta(minutes=1)
    session.commit()
    [raised] = updates.raise_overdue_updates(session=session, now=utcnow())
    session.commit()
    route_improvement(session=session, improvement_id=raised, actor="t", channel="flow")
    [item] = plan_actions(session=session, improvement_id=raised, actor="t")
    session.commit()
    assert "overdue" in (await client.get("/cases?overdue=yes")).text

    before = snapshot()
    form = await client.get(f"/cases/{case.id}/update")
    assert snapshot() == before  # looking changes nothing
    assert form.status_code == 200
    assert f"An update on your case CASE-{case.id}: New water meter" in form.text
    assert "Dear Ruth Evans," in form.text
    key = re.search(r'name="key" value="([^"]+)"', form.text)
    assert key is not None

    edited = {"subject": "Your new meter", "body": "Dear Ruth,\n\nIt is on its way.",
              "next_update_due": "", "key": key.group(1)}  # fmt: skip
    for _ in range(2):  # a double click
        sent = await client.post(f"/cases/{case.id}/update", data=edited)
        assert sent.status_code == 303
    session.expire_all()
    [update] = session.exec(select(CaseUpdate)).all()
    assert (update.subject, update.sent_by, update.channel) == (
        "Your new meter", operator.email, "web"
    )  # fmt: skip
    emails = session.exec(select(OutboxEmail).where(OutboxEmail.template == "case_update")).all()
    assert len(emails) == 1
    assert session.get(Case, case.id).overdue_improvement_id is None
    assert session.get(type(item), item.id).status == ActionStatus.done

    empty = await client.post(f"/cases/{case.id}/update", data={"subject": "", "body": ""})
    assert empty.status_code == 422 and "is required" in empty.text


# --- the API -----------------------------------------------------------------------------------


async def test_the_api_opens_lists_changes_and_updates_a_case(
    client: httpx.AsyncClient, session: Session, operator: Colleague, ruth
) -> None:
    made = await client.post(
        "/api/cases", json={"customer_email": "ruth@example.com", "subject": "New water meter"}
    )
    assert made.status_code == 201, made.text
    case = made.json()
    assert made.headers["location"] == f"/api/cases/{case['id']}"
    assert (case["reference"], case["owner_email"], case["status"]) == (
        f"CASE-{case['id']}", operator.email, "open"
    )  # fmt: skip

    listed = (await client.get("/api/cases", params={"overdue": "false"})).json()
    assert [c["id"] for c in listed["items"]] == [case["id"]] and listed["total"] == 1

    delayed = await client.patch(
        f"/api/cases/{case['id']}", json={"delay": {"reason": "Parts on order"}}
    )
    assert delayed.status_code == 200, delayed.text
    assert delayed.json()["status"] == "delayed" and delayed.json()["next_update_due"]

    update = await client.post(
        f"/api/cases/{case['id']}/updates",
        json={"body": "It is on its way."},
        headers={"Idempotency-Key": "one"},
    )
    assert update.status_code == 201, update.text
    again = await client.post(
        f"/api/cases/{case['id']}/updates",
        json={"body": "It is on its way."},
        headers={"Idempotency-Key": "one"},
    )
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == update.json()["id"]
    assert update.json()["subject"].startswith(f"An update on your case CASE-{case['id']}")

    detail = (await client.get(f"/api/cases/{case['id']}")).json()
    assert [u["id"] for u in detail["updates"]] == [update.json()["id"]]
    assert [n["what"] for n in detail["history"]] == ["opened", "delayed", "update_sent"]

    closed = await client.patch(f"/api/cases/{case['id']}", json={"close": True})
    assert closed.json()["status"] == "closed" and closed.json()["next_update_due"] is None
    again = await client.patch(f"/api/cases/{case['id']}", json={"subject": "Reopen?"})
    assert again.status_code == 409 and again.json()["detail"].endswith(
        "is closed; it cannot change"
    )


async def test_api_errors_name_the_field(
    client: httpx.AsyncClient, session: Session, operator: Colleague, ruth
) -> None:
    before = snapshot()
    unknown = await client.post(
        "/api/cases", json={"customer_email": "nobody@example.com", "subject": "Hello"}
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"] == {
        "customer_email": "no customer has the email 'nobody@example.com'"
    }
    missing = await client.post("/api/cases", json={"subject": "Hello"})
    assert missing.status_code == 422 and "customer_email" in missing.json()["errors"]
    assert snapshot() == before

    case = open_case(session, operator)
    no_reason = await client.patch(f"/api/cases/{case.id}", json={"delay": {}})
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"] == {"delay.reason": "is required"}
    blank = await client.patch(f"/api/cases/{case.id}", json={"delay": {"reason": " "}})
    assert blank.json()["errors"] == {"reason": "is required: say why the case is off plan"}

    nowhere = await client.get("/api/cases/999999")
    assert nowhere.status_code == 404 and nowhere.json()["detail"] == "case CASE-999999 not found"


async def test_an_api_token_works_for_cases(
    anonymous: httpx.AsyncClient, session: Session, ruth
) -> None:
    from tasks.access import create_api_token

    asha = make_colleague(session, "Asha Patel")
    with session_scope() as own:
        _row, token = create_api_token(session=own, email=asha.email, name="script")
    answer = await anonymous.post(
        "/api/cases",
        json={"customer_email": "ruth@example.com", "subject": "Meter"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 201 and answer.json()["owner_email"] == asha.email
    assert session.exec(select(Improvement)).all() == []
