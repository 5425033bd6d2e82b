"""Factor arithmetic against hand-worked examples, each from a row of the published file."""

from pathlib import Path

import pytest
from sqlmodel import Session, select

from models import ActivityLine, Basis, Factor, FactorSet, Per, Status
from tasks.estimates import ActivityIn, comparison, comparison_by_category, set_activity, working
from tasks.factors import (
    FactorFileError,
    FactorMissing,
    FactorSetExists,
    factor_set_in_force,
    load_factor_set,
    read_flat_file,
    use_factor_set,
)
from tests.factories import make_improvement

# A flat file in the government's layout, with title lines above the header as published.
# Values marked SYNTHETIC are test values, not published factors.
FLAT_2026 = """\
UK Government GHG Conversion Factors for Company Reporting,,,,,,,,,
Factors by Category,,,,,,,,,
ID,Scope,Level 1,Level 2,Level 3,Level 4,Column Text,UOM,GHG/Unit,GHG Conversion Factor 2026
1,Scope 2,UK electricity,Electricity generated,Electricity: UK,kWh,,kWh,kg CO2e,0.150
2,Scope 2,UK electricity,Electricity generated,Electricity: UK,kWh,,kWh,kg CO2 per unit,0.149
3,Scope 1,Fuels,Gaseous fuels,Natural gas,,,kWh (Gross CV),kg CO2e,0.200
4,Scope 1,Fuels,Liquid fuels,Diesel (average biofuel blend),,,litres,kg CO2e,
5,Scope 3,Freighting goods,Vans,Average (up to 3.5 tonnes),,Unknown,miles,kg CO2e,"0.400"
6,Scope 3,Material use,Paper,Paper and board: paper,,Primary material production,tonnes,kg CO2e,\
"1,000.0"
"""


@pytest.fixture
def flat_2026(tmp_path: Path) -> Path:
    path = tmp_path / "ghg-conversion-factors-2026-flat-format.csv"
    path.write_text(FLAT_2026)  # SYNTHETIC values
    return path


def test_the_shipped_set_cites_each_row_of_the_2025_file(session: Session) -> None:
    factor_set = factor_set_in_force(session=session)
    assert (factor_set.name, factor_set.year) == ("uk-2025", 2025)
    assert "Conversion Factors for Company Reporting 2025" in factor_set.document
    factors = {f.activity: f for f in session.exec(select(Factor)).all()}
    # Published: Freighting goods › Vans › Average (up to 3.5 tonnes) › Unknown, miles: 0.40926.
    assert factors["van_mile"].kg_co2e == 0.40926
    assert factors["van_mile"].source_row == "27_303_3106_9_1"
    # Published per tonne (1,345.0779); Improve's unit is the kg.
    assert factors["paper_kg"].kg_co2e == pytest.approx(1.3450779)
    # Derived, and saying how: 4.99 g a sheet.
    assert factors["paper_sheet"].kg_co2e == pytest.approx(1.3450779 * 0.0049896)
    assert "A4" in factors["paper_sheet"].note
    assert all(f.source_row for f in factors.values())
    assert "natural_gas_kwh" not in factors  # not shipped: no number without its source


def test_letters_a_month_worked_out_by_hand(session: Session) -> None:
    improvement = make_improvement(session, None, kg_co2e=0)
    assert improvement.id is not None
    set_activity(
        session=session,
        improvement_id=improvement.id,
        basis=Basis.forecast,
        lines=[ActivityIn(activity="letters", quantity=2000, per=Per.month)],
    )
    # 2,000 × 12 = 24,000 letters a year; a letter is 15 g of paper at 1,345.0779 kg CO2e/tonne:
    # 24,000 × 0.015 × 1.3450779 = 484.228 kg CO2e; 48,000 sheets; 360 kg of paper; £20,400.
    assert improvement.kg_co2e == pytest.approx(484.228044)
    assert improvement.sheets_paper == 48_000
    assert improvement.kg_waste == pytest.approx(360)
    assert improvement.annual_saving == pytest.approx(20_400)
    lines = working(session=session, improvement_id=improvement.id)
    assert lines[0]["text"] == "2,000 fewer letters posted a month"
    assert "row 19_506_5164_15_1" in lines[0]["factors"][0]["source"]


