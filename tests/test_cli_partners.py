"""`improve partner`: add, set whether they hear of policies, list; bad input named, exit 2."""

from sqlmodel import Session, select
from typer.testing import CliRunner

from improve.cli import app
from models import Partner

runner = CliRunner(env={"COLUMNS": "200"})  # one line per row, as rich wraps at 80


def test_add_set_and_list(session: Session) -> None:
    added = runner.invoke(
        app,
        ["partner", "add", "Inkwell Print", "lin@inkwell.example", "--contact", "Lin Bo",
         "--service", "Print and post"],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "Partner Inkwell Print <lin@inkwell.example> added." in added.output

    agreed = runner.invoke(app, ["partner", "set", "LIN@inkwell.example", "--hears-policies"])
    assert agreed.exit_code == 0, agreed.output
    assert "Inkwell Print hears of policy changes." in agreed.output
    (partner,) = session.exec(select(Partner)).all()
    assert (partner.contact_name, partner.hears_policies) == ("Lin Bo", True)

    listed = runner.invoke(app, ["partner", "list"])
    assert "Inkwell Print" in listed.output and "Print and post" in listed.output
    assert "yes" in listed.output

    stopped = runner.invoke(app, ["partner", "set", "lin@inkwell.example", "--no-hears-policies"])
    assert "Inkwell Print does not hear of policy changes." in stopped.output


def test_bad_input_is_named(session: Session) -> None:
    twice = [runner.invoke(app, ["partner", "add", "Inkwell", "lin@inkwell.example"]) for _ in "ab"]
    assert [r.exit_code for r in twice] == [0, 2]
    assert "email: a partner with the email lin@inkwell.example is already there" in twice[1].output

    bad = runner.invoke(app, ["partner", "add", " ", "not an address"])
    assert bad.exit_code == 2
    assert "name: say who the partner is" in bad.output and "email:" in bad.output

    unknown = runner.invoke(app, ["partner", "set", "nobody@example.net", "--hears-policies"])
    assert unknown.exit_code == 2 and "nobody@example.net not found" in unknown.output
    assert len(session.exec(select(Partner)).all()) == 1
