"""`improve factors` and `improve submit --activity` against the real database."""

from pathlib import Path

import pytest
from sqlmodel import Session, func, select
from typer.testing import CliRunner

from improve.cli import app
from models import ActivityLine, FactorSet, Improvement, Transition
from tests.factories import make_approver, make_colleague
from tests.tasks.test_estimates import FLAT_2026

runner = CliRunner()


@pytest.fixture
def flat_2026(tmp_path: Path) -> Path:
    path = tmp_path / "ghg-conversion-factors-2026-flat-format.csv"
    path.write_text(FLAT_2026)  # SYNTHETIC values
    return path


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_a_year_is_imported_put_in_force_and_the_old_one_chosen_again(
    session: Session, flat_2026: Path
) -> None:
    listed = run("factors", "list")
    assert "uk-2025" in listed and "yes" in listed  # the shipped set, loaded on first use

    imported = run("factors", "import", str(flat_2026), "--use")

    assert "Loaded uk-2026 (2026)" in imported and "now in force" in imported
    assert "diesel_litre" in imported  # published blank: the file lacks it, said so
    in_force = session.exec(select(FactorSet).where(FactorSet.in_force == True)).one()  # noqa: E712
    assert in_force.name == "uk-2026"
    shown = run("factors", "show", "uk-2026")
    assert "natural_gas_kwh: 0.2 kg CO2e per kWh — Fuels › Gaseous fuels › Natural gas" in shown
    assert "paper_sheet: 0.0049896 kg CO2e per sheet" in shown and "row 6; derived" in shown

    used = run("factors", "use", "uk-2025")

    assert "uk-2025 is in force for new estimates (was uk-2026)" in used
    session.expire_all()
    assert session.exec(select(FactorSet).where(FactorSet.name == "uk-2025")).one().in_force


def test_a_loaded_set_is_never_loaded_over_and_an_unknown_one_is_named(
    session: Session, flat_2026: Path
) -> None:
    run("factors", "import", str(flat_2026))

    again = runner.invoke(app, ["factors", "import", str(flat_2026)])
    unknown = runner.invoke(app, ["factors", "use", "uk-1999"])
    not_csv = runner.invoke(app, ["factors", "import", str(flat_2026.parent / "none.csv")])

    assert again.exit_code == 2 and "uk-2026 is already loaded" in again.output
    assert unknown.exit_code == 2 and "uk-1999 not found" in unknown.output
    assert not_csv.exit_code == 2 and "cannot read it" in not_csv.output
    assert session.exec(select(FactorSet.name)).all() == ["uk-2026"]


def test_submit_with_activity_works_the_figures_out(session: Session) -> None:
    asha = make_colleague(session, "Asha Patel", email="asha@example.org")
    make_approver(session, "Sam Lee", category="resource", limit=50_000)

    output = run(
        "submit", "--title", "E-statements", "--category", "resource", "--submitter", asha.email,
        "--co2e", "5", "--activity", "letters=2,000/month", "--activity", "pages=500/week",
    )  # fmt: skip

    assert "submitted" in output
    improvement = session.exec(select(Improvement)).one()
    # Letters: 484.228 kg CO2e; pages: 26,000 sheets × 4.9896 g × 1.3450779 kg/kg = 174.5 kg.
    assert improvement.kg_co2e == pytest.approx(484.228044 + 26_000 * 0.0049896 * 1.3450779)
    assert improvement.sheets_paper == 48_000 + 26_000
    assert len(session.exec(select(ActivityLine)).all()) == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("gas=12000/year", "activities[0].activity: factor set uk-2025 has no natural_gas_kwh"),
        ("parcels=5/week", "activities[0].activity"),
        ("letters=lots/month", "activities[0].quantity"),
        ("letters", "write ACTIVITY=QUANTITY/PER"),
    ],
)
def test_a_bad_activity_names_it_and_stores_nothing(
    session: Session, line: str, message: str
) -> None:
    make_colleague(session, "Asha Patel", email="asha@example.org")

    result = runner.invoke(
        app,
        ["submit", "--title", "Heat pump", "--category", "energy",
         "--submitter", "asha@example.org", "--activity", line],
    )  # fmt: skip

    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert session.exec(select(func.count()).select_from(Improvement)).one() == 0
    assert session.exec(select(func.count()).select_from(Transition)).one() == 0
