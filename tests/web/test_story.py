"""The web app with the real steps around it: the links in the queued emails act as promised."""

from urllib.parse import urlsplit

import httpx
from sqlmodel import Session, select

from models import ActionItem, ActionStatus, Category, Channel, OutboxEmail, Status
from tasks.approvals import route_improvement
from tasks.decisions import advance_after_decision
from tasks.planning import plan_actions
from tests.factories import link_in, make_approver, make_colleague
from tests.web.conftest import Events
from tests.web.helpers import snapshot


def _link(session: Session, template: str) -> list[str]:
    rows = session.exec(
        select(OutboxEmail).where(OutboxEmail.template == template).order_by(OutboxEmail.id)  # type: ignore[arg-type]
    ).all()
    return [urlsplit(link_in(row)).path for row in rows]


async def test_submit_route_approve_and_act_through_the_pages(
    client: httpx.AsyncClient, session: Session, events: Events
) -> None:
    asha = make_colleague(session, "Asha Patel", role="Adviser")
    make_approver(session, "Bea Jones", category=Category.waste, limit=10_000)

    created = await client.post(
        "/api/improvements",
        json={
            "title": "Recycle toner cartridges",
            "category": "waste",
            "submitter_email": asha.email,
            "estimated_cost": 200,
            "kg_waste": 90,
        },
    )
    improvement_id = created.json()["id"]
    # What the route-improvement flow does when the submitted event arrives:
    route_improvement(
        session=session,
        improvement_id=improvement_id,
        actor="route-improvement",
        channel=Channel.flow,
    )
    session.commit()
    [approval_path] = _link(session, "approval_request")

    before = snapshot()
    shown = await client.get(approval_path)
    assert shown.status_code == 200 and "Recycle toner cartridges" in shown.text
    assert snapshot() == before  # a mail scanner opening the link decides nothing

    decided = await client.post(approval_path, data={"decision": "approve", "comment": "Yes!"})
    assert decided.status_code == 200
    # What advance-improvement does when the decided event arrives:
    assert (
        advance_after_decision(
            session=session, improvement_id=improvement_id, actor="advance-improvement"
        )
        == "approved"
    )
    plan_actions(session=session, improvement_id=improvement_id, actor="advance-improvement")
    session.commit()

    for path in _link(session, "action_assigned"):
        assert (await client.get(path)).status_code == 200
        done = await client.post(path, data={"measured_kg_waste": "30", "note": "done"})
        assert done.status_code == 200, done.text

    items = session.exec(
        select(ActionItem).where(ActionItem.improvement_id == improvement_id)
    ).all()
    assert {i.status for i in items if i.automatic_step is None} == {ActionStatus.done}
    assert [e[0] for e in events.emitted()] == [
        "improve.improvement.submitted",
        "improve.approval.decided",
        *["improve.action.completed"] * len(_link(session, "action_assigned")),
    ]
    page = (await client.get(f"/improvements/{improvement_id}")).text
    assert "Awaiting approval → Approved" in page and "Approved → In progress" in page
    detail = (await client.get(f"/api/improvements/{improvement_id}")).json()
    assert detail["status"] == Status.in_progress
    assert detail["approvals"][0]["status"] == "approved"
