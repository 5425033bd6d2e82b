"""Estimates from activity in every web door, and forecast beside actual on every view of them.

Figures are worked by hand from the shipped uk-2025 set (tests/tasks/test_estimates.py): a van
mile is 0.40926 kg CO2e and £0.45; a letter 15 g of paper at 1,345.0779 kg CO2e a tonne and £0.85.
"""

import httpx
import pytest
from sqlmodel import Session, select

from models import ActionStatus, ActivityLine, Basis, Category, Improvement, Per, Status
from tasks.estimates import ActivityIn, set_activity
from tasks.planning import complete_improvement
from tests.factories import make_colleague, make_improvement
from tests.web.conftest import Events
from tests.web.helpers import action_link, snapshot
from tests.web.test_submit import opened


async def test_the_form_works_letters_out_and_the_page_shows_the_working(
    client: httpx.AsyncClient, session: Session, events: Events
) -> None:
    response = await client.post(
        "/submit",
        data={
            **await opened(client),
            "kg_co2e": "999",  # typed, but the activity decides
            "activity_0": "letters",
            "quantity_0": "2,000",
            "per_0": "month",
        },
    )

    assert response.status_code == 303, response.text
    improvement = session.exec(select(Improvement)).one()
    # 24,000 letters a year × 0.015 kg × 1.3450779 = 484.228 kg CO2e; 48,000 sheets; £20,400.
    assert improvement.kg_co2e == pytest.approx(484.228044)
    assert (improvement.sheets_paper, improvement.annual_saving) == (48_000, 20_400)
    assert improvement.estimated_cost == 1500  # the one figure activity does not give
    page = (await client.get(response.headers["location"])).text
    assert "How the figures were worked out" in page
    for text in [
        "2,000 fewer letters posted a month",
        "24,000 letter",
        "kg CO2e per letter",
        "row 19_506_5164_15_1",  # the published row of paper, primary material production
        "Derived: paper_kg × 0.015 kg",
        "factor set uk-2025",
        "484 kg CO2e",
        "Forecast and actual",
    ]:
        assert text in page, text


async def test_a_half_filled_row_is_named_and_what_was_typed_comes_back(
    client: httpx.AsyncClient, events: Events
) -> None:
    form = {**await opened(client), "quantity_1": "400", "per_1": "week"}
    before = snapshot()

    response = await client.post("/submit", data=form)

    assert response.status_code == 422
    assert 'id="activity_1-error"' in response.text
    assert "What changes, line 2: choose what changes" in response.text
    assert 'value="400"' in response.text
    assert '<option value="week" selected>' in response.text
    assert snapshot() == before
    assert events.emitted() == []


async def test_the_api_works_out_activity_lines(
    client: httpx.AsyncClient, session: Session, events: Events
) -> None:
    response = await client.post(
        "/api/improvements",
        json={
            "title": "Route vans by postcode",
            "category": "carbon",
            "kg_co2e": 1,  # ignored: the lines set it
            "activities": [{"activity": "van_miles", "quantity": 400, "per": "week"}],
        },
    )

    assert response.status_code == 201, response.text
    body = response.json()
    # 400 × 52 = 20,800 miles × 0.40926 = 8,512.608 kg CO2e; × £0.45 = £9,360.
    assert body["kg_co2e"] == pytest.approx(8512.608)
    assert body["annual_saving"] == pytest.approx(9360)
    assert body["factor_set_id"] is not None
    detail = (await client.get(f"/api/improvements/{body['id']}")).json()
    [line] = detail["working"]
    assert (line["basis"], line["text"]) == ("forecast", "400 fewer van miles a week")
    assert line["factors"][0]["kg_co2e_per_unit"] == 0.40926
    assert "row 27_303_3106_9_1" in line["factors"][0]["source"]
    rows = {row["measure"]: row for row in detail["forecast_vs_actual"]}
    assert rows["kg_co2e"]["forecast"] == pytest.approx(8512.608)
    assert rows["kg_co2e"]["actual"] is None


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ({"activity": "parcels", "quantity": 5}, "activities[0].activity", "unknown activity"),
        ({"activity": "letters", "quantity": "lots"}, "activities[0].quantity", "a number"),
        ({"activity": "letters", "quantity": 5, "per": "day"}, "activities[0].per", "one of"),
        # At most a million a period, so a year's figures always fit the improvement's columns.
        ({"activity": "letters", "quantity": 2e6}, "activities[0].quantity", "at most 1,000,000"),
        # uk-2025 as shipped has no natural gas row: no number without its source.
        (
            {"activity": "gas", "quantity": 12000},
            "activities[0].activity",
            "factor set uk-2025 has no natural_gas_kwh factor",
        ),
    ],
)
async def test_a_bad_line_refuses_the_whole_submission_naming_it(
    client: httpx.AsyncClient,
    events: Events,
    line: dict[str, object],
    field: str,
    message: str,
) -> None:
    before = snapshot()

    response = await client.post(
        "/api/improvements",
        json={"title": "Heat pump", "category": "energy", "activities": [line]},
    )

    assert response.status_code == 422, response.text
    assert message in response.json()["errors"][field]
    assert snapshot() == before
    assert events.emitted() == []


