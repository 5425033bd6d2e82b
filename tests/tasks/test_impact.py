"""Impact: completion told once to consenting customers, partners and the submitter; totals."""

import pytest
from sqlmodel import Session, select

from models import Category, ContactFormat, Improvement, OutboxEmail, Purpose, Status
from tasks.consent import opt_out, unsubscribe_url
from tasks.impact import (
    NotCompleted,
    announce_completion,
    impact_lines,
    impact_totals,
    improvements_to_announce,
)
from tests.factories import (
    link_in,
    make_approved_improvement,
    make_approver,
    make_colleague,
    make_customer,
    make_improvement,
    make_partner,
)


def outbox(session: Session) -> dict[str, OutboxEmail]:
    return {r.idempotency_key: r for r in session.exec(select(OutboxEmail)).all()}


def test_impact_lines_read_as_a_person_would_write_them() -> None:
    estimate = Improvement(
        title="LED lighting",
        category=Category.energy,
        annual_saving=1840,
        kwh=1200,
        kg_co2e=0,
        kg_waste=12.5,
        sheets_paper=0,
    )
    assert impact_lines(estimate) == [
        "About £1,840 saved a year",
        "About 1,200 kWh of energy a year",
        "About 12.5 kg of waste kept out of landfill a year",
    ]
    measured = estimate.model_copy(update={"measured_kwh": 1312.4, "measured_saving": None})
    assert impact_lines(measured)[:2] == [
        "About £1,840 saved a year",
        "1,312 kWh of energy saved (measured)",
    ]
    assert impact_lines(Improvement(title="Nothing to count", category=Category.process)) == []


def completed_improvement(session: Session, **fields) -> Improvement:
    return make_improvement(
        session,
        fields.pop("submitter", None) or make_colleague(session),
        status=Status.completed,
        **fields,
    )


def test_completion_is_told_to_consenting_customers_partners_and_the_submitter_once(
    session: Session,
) -> None:
    submitter = make_colleague(session, "Asha Patel")
    html_fan = make_customer(session, "Ruth Ames")
    plain = make_customer(session, "Ken Ito", contact_format=ContactFormat.text)
    silent = make_customer(session, "Lee Moss", consents=(Purpose.invitations,))
    partner = make_partner(session, "Inkwell Print", contact_name="Bo Lind")
    improvement = completed_improvement(
        session,
        submitter=submitter,
        title="Paperless statements",
        category=Category.resource,
        sheets_paper=24_000,
        customers=[html_fan, plain, silent],
        partners=[partner],
    )
    assert improvements_to_announce(session=session) == [improvement.id]

    counts = announce_completion(session=session, improvement_id=improvement.id)
    session.commit()

    assert counts == {
        "customers": 2,
        "partners": 1,
        "colleagues": 1,
        "not_consented": 1,
        "queued": 4,
    }
    rows = outbox(session)
    prefix = f"notice:{improvement.id}"
    assert set(rows) == {
        f"{prefix}:customer:{html_fan.id}",
        f"{prefix}:customer:{plain.id}",
        f"{prefix}:partner:{partner.id}",
        f"{prefix}:submitter",
    }
    ruth = rows[f"{prefix}:customer:{html_fan.id}"]
    assert ruth.recipient == html_fan.email and ruth.template == "customer_notice"
    assert ruth.context["customer_name"] == "Ruth Ames"
    # In each language; which one the customer reads, and in what format, is decided when sent.
    assert ruth.context["impact_lines"] == {
        "en": ["About 24,000 sheets of paper a year"],
        "cy": ["Tua 24,000 o ddalennau papur bob blwyddyn"],
    }
    assert link_in(ruth, "unsubscribe_url") == unsubscribe_url(html_fan.id, "improvement_updates")
    assert (ruth.context["purpose"], ruth.context["customer_id"]) == (
        "improvement_updates",
        html_fan.id,
    )
    inkwell = rows[f"{prefix}:partner:{partner.id}"]
    assert (inkwell.template, inkwell.context["contact_name"]) == ("partner_notice", "Bo Lind")
    thanks = rows[f"{prefix}:submitter"]
    assert (thanks.recipient, thanks.context["customer_name"]) == (submitter.email, "Asha Patel")
    assert "sealed_links" not in thanks.context
    assert improvements_to_announce(session=session) == []

    again = announce_completion(session=session, improvement_id=improvement.id)
    session.commit()
    assert again["queued"] == 0 and len(outbox(session)) == 4


def test_a_customer_who_opted_out_hears_nothing(session: Session) -> None:
    customer = make_customer(session)
    improvement = completed_improvement(session, customers=[customer])
    opt_out(
        session=session,
        customer_id=customer.id,
        purpose=Purpose.improvement_updates,
        token=unsubscribe_url(customer.id, Purpose.improvement_updates).rsplit("/", 1)[1],
    )
    session.commit()

    counts = announce_completion(session=session, improvement_id=improvement.id)
    session.commit()
    assert (counts["customers"], counts["not_consented"]) == (0, 1)
    assert all(r.recipient != customer.email for r in outbox(session).values())


