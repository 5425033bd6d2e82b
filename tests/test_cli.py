"""The `improve` command line against the real database and SMTP server."""

from datetime import timedelta

from sqlmodel import Session, func, select
from typer.testing import CliRunner

from improve.cli import app
from models import (
    ApprovalRequest,
    Colleague,
    Customer,
    Improvement,
    OutboxEmail,
    OutboxStatus,
    Partner,
    Stakeholder,
    Status,
    Transition,
)
from tests.factories import make_approver, make_colleague
from tests.smtpd import SmtpServer

runner = CliRunner()
SECOND = timedelta(seconds=1)


def count(session: Session, table: type) -> int:
    return session.exec(select(func.count()).select_from(table)).one()


def test_seed_demo_builds_a_believable_organisation_once(session: Session) -> None:
    first = runner.invoke(app, ["seed", "--demo"])
    assert first.exit_code == 0, first.output
    assert "Seeded Brightwater Utilities" in first.output

    assert 12 <= count(session, Colleague) <= 20
    assert count(session, Customer) == 50
    assert count(session, Partner) == 8
    assert count(session, Improvement) == 30
    assert {s.organisation for s in session.exec(select(Stakeholder))} == {
        "Brightwater Town Council",
        "Green Valley Trust (charity)",
    }  # fmt: skip  (who gets the impact report)
    teams = {c.team for c in session.exec(select(Colleague))}
    assert len(teams) >= 4
    assert any(c.deputy_id for c in session.exec(select(Colleague)))
    categories = {i.category for i in session.exec(select(Improvement))}
    assert len(categories) == 8
    # Some have already lived through the real steps; the rest wait for the flows to route them.
    statuses = [i.status for i in session.exec(select(Improvement))]
    assert statuses.count(Status.completed) == 4
    assert statuses.count(Status.in_progress) == 2
    assert statuses.count(Status.rejected) == 1
    assert statuses.count(Status.awaiting_approval) == 1
    assert statuses.count(Status.submitted) == 22
    completed = session.exec(select(Improvement).where(Improvement.status == Status.completed))
    assert all(i.measured_saving for i in completed)
    # Cases in several states; one's update falls due a minute after seeding, for the sweep.
    from models import Case
    from models.db import utcnow

    seeded = session.exec(select(Case)).all()
    assert sorted(c.status for c in seeded) == [
        "awaiting_customer", "closed", "delayed", "delayed", "open", "open",
    ]  # fmt: skip
    # One waits for the customer's choice: the offer with its link is in the outbox.
    from models import OutboxEmail

    [offer] = session.exec(
        select(OutboxEmail).where(OutboxEmail.template == "alternatives_offer")
    ).all()
    [waiting] = [c for c in seeded if c.status == "awaiting_customer"]
    assert offer.recipient == session.get(Customer, waiting.customer_id).email
    soon = [c for c in seeded if c.next_update_due and c.next_update_due <= utcnow() + 90 * SECOND]
    assert len(soon) == 1 and soon[0].overdue_improvement_id is None
    assert any(c.manager_id for c in session.exec(select(Colleague)))
    # Customers invited to paperless statements, some answered; a partner invited to deliveries.
    from tasks.participation import participation_summary

    paperless, deliveries = participation_summary(session=session)
    assert paperless["title"] == "Paperless statements" and paperless["customers"]["invited"] == 8
    assert (paperless["accepted"], paperless["declined"], paperless["waiting"]) == (3, 1, 4)
    assert deliveries["partners"] == {"invited": 1, "accepted": 0, "declined": 0, "waiting": 1}

    # Three policies over the demo's processes, served by improvements; one published, its
    # notices to the customers who agreed to policy news and the partners who hear, queued.
    from models import Policy, PolicyProcess

    policies = {p.title: p for p in session.exec(select(Policy))}
    assert sorted(policies) == ["Paperless by default", "Sustainable fleet", "Waste and recycling"]
    assert [p.version for p in policies.values() if p.version] == ["1.0"]
    assert all(p.owner_id for p in policies.values()) and count(session, PolicyProcess) == 5
    from tasks.policies import policy_view

    fleet = policy_view(session=session, policy_id=policies["Sustainable fleet"].id)
    assert len(fleet.improvements) == 4
    wanted = ["policy_notice", "partner_policy_notice"]
    notices = session.exec(select(OutboxEmail).where(OutboxEmail.template.in_(wanted))).all()
    assert sum(n.template == "partner_policy_notice" for n in notices) == 3
    assert 10 <= sum(n.template == "policy_notice" for n in notices) <= 40

    again = runner.invoke(app, ["seed", "--demo"])
    assert again.exit_code == 0
    assert "already there" in again.output
    assert count(session, Improvement) == 30
    assert count(session, Stakeholder) == 2
    assert count(session, Policy) == 3
    assert len(participation_summary(session=session)) == 2


