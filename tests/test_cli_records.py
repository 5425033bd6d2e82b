"""`improve import records` and `improve process`: the summary a person reads, and exit codes."""

from pathlib import Path

from sqlmodel import Session, func, select
from typer.testing import CliRunner

from improve.cli import app
from models import ServiceRecord
from tests.factories import make_customer

runner = CliRunner()


def stored(session: Session) -> int:
    return session.exec(select(func.count()).select_from(ServiceRecord)).one()


def test_import_summarises_taken_already_and_refused_rows(session: Session, tmp_path: Path) -> None:
    make_customer(session, email="ann@example.com")
    path = tmp_path / "october.csv"
    bad = "".join(f"bad-{n},billing,letter_posted,2026-10-01,lots,,,,,\n" for n in range(25))
    path.write_text(
        "key,process,kind,occurred_at,quantity,customer_email,partner_email,site,route,detail\n"
        "L-1,billing,letter_posted,2026-10-01T09:00,1,ann@example.com,,,,bill\n"
        "L-2,billing,letter_posted,2026-10-01T09:00,1,,,,,bill\n" + bad
    )

    first = runner.invoke(app, ["import", "records", str(path)])

    assert first.exit_code == 0, first.output
    assert _count(first.output, "taken") == 2 and _count(first.output, "refused") == 25
    assert "New processes: billing" in first.output
    assert "line 4, quantity: must be a number" in first.output
    assert "line 23, quantity" in first.output and "line 24, quantity" not in first.output
    assert "... and 5 more (--all lists them)" in first.output
    assert stored(session) == 2

    again = runner.invoke(app, ["import", "records", str(path), "--all"])

    assert again.exit_code == 0, again.output
    assert _count(again.output, "taken") == 0 and _count(again.output, "already there") == 2
    assert "line 28, quantity: must be a number" in again.output
    assert stored(session) == 2


def _count(output: str, label: str) -> int:
    """The number on the summary table's row for `label`."""
    line = next(line for line in output.splitlines() if label in line)
    return int(line.replace("│", " ").split()[-1])


def test_a_file_that_cannot_be_read_exits_1_and_stores_nothing(
    session: Session, tmp_path: Path
) -> None:
    path = tmp_path / "typo.csv"
    path.write_text("process,kind,when,quantity\nbilling,letter_posted,2026-10-01,1\n")

    unknown = runner.invoke(app, ["import", "records", str(path)])
    missing = runner.invoke(app, ["import", "records", str(tmp_path / "nowhere.csv")])

    assert unknown.exit_code == 1
    assert "unknown column 'when'" in unknown.output
    assert missing.exit_code == 1 and "cannot read" in missing.output
    assert stored(session) == 0


def test_processes_are_added_and_listed_with_their_counts(tmp_path: Path) -> None:
    added = runner.invoke(app, ["process", "add", "field visits", "--description", "Engineers"])
    again = runner.invoke(app, ["process", "add", "field visits"])
    path = tmp_path / "visits.csv"
    path.write_text("process,kind,occurred_at,quantity\nfield visits,site_visit,2026-10-01,1\n")
    runner.invoke(app, ["import", "records", str(path)])

    listed = runner.invoke(app, ["process", "list"])

    assert "Process 'field visits' added." in added.output
    assert "is already there" in again.output
    row = next(line for line in listed.output.splitlines() if "field visits" in line)
    assert "site_visit 1" in row and "Engineers" in row
