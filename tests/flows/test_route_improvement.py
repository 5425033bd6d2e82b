"""route-improvement: the approvers are asked once, however often the flow runs."""

from collections import Counter

from prefect.client.orchestration import get_client
from sqlmodel import Session, select

from flows.route_improvement import route_improvement
from models import ApprovalRequest, Category, Improvement, Status
from tests.factories import make_approver, make_colleague, make_improvement
from tests.smtpd import SmtpServer


async def test_routing_twice_asks_the_approver_once(session: Session, smtp: SmtpServer) -> None:
    submitter = make_colleague(session, "Sam Submitter")
    approver = make_approver(session, "Alex Approver", category=Category.resource, limit=5_000)
    improvement = make_improvement(session, submitter, estimated_cost=1_200)

    assert await route_improvement(improvement.id) == 1
    assert await route_improvement(improvement.id) == 1  # the same event, delivered again

    session.expire_all()
    assert session.get(Improvement, improvement.id).status == Status.awaiting_approval
    requests = session.exec(select(ApprovalRequest)).all()
    assert [(r.approver_id, r.level) for r in requests] == [(approver.id, 1)]
    assert [m.recipients for m in smtp.received] == [[approver.email]]
    assert Counter(m.message_id for m in smtp.received).most_common(1)[0][1] == 1
    assert improvement.reference in smtp.received[0].subject


async def test_a_run_is_named_and_tagged_for_operations(session: Session, smtp: SmtpServer) -> None:
    submitter = make_colleague(session)
    make_approver(session, category=Category.energy)
    improvement = make_improvement(
        session, submitter, title="LED lighting in the depot", category=Category.energy
    )

    # An event's label arrives as a string; the flow's parameter validation makes it a number.
    state = await route_improvement(str(improvement.id), return_state=True)

    assert state.is_completed()
    async with get_client() as client:
        run = await client.read_flow_run(state.state_details.flow_run_id)
    assert run.name == f"route · IMP-{improvement.id} LED lighting in the depot"
    assert {f"IMP-{improvement.id}", "energy"} <= set(run.tags)


async def test_a_goodwill_gesture_within_the_submitters_authority_is_planned_at_once(
    session: Session, smtp: SmtpServer
) -> None:
    submitter = make_approver(session, "Gail Goodwill", category=Category.goodwill, limit=500)
    improvement = make_improvement(
        session, submitter, title="Flowers for a missed visit", category=Category.goodwill,
        estimated_cost=40,
    )  # fmt: skip

    assert await route_improvement(improvement.id) == 0

    session.expire_all()
    assert session.get(Improvement, improvement.id).status == Status.in_progress
    assert not session.exec(select(ApprovalRequest)).all()
