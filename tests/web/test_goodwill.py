"""Goodwill (C8) from the web: a gesture within the signed-in colleague's own limit is approved at
once and the history says "within own authority"; above it, it goes to someone whose limit covers
it."""

import re

import httpx
from sqlmodel import Session, select

from models import ApprovalRequest, Category, Channel, OutboxEmail, Status
from tasks.approvals import route_improvement
from tests.factories import make_approver
from tests.web.conftest import sign_in


def _route(session: Session, improvement_id: int) -> list[ApprovalRequest]:
    """What the route-improvement flow does when the submitted event arrives."""
    requests = route_improvement(
        session=session, improvement_id=improvement_id, actor="route-improvement",
        channel=Channel.flow,
    )  # fmt: skip
    session.commit()
    return requests


async def test_within_the_signed_in_colleagues_own_limit_it_is_approved_at_once(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    gail = make_approver(session, "Gail Green", category=Category.goodwill, limit=500)
    make_approver(session, "Mei Chen", category=Category.goodwill, limit=5_000)
    sign_in(anonymous, gail)
    form = (await anonymous.get("/submit")).text
    [form_token] = re.findall(r'name="form_token" value="([^"]+)"', form)

    sent = await anonymous.post(
        "/submit",
        data={
            "title": "Flowers for a missed visit",
            "category": "goodwill",
            "estimated_cost": "£40",
            "form_token": form_token,
        },
    )
    assert sent.status_code == 303
    improvement_id = int(sent.headers["location"].rsplit("/", 1)[1])

    assert _route(session, improvement_id) == []

    assert session.exec(select(ApprovalRequest)).all() == []
    assert session.exec(select(OutboxEmail)).all() == []  # nobody needed asking
    detail = (await anonymous.get(f"/api/improvements/{improvement_id}")).json()
    assert (detail["status"], detail["submitter_id"]) == (Status.approved, gail.id)
    page = (await anonymous.get(f"/improvements/{improvement_id}")).text
    assert "Submitted → Approved" in page
    assert (
        "Approved within own authority (a goodwill gesture): Gail Green&#39;s goodwill limit "
        "covers the estimated £40"
    ) in page


async def test_above_the_signed_in_colleagues_own_limit_it_is_routed(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    gail = make_approver(session, "Gail Green", category=Category.goodwill, limit=500)
    mei = make_approver(session, "Mei Chen", category=Category.goodwill, limit=5_000)
    sign_in(anonymous, gail)

    made = await anonymous.post(
        "/api/improvements",
        json={"title": "Replace a damaged fence", "category": "goodwill", "estimated_cost": 800},
    )
    assert made.status_code == 201, made.text

    [request] = _route(session, made.json()["id"])

    assert request.approver_id == mei.id
    assert "Goodwill authority up to £5,000 at level 1 covers the estimated £800" in request.reason
    detail = (await anonymous.get(f"/api/improvements/{made.json()['id']}")).json()
    assert detail["status"] == Status.awaiting_approval
    page = (await anonymous.get(f"/improvements/{made.json()['id']}")).text
    assert "within own authority" not in page
    [email] = session.exec(select(OutboxEmail)).all()
    assert (email.template, email.recipient) == ("approval_request", mei.email)
