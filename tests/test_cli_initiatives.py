"""`improve initiative`: start one, invite by email (consent and repeats counted), list them."""

from sqlmodel import Session, select
from typer.testing import CliRunner

from improve.cli import app
from models import Initiative, Invitation, Purpose
from tests.factories import make_colleague, make_customer, make_partner

runner = CliRunner()


def test_add_invite_and_list(session: Session) -> None:
    owner = make_colleague(session, "Priya Shah")
    yes = make_customer(session, consents=(Purpose.invitations,))
    no = make_customer(session, consents=())
    partner = make_partner(session, "Swift Parcels")

    added = runner.invoke(
        app, ["initiative", "add", "--title", "Paperless statements", "--owner", owner.email]
    )
    initiative = session.exec(select(Initiative)).one()
    args = ["initiative", "invite", str(initiative.id), "--customer", yes.email]
    args += ["--customer", no.email, "--partner", partner.email]
    first = runner.invoke(app, args)
    again = runner.invoke(app, args)
    listed = runner.invoke(app, ["initiative", "list"])

    assert added.exit_code == 0, added.output
    assert f"Initiative {initiative.id}: Paperless statements" in added.output
    assert first.exit_code == 0, first.output
    assert "2 invited, 0 invited before" in first.output and "1 not invited" in first.output
    assert "0 invited, 2 invited before" in again.output
    assert len(session.exec(select(Invitation)).all()) == 2
    assert "Paperless statements" in listed.output and "1 initiative" in listed.output


def test_unknown_people_and_initiatives_are_named(session: Session) -> None:
    owner = make_colleague(session)
    runner.invoke(app, ["initiative", "add", "--title", "Solar roofs", "--owner", owner.email])

    nobody = runner.invoke(app, ["initiative", "add", "--title", "X", "--owner", "who@x.org"])
    unknown = runner.invoke(app, ["initiative", "invite", "1", "--partner", "ghost@example.net"])
    partner = make_partner(session)
    missing = runner.invoke(app, ["initiative", "invite", "99", "--partner", partner.email])
    empty = runner.invoke(app, ["initiative", "invite", "1"])

    assert nobody.exit_code == 2 and "no active colleague has the email who@x.org" in nobody.output
    assert unknown.exit_code == 2 and "unknown: ghost@example.net" in unknown.output
    assert missing.exit_code == 2 and "initiative 99 not found" in missing.output
    assert empty.exit_code == 2 and "--customer EMAIL or --partner EMAIL" in empty.output