def test_van_miles_a_week_and_the_actual_beside_it(session: Session) -> None:
    improvement = make_improvement(session, None)
    assert improvement.id is not None
    forecast = ActivityIn(activity="van_miles", quantity=400, per=Per.week)
    set_activity(
        session=session, improvement_id=improvement.id, basis=Basis.forecast, lines=[forecast]
    )
    # 400 × 52 = 20,800 miles × 0.40926 = 8,512.608 kg CO2e; × £0.45 = £9,360.
    assert improvement.kg_co2e == pytest.approx(8512.608)
    assert improvement.annual_saving == pytest.approx(9360)
    actual = ActivityIn(activity="van_miles", quantity=300, per=Per.week)
    set_activity(session=session, improvement_id=improvement.id, basis=Basis.actual, lines=[actual])
    assert improvement.measured_kg_co2e == pytest.approx(6384.456)
    rows = {row["measure"]: row for row in comparison(improvement)}
    assert rows["kg_co2e"]["variance"] == pytest.approx(-2128.152)
    assert rows["kg_co2e"]["variance_percent"] == pytest.approx(-25)
    improvement.status = Status.completed
    session.add(improvement)
    session.flush()
    total = {row["measure"]: row for row in comparison_by_category(session=session)["total"]}
    assert total["saving"]["forecast"] == pytest.approx(9360)
    assert total["saving"]["actual"] == pytest.approx(7020)


def test_gas_to_heat_pump_needs_the_gas_factor_and_uses_the_set_it_started_with(
    session: Session, flat_2026: Path
) -> None:
    improvement = make_improvement(session, None)
    assert improvement.id is not None
    switch = [
        ActivityIn(activity="gas", quantity=12_000, per=Per.year),
        ActivityIn(activity="electricity", quantity=-4_000, per=Per.year),
    ]
    with pytest.raises(FactorMissing, match="has no natural_gas_kwh factor"):
        set_activity(
            session=session, improvement_id=improvement.id, basis=Basis.forecast, lines=switch
        )
    factor_set, missing = load_factor_set(session=session, path=flat_2026, use=True)
    assert (factor_set.name, factor_set.year, factor_set.in_force) == ("uk-2026", 2026, True)
    assert "diesel_litre" in missing  # published blank: never read as zero
    set_activity(session=session, improvement_id=improvement.id, basis=Basis.forecast, lines=switch)
    # 12,000 × 0.200 − 4,000 × 0.150 = 1,800 kg CO2e (SYNTHETIC factors); 8,000 kWh less.
    assert improvement.kg_co2e == pytest.approx(1800)
    assert improvement.kwh == pytest.approx(8000)
    # A newer set in force does not change the estimate already made, nor its actual.
    use_factor_set(session=session, name="uk-2025")
    set_activity(session=session, improvement_id=improvement.id, basis=Basis.actual, lines=switch)
    assert improvement.measured_kg_co2e == pytest.approx(1800)
    used = {line.factor_set_id for line in session.exec(select(ActivityLine)).all()}
    assert used == {factor_set.id}


def test_a_loaded_set_never_changes_and_a_bad_file_is_named(
    session: Session, flat_2026: Path, tmp_path: Path
) -> None:
    load_factor_set(session=session, path=flat_2026)
    with pytest.raises(FactorSetExists, match="uk-2026 is already loaded"):
        load_factor_set(session=session, path=flat_2026)
    bad = tmp_path / "bad.csv"
    bad.write_text(FLAT_2026.replace('"0.400"', "zero point four"))
    with pytest.raises(FactorFileError, match=r"line 8: factor 'zero point four' is not a number"):
        read_flat_file(bad)
    (tmp_path / "other.csv").write_text("name,value\na,1\n")
    with pytest.raises(FactorFileError, match="no header row"):
        read_flat_file(tmp_path / "other.csv")
    assert session.exec(select(FactorSet).where(FactorSet.name == "uk-2026")).one()


def test_an_unknown_activity_is_named() -> None:
    with pytest.raises(ValueError, match="unknown activity 'parcels'"):
        ActivityIn(activity="parcels", quantity=1)