async def test_a_missing_factor_on_the_form_is_shown_on_its_row(
    client: httpx.AsyncClient, events: Events
) -> None:
    before = snapshot()

    response = await client.post(
        "/submit",
        data={**await opened(client), "activity_2": "gas", "quantity_2": "12000"},
    )

    assert response.status_code == 422
    assert 'id="activity_2-error"' in response.text
    assert "has no natural_gas_kwh factor" in response.text
    assert '<option value="gas" selected>' in response.text
    assert snapshot() == before


async def test_measured_activity_at_completion_sits_beside_the_forecast_everywhere(
    client: httpx.AsyncClient, session: Session, events: Events
) -> None:
    owner = make_colleague(session, "Omar Hale")
    improvement = make_improvement(
        session, owner, title="Route vans by postcode", category=Category.carbon
    )
    assert improvement.id is not None
    set_activity(
        session=session,
        improvement_id=improvement.id,
        basis=Basis.forecast,
        lines=[ActivityIn(activity="van_miles", quantity=400, per=Per.week)],
    )
    improvement.status = Status.in_progress
    session.add(improvement)
    session.commit()
    typed, typed_path = action_link(session, improvement, owner, title="Retrain drivers")
    item, path = action_link(
        session, improvement, owner, title="Measure the miles after a month", position=2
    )
    assert (await client.post(typed_path, data={"measured_saving": "100"})).status_code == 200

    response = await client.post(
        path,
        data={
            "measured_kg_co2e": "5",  # ignored: the measured activity decides this item
            "activity_0": "van_miles",
            "quantity_0": "300",
            "per_0": "week",
        },
    )

    assert response.status_code == 200, response.text
    session.refresh(item)
    assert item.status == ActionStatus.done
    assert item.measured_kg_co2e is None
    actual = session.exec(select(ActivityLine).where(ActivityLine.basis == Basis.actual)).one()
    assert actual.kg_co2e == pytest.approx(6384.456)  # 15,600 miles × 0.40926
    assert complete_improvement(session=session, improvement_id=improvement.id, actor="test")
    session.commit()
    session.refresh(improvement)
    assert improvement.measured_kg_co2e == pytest.approx(6384.456)
    # The typed £100 of the first item and the £7,020 of the measured miles, each once.
    assert improvement.measured_saving == pytest.approx(7120)

    page = (await client.get(f"/improvements/{improvement.id}")).text
    assert "300 fewer van miles a week" in page and "400 fewer van miles a week" in page
    assert "−2,128 kg CO2e" in page and "-25%" in page
    detail = (await client.get(f"/api/improvements/{improvement.id}")).json()
    assert [line["basis"] for line in detail["working"]] == ["forecast", "actual"]
    rows = {row["measure"]: row for row in detail["forecast_vs_actual"]}
    assert rows["kg_co2e"]["variance"] == pytest.approx(-2128.152)
    assert rows["kg_co2e"]["variance_percent"] == pytest.approx(-25)
    impact = (await client.get("/api/impact")).json()
    carbon = {row["measure"]: row for row in impact["by_category"]["carbon"]}
    assert carbon["kg_co2e"]["actual"] == pytest.approx(6384.456)
    total = {row["measure"]: row for row in impact["total"]}
    assert total["saving"]["forecast"] == pytest.approx(9360)
    assert total["saving"]["actual"] == pytest.approx(7120)
    dashboard = (await client.get("/")).text
    assert "Forecast and actual, completed improvements" in dashboard
    assert "−2,128 kg CO2e" in dashboard


async def test_a_missing_factor_at_completion_leaves_the_item_open(
    client: httpx.AsyncClient, session: Session, events: Events
) -> None:
    owner = make_colleague(session, "Omar Hale")
    improvement = make_improvement(session, owner, status=Status.in_progress)
    item, path = action_link(session, improvement, owner)
    before = snapshot()

    response = await client.post(
        path, data={"activity_0": "gas", "quantity_0": "1000", "note": "meter read"}
    )

    assert response.status_code == 422
    assert 'id="activity_0-error"' in response.text
    assert "has no natural_gas_kwh factor" in response.text
    assert "meter read</textarea>" in response.text
    assert snapshot() == before
    assert events.emitted() == []


async def test_the_factors_page_lists_each_set_with_its_sources(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/factors")).text

    assert "uk-2025" in page and "in force" in page
    assert "27_303_3106_9_1" in page  # the van mile's published row
    assert "Conversion Factors for Company Reporting 2025" in page
    assert "letters posted" in page
