"""Service records over the API (with a token) and on the staff pages."""

import httpx
import pytest
from sqlmodel import Session, func, select

from models import ServiceRecord
from tasks.access import create_api_token
from tests.factories import make_colleague, make_customer, make_partner
from tests.web.helpers import snapshot


@pytest.fixture
def bearer(session: Session) -> dict[str, str]:
    colleague = make_colleague(session, "Billing Export")
    _, token = create_api_token(session=session, email=colleague.email, name="billing export")
    session.commit()
    return {"Authorization": f"Bearer {token}"}


def visit(key: str, day: str, **fields: object) -> dict[str, object]:
    return {"key": key, "process": "field visits", "kind": "site_visit",
            "occurred_at": f"{day}T10:00:00", "quantity": 1, **fields}  # fmt: skip


def stored(session: Session) -> int:
    return session.exec(select(func.count()).select_from(ServiceRecord)).one()


async def test_post_stores_good_records_names_bad_ones_and_is_idempotent(
    anonymous: httpx.AsyncClient, bearer: dict[str, str], session: Session
) -> None:
    customer = make_customer(session, email="ann@example.com")
    body = {
        "records": [
            visit("V-1", "2026-10-02", customer_email="ann@example.com", detail="no access"),
            visit("V-2", "2026-10-03", quantity="one"),
            visit("V-3", "2026-10-04", customer_email="ghost@example.com"),
            {"process": "fleet", "kind": "vehicle_trip", "occurred_at": "2026-10-05T07:00Z",
             "quantity": 31.5, "route": "North loop"},
        ]
    }  # fmt: skip

    first = await anonymous.post("/api/records", json=body, headers=bearer)
    again = await anonymous.post("/api/records", json=body, headers=bearer)

    assert first.status_code == 200, first.text
    assert first.json() == {
        "taken": 2,
        "already": 0,
        "refused": [
            {"field": "records[1].quantity", "message": "must be a number"},
            {
                "field": "records[2].customer_email",
                "message": "no customer has the email ghost@example.com",
            },
        ],
        "processes_created": ["field visits", "fleet"],
    }
    assert again.json()["taken"] == 0 and again.json()["already"] == 2
    assert stored(session) == 2
    row = session.exec(select(ServiceRecord).where(ServiceRecord.key == "V-1")).one()
    assert row.customer_id == customer.id


async def test_a_body_over_the_limit_is_refused_whole(
    anonymous: httpx.AsyncClient, bearer: dict[str, str], session: Session
) -> None:
    body = {"records": [visit(f"V-{n}", "2026-10-02") for n in range(10_001)]}

    answer = await anonymous.post("/api/records", json=body, headers=bearer)

    assert answer.status_code == 422
    assert "records" in answer.json()["errors"]
    assert stored(session) == 0


async def test_get_filters_like_the_page(
    anonymous: httpx.AsyncClient, bearer: dict[str, str], session: Session
) -> None:
    customer = make_customer(session, email="ann@example.com")
    partner = make_partner(session, email="vans@example.net")
    body = {
        "records": [
            visit("V-1", "2026-10-01", customer_email=customer.email),
            visit("V-2", "2026-10-31", customer_email=customer.email),
            visit("V-3", "2026-11-01", customer_email=customer.email),
            visit("V-4", "2026-10-15"),
            {"key": "D-1", "process": "deliveries", "kind": "partner_delivery",
             "occurred_at": "2026-10-20T09:00", "quantity": 12, "partner_email": partner.email},
        ]
    }  # fmt: skip
    assert (await anonymous.post("/api/records", json=body, headers=bearer)).status_code == 200

    query = f"kind=site_visit&customer={customer.id}&since=2026-10-01&until=2026-10-31"
    october = await anonymous.get(f"/api/records?{query}", headers=bearer)
    delivery = await anonymous.get(f"/api/records?partner={partner.id}", headers=bearer)
    paged = await anonymous.get(
        "/api/records?process=field visits&limit=1&offset=1", headers=bearer
    )
    processes = await anonymous.get("/api/processes", headers=bearer)

    assert october.status_code == 200, october.text
    assert [r["key"] for r in october.json()["items"]] == ["V-2", "V-1"]
    assert october.json()["total"] == 2
    [item] = delivery.json()["items"]
    assert (item["key"], item["process"], item["unit"], item["quantity"]) == (
        "D-1", "deliveries", "miles", 12,
    )  # fmt: skip
    assert [r["key"] for r in paged.json()["items"]] == ["V-2"]
    assert paged.json()["total"] == 4
    by_name = {p["name"]: p for p in processes.json()}
    assert by_name["field visits"]["by_kind"] == {"site_visit": 4}
    assert by_name["deliveries"]["records"] == 1


async def test_the_page_lists_filters_and_pages(
    client: httpx.AsyncClient, session: Session
) -> None:
    from tasks.records import import_records

    customer = make_customer(session)
    rows = [visit(f"V-{n}", f"2026-10-{n:02}", customer_email=customer.email) for n in range(1, 31)]
    rows += [visit(f"W-{n}", "2026-09-01", site=f"Depot {n}") for n in range(120)]
    import_records(session=session, rows=rows)

    evidence = await client.get(
        f"/records?kind=site_visit&customer={customer.id}&since=2026-10-01&until=2026-10-31"
    )
    everything = await client.get("/records")
    second = await client.get("/records?page=2")
    processes = await client.get("/processes")
    bad = await client.get("/records?since=last+week")

    assert evidence.status_code == 200
    assert "30 records of site visit" in evidence.text
    assert "V-30" in evidence.text and "W-1" not in evidence.text
    assert "150 records" in everything.text and 'rel="next"' in everything.text
    assert "Showing 101–150 of 150" in second.text and 'rel="prev"' in second.text
    assert "field visits" in processes.text and "150" in processes.text
    assert bad.status_code == 422 and "since" in bad.text
    assert 'href="/records"' in everything.text  # in the navigation


async def test_a_stranger_gets_nothing(anonymous: httpx.AsyncClient) -> None:
    before = snapshot()

    posted = await anonymous.post("/api/records", json={"records": [visit("V-1", "2026-10-01")]})
    listed = await anonymous.get("/api/records")
    shown = await anonymous.get("/records")

    assert posted.status_code == 401 and listed.status_code == 401
    assert shown.status_code == 303 and shown.headers["location"].startswith("/signin")
    assert snapshot() == before