def test_with_no_submitter_the_approver_is_thanked(session: Session) -> None:
    approver = make_approver(session, "Priya Shah")
    improvement = make_approved_improvement(session, None, [approver], title="Detected: idle vans")
    improvement.status = Status.completed
    session.add(improvement)
    session.commit()

    announce_completion(session=session, improvement_id=improvement.id)
    session.commit()
    assert outbox(session)[f"notice:{improvement.id}:submitter"].recipient == approver.email


def test_only_a_completed_improvement_is_announced(session: Session) -> None:
    improvement = make_improvement(session, make_colleague(session), status=Status.in_progress)
    with pytest.raises(NotCompleted, match=r"IMP-\d+ is in_progress"):
        announce_completion(session=session, improvement_id=improvement.id)
    assert improvements_to_announce(session=session) == []


def test_impact_totals_add_up_estimates_measured_results_and_statuses(session: Session) -> None:
    submitter = make_colleague(session)
    completed_improvement(
        session,
        submitter=submitter,
        kwh=1000,
        annual_saving=200,
        measured_kwh=900,
        measured_saving=180.5,
        sheets_paper=100,
    )
    completed_improvement(session, submitter=submitter, kg_waste=50, measured_kg_waste=40)
    make_improvement(
        session, submitter, status=Status.in_progress, kwh=500, estimated_cost=1200, measured_kwh=99
    )  # not completed: its measurement is not counted yet
    make_improvement(session, submitter, status=Status.rejected, kwh=10_000, annual_saving=9_999)

    totals = impact_totals(session=session)

    assert totals["estimated_kwh"] == 1500
    assert totals["estimated_saving"] == 200
    assert totals["estimated_cost"] == 1200
    assert totals["estimated_kg_waste"] == 50
    assert totals["estimated_sheets_paper"] == 100
    assert totals["estimated_kg_co2e"] == 0
    assert totals["measured_kwh"] == 900
    assert totals["measured_saving"] == 180.5
    assert totals["measured_kg_waste"] == 40
    assert totals["measured_kg_co2e"] == 0
    assert totals["status_completed"] == 2
    assert totals["status_in_progress"] == 1
    assert totals["status_rejected"] == 1
    assert totals["status_submitted"] == 0
    assert totals["improvements"] == 4


def test_every_email_of_a_whole_plan_renders_for_its_reader(session: Session) -> None:
    from tasks.automatic import open_automatic_steps, run_automatic_step
    from tasks.mail import build_message, context_of, customer_of, reader_for, render
    from tasks.planning import complete_action, complete_improvement, plan_actions

    submitter = make_colleague(session, "Asha Patel")
    html_fan = make_customer(session, "Ruth Ames")
    plain = make_customer(session, "Ken Ito", contact_format=ContactFormat.text)
    partner = make_partner(session, "Inkwell Print", contact_name="Bo Lind")
    improvement = make_approved_improvement(
        session,
        submitter,
        [make_approver(session, "Ellen Fraser", category=Category.resource)],
        title="Paperless statements & letters",
        category=Category.resource,
        sheets_paper=24_000,
        customers=[html_fan, plain],
        partners=[partner],
    )
    # agree, switch, tell customers, tell partners (it touches one), measure
    items = plan_actions(session=session, improvement_id=improvement.id, actor="flow")
    agree, measure = items[0], items[-1]
    session.commit()
    complete_action(session=session, action_id=agree.id, by=submitter.email, channel="web")
    for action_id in open_automatic_steps(session=session, improvement_id=improvement.id):
        run_automatic_step(session=session, action_id=action_id)
    complete_action(session=session, action_id=measure.id, by=submitter.email, channel="web")
    session.commit()
    assert complete_improvement(session=session, improvement_id=improvement.id, actor="flow")
    session.commit()
    announce_completion(session=session, improvement_id=improvement.id)
    session.commit()

    rows = list(session.exec(select(OutboxEmail).order_by(OutboxEmail.id)).all())
    assert {r.template for r in rows} == {"action_assigned", "customer_notice", "partner_notice"}
    for row in rows:
        rendered = render(row.template, context_of(row))  # English
        assert improvement.title in rendered.subject or row.template == "action_assigned"
        assert "Paperless statements & letters" in rendered.text  # plain text is not escaped
        assert "Paperless statements &amp; letters" in rendered.html
        message = build_message(row, reader_for(customer_of(session=session, row=row)))
        for value in ("customer_name", "owner_name", "contact_name", "action_title", "url"):
            if value in row.context and row.context[value]:
                assert row.context[value] in rendered.text
        if row.template == "action_assigned":
            assert message["List-Unsubscribe"] is None
        if row.recipient == plain.email:
            assert message.get_content_type() == "text/plain"
        if row.recipient == html_fan.email:
            assert message.get_content_type() == "multipart/alternative"
            assert message["List-Unsubscribe"] == f"<{context_of(row)['unsubscribe_url']}>"
    ruth_final = next(
        r
        for r in rows
        if r.idempotency_key.endswith(f":customer:{html_fan.id}")
        and r.idempotency_key.startswith("notice:")
    )
    assert (
        "About 24,000 sheets of paper a year"
        in render("customer_notice", context_of(ruth_final)).text
    )