def test_submit_stores_routes_and_queues_the_approval_email(session: Session) -> None:
    submitter = make_colleague(session, "Asha Patel", email="asha@example.org")
    approver = make_approver(session, "Sam Lee", category="energy", limit=5_000)

    result = runner.invoke(
        app,
        ["submit", "--title", "Switch off monitors overnight", "--category", "energy",
         "--submitter", submitter.email, "--cost", "120", "--kwh", "3000"],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "submitted" in result.output and "Sam Lee" in result.output
    improvement = session.exec(select(Improvement)).one()
    assert improvement.status == Status.awaiting_approval
    assert improvement.kwh == 3000
    request = session.exec(select(ApprovalRequest)).one()
    assert request.approver_id == approver.id
    email = session.exec(select(OutboxEmail)).one()
    assert (email.recipient, email.template) == (approver.email, "approval_request")


def test_bad_input_names_the_field_and_writes_nothing(session: Session) -> None:
    make_colleague(session, "Asha Patel", email="asha@example.org")
    cases = [
        (["--title", "Bins", "--category", "rubbish", "--submitter", "asha@example.org"],
         "category"),
        (["--title", "Bins", "--category", "waste", "--submitter", "nobody@example.org"],
         "submitter_email"),
        (["--title", "Bins", "--category", "waste", "--submitter", "asha@example.org",
          "--cost", "-5"], "estimated_cost"),
        (["--title", "", "--category", "waste", "--submitter", "asha@example.org"], "title"),
        # The same check as the web form and the API: ImprovementCreate refuses it for all three.
        (["--title", "Bins", "--category", "waste", "--submitter", "asha@example.org",
          "--kwh", "nan"], "finite number"),
        (["--category", "waste", "--submitter", "asha@example.org"], "title"),
    ]  # fmt: skip
    for args, field in cases:
        result = runner.invoke(app, ["submit", *args])
        assert result.exit_code == 2, (args, result.output)
        assert field.replace("_", "") in result.output.replace("_", "").replace("-", ""), (
            args,
            result.output,
        )
    assert count(session, Improvement) == 0
    assert count(session, Transition) == 0
    assert count(session, OutboxEmail) == 0


def test_outbox_send_delivers_to_the_smtp_server(session: Session, smtp: SmtpServer) -> None:
    submitter = make_colleague(session, "Asha Patel", email="asha@example.org")
    approver = make_approver(session, "Sam Lee", category="waste", limit=5_000)
    runner.invoke(
        app,
        ["submit", "--title", "Food waste caddies", "--category", "waste",
         "--submitter", submitter.email, "--cost", "300"],
    )  # fmt: skip

    result = runner.invoke(app, ["outbox", "send"])

    assert result.exit_code == 0, result.output
    assert "1 sent" in result.output
    [received] = smtp.received
    assert received.recipients == [approver.email]
    assert "Food waste caddies" in received.subject
    row = session.exec(select(OutboxEmail)).one()
    session.refresh(row)
    assert row.status == OutboxStatus.sent
    listing = runner.invoke(app, ["outbox", "list"])
    assert "approval_request" in listing.output and "sent" in listing.output


def test_customer_set_changes_how_a_waiting_email_is_written(
    session: Session, smtp: SmtpServer
) -> None:
    from datetime import time

    from models import CustomerConsent, Purpose
    from tasks.consent import queue_customer_email
    from tests.factories import make_customer

    nia = make_customer(session, "Nia Brown", email="nia@example.com")
    queue_customer_email(
        session=session, key="n:1", customer=nia, template="customer_notice",
        context={"reference": "IMP-1", "title": "Biliau papur"},
        purpose=Purpose.improvement_updates,
    )  # fmt: skip
    session.commit()

    result = runner.invoke(
        app,
        ["customer", "set", "NIA@example.com", "--language", "cy", "--format", "text",
         "--window", "22:00-06:00", "--weekly-limit", "2", "--consent", "policy_news=yes"],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "language cy, text, non-urgent email 22:00–06:00 Europe/London" in result.output
    assert "weekly limit 2" in result.output and "policy_news: yes (cli" in result.output
    session.expire_all()
    customer = session.get(Customer, nia.id)
    assert customer is not None
    assert (customer.contact_from, customer.contact_until) == (time(22), time(6))
    assert session.exec(
        select(CustomerConsent.granted).where(
            CustomerConsent.customer_id == nia.id, CustomerConsent.purpose == Purpose.policy_news
        )
    ).one()

    # Taking the window away lets the waiting notice go now, in Welsh plain text.
    runner.invoke(app, ["customer", "set", "nia@example.com", "--window", "any"])
    assert "1 sent" in runner.invoke(app, ["outbox", "send"]).output
    [received] = smtp.received
    assert received.subject == "Rydym wedi gwella ein gwasanaeth: Biliau papur"
    assert received.message.get_content_type() == "text/plain"

    # Saying no by phone stops what waits for that purpose.
    queue_customer_email(
        session=session, key="n:2", customer=customer, template="customer_notice",
        context={"reference": "IMP-2", "title": "Mwy"}, purpose=Purpose.improvement_updates,
    )  # fmt: skip
    session.commit()
    runner.invoke(
        app, ["customer", "set", "nia@example.com", "--consent", "improvement_updates=no"]
    )
    row = session.exec(select(OutboxEmail).where(OutboxEmail.idempotency_key == "n:2")).one()
    session.refresh(row)
    assert row.status == OutboxStatus.skipped


def test_customer_set_refuses_what_it_cannot_honour_and_changes_nothing(session: Session) -> None:
    from tests.factories import make_customer

    make_customer(session, "Ruth Ames", email="ruth@example.com")
    for args, says in [
        (["--language", "fr"], "we write in en or cy"),
        (["--window", "9 till 5"], "is not a window like 09:00-17:00"),
        (["--window", "25:00-06:00"], "is not a window"),
        (["--format", "pdf"], "html or text"),
        (["--weekly-limit", "500"], "from 0 (none) to 100"),
        (["--consent", "everything=yes"], "PURPOSE=yes or PURPOSE=no"),
    ]:
        result = runner.invoke(app, ["customer", "set", "ruth@example.com", *args])
        assert result.exit_code == 2, (args, result.output)
        assert says in " ".join(result.output.split()), (args, result.output)
    missing = runner.invoke(app, ["customer", "set", "nobody@example.com", "--language", "cy"])
    assert missing.exit_code == 2 and "customer nobody@example.com not found" in missing.output
    customer = session.exec(select(Customer)).one()
    session.refresh(customer)
    assert (customer.language, customer.contact_from, customer.weekly_limit) == ("en", None, None)


def test_a_case_is_opened_delayed_updated_and_closed_from_the_cli(session: Session) -> None:
    from models import Case, CaseUpdate
    from tests.factories import make_customer

    make_colleague(session, "Asha Patel", email="asha@example.org")
    make_customer(session, "Ruth Evans", email="ruth@example.com")
    by = ["--by", "asha@example.org"]

    opened = runner.invoke(
        app, ["case", "open", "--customer", "ruth@example.com", "--subject", "New meter", *by]
    )
    assert opened.exit_code == 0, opened.output
    [case] = session.exec(select(Case)).all()
    assert f"CASE-{case.id} New meter · open" in opened.output

    delayed = runner.invoke(app, ["case", "delay", str(case.id), "--reason", "Parts", *by])
    assert delayed.exit_code == 0 and "delayed: Parts" in delayed.output
    preview = runner.invoke(app, ["case", "update", str(case.id), "--preview", *by])
    assert "Dear Ruth Evans," in preview.output and count(session, CaseUpdate) == 0
    sent = runner.invoke(app, ["case", "update", str(case.id), "--body", "Soon.", *by])
    assert sent.exit_code == 0, sent.output
    assert count(session, CaseUpdate) == 1

    listed = runner.invoke(app, ["case", "list", "--not-overdue"])
    assert f"CASE-{case.id}" in listed.output and "1 case" in listed.output
    closed = runner.invoke(app, ["case", "close", str(case.id), "--reason", "Fitted", *by])
    assert closed.exit_code == 0 and "closed" in closed.output
    shown = runner.invoke(app, ["case", "show", str(case.id)])
    assert "update_sent" in shown.output and "Fitted" in shown.output


def test_case_bad_input_names_what_is_wrong_and_writes_nothing(session: Session) -> None:
    from models import Case

    make_colleague(session, "Asha Patel", email="asha@example.org")
    unknown = runner.invoke(
        app,
        ["case", "open", "--customer", "nobody@example.com", "--subject", "Hi",
         "--by", "asha@example.org"],
    )  # fmt: skip
    assert unknown.exit_code == 2
    assert "customer_email: no customer has the email 'nobody@example.com'" in unknown.output
    assert count(session, Case) == 0
    stranger = runner.invoke(app, ["case", "delay", "1", "--reason", " ", "--by", "x@y.org"])
    assert stranger.exit_code == 2 and "no colleague has the email 'x@y.org'" in stranger.output
    missing = runner.invoke(app, ["case", "show", "41"])
    assert missing.exit_code == 2 and "case CASE-41 not found" in missing.output
