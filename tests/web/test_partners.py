"""Partner and process pages and their API: the footprint, the improvements, 404s, strangers."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlmodel import Session

from models import Colleague, RecordKind, Status
from models.db import session_scope, utcnow
from tasks.access import create_api_token
from tasks.footprint import linked_improvements
from tests.factories import make_improvement, make_partner, make_process, make_record
from tests.web.helpers import snapshot


def start_of_this_year() -> datetime:
    return datetime(utcnow().year, 1, 1, tzinfo=UTC)


@pytest.fixture
def swift(session: Session):
    """Swift Parcels: 120 miles of deliveries this year (49.1112 kg CO2e), two improvements."""
    swift = make_partner(session, "Swift Parcels", contact_name="Una Fox", service="Courier")
    other = make_partner(session, "Inkwell Print", service="Print and post")
    billing = make_process(session, "billing")
    make_record(session, billing, RecordKind.partner_delivery, start_of_this_year(), 120,
                partner_id=swift.id)  # fmt: skip
    make_record(session, billing, RecordKind.site_visit, start_of_this_year(), 2,
                partner_id=swift.id)  # fmt: skip
    make_record(session, billing, RecordKind.letter_posted, start_of_this_year(), 1000,
                partner_id=other.id)  # fmt: skip
    make_improvement(session, None, "Consolidate courier collections", category="carbon",
                     status=Status.completed, partners=[swift], kg_co2e=2900,
                     measured_kg_co2e=2610)  # fmt: skip
    make_improvement(session, None, "Return packaging to the supplier", category="waste",
                     partners=[swift], kg_co2e=120)  # fmt: skip
    make_improvement(session, None, "Recycled paper for letters", partners=[other])
    return swift


async def test_the_list_shows_each_partners_footprint_and_improvements(
    client: httpx.AsyncClient, swift
) -> None:
    answer = await client.get("/partners")

    assert answer.status_code == 200
    text = answer.text
    assert f'href="/partners/{swift.id}"' in text and "Swift Parcels" in text
    # 120 miles × 0.40926 = 49.1 kg; one open and one completed improvement
    row = text[text.index("Swift Parcels") : text.index("</tr>", text.index("Swift Parcels"))]
    assert "49.1" in row and '<td class="num">1</td>' in row
    assert "Inkwell Print" in text and "20.2" in text  # 1,000 letters: 20.18 kg
    assert 'href="/partners" aria-current="page"' in text  # in the staff navigation


async def test_a_partners_page_shows_its_footprint_with_sources_and_its_improvements(
    client: httpx.AsyncClient, swift
) -> None:
    answer = await client.get(f"/partners/{swift.id}")

    assert answer.status_code == 200
    text = answer.text
    assert "Una Fox" in text and "Courier" in text and swift.email in text
    assert "Partner delivery" in text and "120 miles" in text and "49.1" in text
    assert "0.40926 kg CO2e per mile" in text and "row 27_303_3106_9_1" in text
    assert "Site visit" in text and "counted, not converted" in text
    assert "Consolidate courier collections" in text and "2,900" in text and "2,610" in text
    assert "Return packaging to the supplier" in text and "not measured" in text
    assert "Recycled paper for letters" not in text  # another partner's
    assert f'href="/records?partner={swift.id}"' in text
    assert start_of_this_year().strftime("%B %Y") in text  # the month-by-month table


async def test_an_improvement_page_links_to_its_partners(
    client: httpx.AsyncClient, session: Session, swift
) -> None:
    [linked] = [i for i in linked_improvements(session=session, partner_id=swift.id)
                if i.improvement.title == "Consolidate courier collections"]  # fmt: skip

    answer = await client.get(f"/improvements/{linked.improvement.id}")

    assert f'<a href="/partners/{swift.id}">Swift Parcels</a>' in answer.text


async def test_an_earlier_year_on_the_page(
    client: httpx.AsyncClient, session: Session, swift
) -> None:
    make_record(session, make_process(session), RecordKind.partner_delivery,
                datetime(2024, 3, 3, tzinfo=UTC), 10, partner_id=swift.id)  # fmt: skip

    answer = await client.get(f"/partners/{swift.id}?year=2024")

    assert "Footprint in 2024" in answer.text and "10 miles" in answer.text
    assert "120 miles" not in answer.text


async def test_a_process_page(client: httpx.AsyncClient, session: Session) -> None:
    depot = make_process(session, "field visits", description="Engineers on the road")
    make_record(session, depot, RecordKind.vehicle_trip, start_of_this_year(), 50, detail="car")
    make_improvement(session, None, "Route planning", category="carbon", process_id=depot.id,
                     kg_co2e=9800)  # fmt: skip

    answer = await client.get(f"/processes/{depot.id}")

    assert answer.status_code == 200
    text = answer.text
    assert "field visits" in text and "Engineers on the road" in text
    # 50 car miles × 0.26915 = 13.4575 kg
    assert "car miles" in text and "13.5" in text and "0.26915 kg CO2e per mile" in text
    assert "Route planning" in text and "9,800" in text
    assert 'href="/records?process=field%20visits"' in text


@pytest.mark.parametrize("path", ["/partners/4242", "/processes/4242"])
async def test_an_unknown_one_is_a_404_page_naming_it(client: httpx.AsyncClient, path) -> None:
    answer = await client.get(path)

    assert answer.status_code == 404
    assert "4242 not found" in answer.text


async def test_the_api_with_a_token(
    anonymous: httpx.AsyncClient, operator: Colleague, swift
) -> None:
    with session_scope() as session:
        _, token = create_api_token(session=session, email=operator.email, name="report")
    anonymous.headers["Authorization"] = f"Bearer {token}"

    listed = await anonymous.get("/api/partners")
    detail = await anonymous.get(
        f"/api/partners/{swift.id}", params={"since": f"{utcnow().year}-01-01"}
    )

    assert listed.status_code == 200, listed.text
    [row] = [p for p in listed.json()["items"] if p["id"] == swift.id]
    assert row["kg_co2e_this_year"] == pytest.approx(49.1112)
    assert (row["open_improvements"], row["completed_improvements"]) == (1, 1)
    assert row["url"].endswith(f"/partners/{swift.id}")
    body = detail.json()
    assert detail.status_code == 200, detail.text
    assert body["name"] == "Swift Parcels" and body["records_url"].endswith(
        f"/records?partner={swift.id}"
    )
    lines = {line["kind"]: line for line in body["footprint"]["lines"]}
    assert lines["partner_delivery"]["kg_co2e"] == pytest.approx(49.1112)
    assert lines["partner_delivery"]["factors"][0]["source_row"] == "27_303_3106_9_1"
    assert lines["site_visit"]["kg_co2e"] is None and lines["site_visit"]["quantity"] == 2
    assert body["footprint"]["factor_set"] == "uk-2025"
    assert len(body["footprint"]["months"]) == 12
    improvements = {i["title"]: i for i in body["improvements"]}
    assert improvements["Consolidate courier collections"]["actual_kg_co2e"] == 2610
    assert improvements["Return packaging to the supplier"]["actual_kg_co2e"] is None


async def test_the_process_footprint_over_the_days_asked_for(
    client: httpx.AsyncClient, session: Session
) -> None:
    depot = make_process(session, "depot")
    for moment, kwh in [
        (datetime(2025, 3, 1, tzinfo=UTC), 100),
        (datetime(2025, 3, 31, 23, tzinfo=UTC), 50),  # the last day is included
        (datetime(2025, 4, 1, tzinfo=UTC), 1000),
        (datetime(2024, 12, 31, 23, tzinfo=UTC), 10),
    ]:
        make_record(session, depot, RecordKind.meter_reading, moment, kwh)

    answer = await client.get(
        f"/api/processes/{depot.id}/footprint",
        params={"since": "2025-03-01", "until": "2025-03-31"},
    )

    assert answer.status_code == 200, answer.text
    footprint = answer.json()["footprint"]
    assert footprint["kg_co2e"] == pytest.approx(150 * 0.177)  # 26.55 kg; April left out
    assert footprint["months"][-1] == {"month": "2025-03-01", "kg_co2e": pytest.approx(26.55)}
    # Until alone: from 1 January of its year, so December 2024 is left out too.
    until_only = await client.get(
        f"/api/processes/{depot.id}/footprint", params={"until": "2025-03-31"}
    )
    assert until_only.json()["footprint"]["kg_co2e"] == pytest.approx(26.55)
    assert until_only.json()["footprint"]["since"] == "2025-01-01T00:00:00Z"


async def test_api_refusals_name_what_is_wrong(client: httpx.AsyncClient, session: Session) -> None:
    depot = make_process(session)

    unknown = await client.get("/api/partners/4242")
    unknown_process = await client.get("/api/processes/4242/footprint")
    backwards = await client.get(
        f"/api/processes/{depot.id}/footprint",
        params={"since": "2025-05-01", "until": "2025-04-01"},
    )
    not_a_day = await client.get(f"/api/processes/{depot.id}/footprint", params={"since": "0"})
    tomorrow = await client.get(
        f"/api/processes/{depot.id}/footprint",
        params={"since": (utcnow() + timedelta(days=1)).date().isoformat()},
    )

    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "partner 4242 not found", "errors": {}}
    assert unknown_process.json()["detail"] == "service process 4242 not found"
    assert backwards.status_code == 422 and set(backwards.json()["errors"]) == {"since"}
    assert not_a_day.status_code == 422 and set(not_a_day.json()["errors"]) == {"since"}
    assert tomorrow.status_code == 422 and "today" in tomorrow.json()["errors"]["since"]


@pytest.mark.parametrize(
    "path", ["/partners", "/partners/1", "/processes/1", "/api/partners", "/api/partners/1",
             "/api/processes/1/footprint"],
)  # fmt: skip
async def test_a_stranger_gets_nothing(anonymous: httpx.AsyncClient, swift, path: str) -> None:
    before = snapshot()

    answer = await anonymous.get(path)

    assert answer.status_code in (303, 401)
    assert "Swift" not in answer.text and "49.1" not in answer.text
    assert snapshot() == before
