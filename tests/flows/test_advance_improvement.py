"""advance-improvement: from a decision to a finished plan, each step once."""

from collections import Counter

import pytest
from prefect.states import Failed
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from flows.advance_improvement import advance_improvement
from flows.route_improvement import route_improvement
from flows.steps import worth_retrying
from improve.errors import IllegalTransition, ImprovementNotFound
from models import ActionItem, ActionStatus, Category, Improvement, Status
from tests.factories import make_approver, make_colleague, make_customer, make_improvement
from tests.flows.helpers import decide, finish_open_people_steps, to
from tests.smtpd import SmtpServer


def status(session: Session, improvement_id: int) -> Status:
    session.expire_all()
    return session.get(Improvement, improvement_id).status


async def test_approval_plans_the_actions_and_the_plan_runs_to_completion(
    session: Session, smtp: SmtpServer
) -> None:
    submitter = make_colleague(session, "Sam Submitter")
    approver = make_approver(session, "Alex Approver", category=Category.resource)
    customer = make_customer(session, "Chris Customer")
    improvement = make_improvement(session, submitter, customers=[customer], estimated_cost=900)
    await route_improvement(improvement.id)
    decide(session, improvement.id, approve=True, comment="Go ahead")

    assert await advance_improvement(improvement.id) == "approved"
    assert status(session, improvement.id) == Status.in_progress
    items = session.exec(select(ActionItem).order_by(ActionItem.position)).all()
    assert [i.automatic_step for i in items] == [
        None, "switch_to_estatements", "notify_customers", None,
    ]  # fmt: skip
    assert {i.status for i in items} == {ActionStatus.open}  # the person's step comes first
    assert len(to(smtp, submitter.email)) == 1 + 2  # the decision, and one email per action

    finish_open_people_steps(session, improvement.id)  # the agreement, and the measurement
    assert await advance_improvement(improvement.id) == "nothing"
    assert status(session, improvement.id) == Status.completed
    assert {i.status for i in session.exec(select(ActionItem)).all()} == {ActionStatus.done}
    assert len(to(smtp, customer.email)) == 1  # told of the switch by the automatic step

    before = len(smtp.received)
    assert await advance_improvement(improvement.id) == "nothing"  # the same event again
    assert len(smtp.received) == before
    assert max(Counter(m.message_id for m in smtp.received).values()) == 1
    assert approver.email in {r for m in smtp.received for r in m.recipients}


async def test_a_rejection_tells_the_submitter_once(session: Session, smtp: SmtpServer) -> None:
    submitter = make_colleague(session, "Sam Submitter")
    make_approver(session, category=Category.resource)
    improvement = make_improvement(session, submitter)
    await route_improvement(improvement.id)
    decide(session, improvement.id, approve=False, comment="The billing system cannot do it yet")

    assert await advance_improvement(improvement.id) == "rejected"
    assert await advance_improvement(improvement.id) == "nothing"

    assert status(session, improvement.id) == Status.rejected
    (email,) = to(smtp, submitter.email)
    assert "The billing system cannot do it yet" in email.text
    assert session.exec(select(ActionItem)).all() == []


async def test_a_refusal_by_the_rules_fails_the_run(session: Session) -> None:
    state = await advance_improvement(987_654, return_state=True)

    assert state.is_failed()
    with pytest.raises(ImprovementNotFound):
        await state.result()


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ImprovementNotFound(7), False),  # the rules refuse: trying again cannot help
        (IllegalTransition("IMP-7", "awaiting_approval", "approved"), True),  # a racing run
        (OperationalError("UPDATE", {}, Exception("database is locked")), True),
        (ConnectionError("SMTP relay went away"), True),
    ],
)
def test_steps_retry_what_may_pass(error: Exception, retried: bool) -> None:
    assert worth_retrying(None, None, Failed(data=error)) is retried
