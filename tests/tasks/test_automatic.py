"""Automatic steps: they wait their turn, then switch and tell customers and partners once."""

from sqlmodel import Session

from models import ActionStatus, Category, ContactFormat, Purpose
from tasks.automatic import automatic_steps_due, open_automatic_steps, run_automatic_step
from tasks.planning import complete_action, plan_actions
from tests.factories import (
    link_in,
    make_approved_improvement,
    make_colleague,
    make_customer,
    make_partner,
)
from tests.tasks.helpers import finish_people_steps, items_of, outbox


def test_automatic_steps_wait_their_turn_then_tell_each_consenting_customer_once(
    session: Session,
) -> None:
    html_fan = make_customer(session, "Ruth Ames")
    plain = make_customer(session, "Ken Ito", contact_format=ContactFormat.text)
    silent = make_customer(session, "Lee Moss", consents=())
    improvement = make_approved_improvement(
        session,
        make_colleague(session),
        category=Category.resource,
        sheets_paper=12_000,
        customers=[html_fan, plain, silent],
    )
    items = plan_actions(session=session, improvement_id=improvement.id, actor="flow")
    session.commit()

    assert open_automatic_steps(session=session, improvement_id=improvement.id) == []
    complete_action(session=session, action_id=items[0].id, by="billing@example.org", channel="web")
    session.commit()
    ready = open_automatic_steps(session=session, improvement_id=improvement.id)
    assert ready == [items[1].id, items[2].id]
    assert automatic_steps_due(session=session) == ready

    for action_id in ready:
        run_automatic_step(session=session, action_id=action_id)
        session.commit()
    notices = outbox(session, "customer_notice")
    assert sorted(n.recipient for n in notices) == sorted([html_fan.email, plain.email])
    by_email = {n.recipient: n for n in notices}
    by_recipient = {n.recipient: n.context for n in notices}
    # Format and language are the customer's, read when each is sent; the purpose is the row's.
    assert {c["purpose"] for c in by_recipient.values()} == {"improvement_updates"}
    assert link_in(by_email[html_fan.email], "unsubscribe_url").startswith(
        f"http://127.0.0.1:8000/unsubscribe/{html_fan.id}/improvement_updates/"
    )
    # Mid-plan nothing is achieved yet: the estimate is said as an expectation, not listed.
    summary = by_recipient[html_fan.email]["summary"]["en"]
    welsh = by_recipient[html_fan.email]["summary"]["cy"]
    assert "Rydym yn disgwyl tua 12,000 o ddalennau papur bob blwyddyn." in welsh
    assert by_recipient[html_fan.email]["impact_lines"] == []
    assert "statements come by email rather than by post" in summary
    assert "We expect about 12,000 sheets of paper a year." in summary
    switch, tell = items_of(session, improvement.id)[1:3]
    assert switch.status == tell.status == ActionStatus.done
    assert switch.completed_by == tell.completed_by == "automatic step"
    assert "Ruth Ames" in switch.result_note and "Ken Ito" in switch.result_note
    assert "Left on paper" in switch.result_note and "Lee Moss" in switch.result_note
    assert "2 customer(s)" in tell.result_note

    # Running them again (a retried task, a duplicate event) sends nothing more.
    for action_id in ready:
        assert run_automatic_step(session=session, action_id=action_id).status == ActionStatus.done
    session.commit()
    assert len(outbox(session, "customer_notice")) == 2
    assert open_automatic_steps(session=session, improvement_id=improvement.id) == []


def test_a_customer_update_goes_out_as_soon_as_the_plan_starts(session: Session) -> None:
    customer = make_customer(session, "Ivy Dale")
    improvement = make_approved_improvement(
        session,
        make_colleague(session),
        title="Late reply on a boiler repair case",
        category=Category.customer_update,
        customers=[customer],
        description="The engineer visit is booked for Thursday.",
    )
    items = plan_actions(session=session, improvement_id=improvement.id, actor="flow")
    session.commit()

    assert open_automatic_steps(session=session, improvement_id=improvement.id) == [items[0].id]
    run_automatic_step(session=session, action_id=items[0].id)
    session.commit()
    [notice] = outbox(session, "customer_notice")
    assert notice.recipient == customer.email
    assert notice.idempotency_key == f"step:{items[0].id}:customer:{customer.id}"
    assert "The engineer visit is booked for Thursday." in notice.context["summary"]["en"]


def test_partners_hear_of_the_change_once(session: Session) -> None:
    partners = [
        make_partner(session, "GreenCycle Waste", contact_name="Jo Hart"),
        make_partner(session, "Facet FM"),
    ]
    improvement = make_approved_improvement(
        session, make_colleague(session), category=Category.waste, partners=partners
    )
    items = plan_actions(session=session, improvement_id=improvement.id, actor="flow")
    step = next(i for i in items if i.automatic_step == "notify_partners")
    session.commit()

    run_automatic_step(session=session, action_id=step.id)
    run_automatic_step(session=session, action_id=step.id)
    session.commit()
    notices = outbox(session, "partner_notice")
    assert [n.recipient for n in notices] == [p.email for p in partners]
    assert notices[0].context["contact_name"] == "Jo Hart"
    assert notices[1].context["contact_name"] == "Facet FM"


def test_a_customer_with_no_consent_is_never_written_to(session: Session) -> None:
    refused = make_customer(session, consents=(Purpose.policy_news,))
    improvement = make_approved_improvement(
        session, make_colleague(session), category=Category.goodwill, customers=[refused]
    )
    plan_actions(session=session, improvement_id=improvement.id, actor="flow")
    session.commit()
    finish_people_steps(session, improvement.id)
    for action_id in open_automatic_steps(session=session, improvement_id=improvement.id):
        run_automatic_step(session=session, action_id=action_id)
    session.commit()
    assert outbox(session, "customer_notice") == []
