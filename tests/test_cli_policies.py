"""`improve policy`: add, list and publish from the command line; bad input named, exit 2."""

from sqlmodel import Session, select
from typer.testing import CliRunner

from improve.cli import app
from models import OutboxEmail, Purpose
from tests.factories import make_colleague, make_customer, make_partner, make_process

runner = CliRunner(env={"COLUMNS": "200"})  # one line per message and row, as rich wraps at 80


def test_add_list_and_publish_once(session: Session) -> None:
    owner = make_colleague(session, "Priya Shah")
    make_process(session, "billing")
    make_customer(session, consents=(Purpose.policy_news,))
    make_customer(session, consents=())
    make_partner(session, hears_policies=True)

    added = runner.invoke(
        app,
        ["policy", "add", "Paperless by default", "--summary", "Email first.",
         "--owner", owner.email, "--process", "billing"],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    policy_id = added.output.split()[1]

    listed = runner.invoke(app, ["policy", "list"])
    assert "Paperless by default" in listed.output and "draft" in listed.output
    assert "billing" in listed.output and "1 customers and 1 partners" in listed.output

    published = runner.invoke(app, ["policy", "publish", policy_id, "2.0", "--changes", "New."])
    assert published.exit_code == 0, published.output
    assert "Version 2.0 published; 2 notices queued" in published.output
    again = runner.invoke(app, ["policy", "publish", policy_id, "2.0", "--changes", "New."])
    assert again.exit_code == 2 and "version 2.0 of 'Paperless by default'" in again.output
    assert len(session.exec(select(OutboxEmail)).all()) == 2


def test_bad_input_is_named(session: Session) -> None:
    answer = runner.invoke(
        app, ["policy", "add", "Fleet", "--owner", "nobody@example.org", "--process", "laundry"]
    )
    assert answer.exit_code == 2
    assert "owner_email: no colleague has the email 'nobody@example.org'" in answer.output
    assert "processes: no service process is called 'laundry'" in answer.output
    missing = runner.invoke(app, ["policy", "publish", "99", "1", "--changes", "x"])
    assert missing.exit_code == 2 and "policy 99 not found" in missing.output
