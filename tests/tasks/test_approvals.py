"""Approvals: asking the right people by email, with a link that acts, once."""

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from improve.errors import IllegalTransition
from models import ApprovalRequest, ApprovalStatus, Category, Channel, Status
from tasks import links, mail
from tasks.approvals import request_approvals, route_improvement
from tests.factories import link_in, make_approver
from tests.tasks.helpers import Org, at_once, history, outbox, route, status_of, submit


def test_routing_asks_the_approver_by_email_with_a_link_that_acts(
    session: Session, org: Org
) -> None:
    improvement = submit(session, org)

    [request] = route(session, org, improvement)

    assert (request.approver_id, request.on_behalf_of_id, request.level) == (org.sam.id, None, 1)
    assert request.status == ApprovalStatus.pending
    assert request.reason == "Energy authority up to £5,000 at level 1 covers the estimated £1,200"
    assert status_of(session, improvement.id) == Status.awaiting_approval
    [email] = outbox(session)
    assert email.idempotency_key == f"approval:{request.id}:request"
    assert email.recipient == org.sam.email
    assert email.template == "approval_request"
    assert email.improvement_id == improvement.id
    token = link_in(email).rsplit("/", 1)[-1]
    assert link_in(email) == links.approval_url(request.id, token)
    assert request.token_hash == links.hash_token(token)  # only the hash is stored
    assert token not in request.token_hash
    assert mail.context_of(email) | {"url": "..."} == {
        "approver_name": "Sam Lee",
        "on_behalf_of_name": None,
        "reference": improvement.reference,
        "title": "LED lighting in the contact centre",
        "description": improvement.description,
        "category": "energy",
        "submitter_name": "Asha Patel",
        "estimated_cost": 1200.0,
        "annual_saving": 900.0,
        "kwh": 4200.0,
        "kg_co2e": 870.0,
        "kg_waste": 0.0,
        "level": 1,
        "levels": 1,
        "reason": request.reason,
        "url": "...",
        "expires_on": f"{request.expires_at:%Y-%m-%d}",
        "reminder": False,
        "escalated_from_name": None,
        "replaces_earlier_link": False,
    }
    assert request.expires_at - request.created_at == timedelta(days=14)
    opened = links.check_approval_link(session=session, approval_id=request.id, token=token)
    assert opened.id == request.id
    last = history(session, improvement.id)[-1]
    assert (last.from_status, last.to_status) == (Status.submitted, Status.awaiting_approval)
    assert last.reason.startswith("Asked Sam Lee for level 1 of 1 approval: Energy authority")
    assert (last.actor, last.channel) == (org.asha.email, Channel.web)


def test_routing_twice_asks_nobody_twice(session: Session, org: Org) -> None:
    improvement = submit(session, org)
    first = route(session, org, improvement)

    again = route(session, org, improvement)
    level_again = request_approvals(
        session=session, improvement_id=improvement.id, level=1, actor="x", channel=Channel.flow
    )

    assert [r.id for r in again] == [r.id for r in first] == [r.id for r in level_again]
    assert len(outbox(session)) == 1
    assert len(history(session, improvement.id)) == 2  # created, then awaiting_approval


def test_an_identified_improvement_is_not_routed_before_it_is_submitted(
    session: Session, org: Org
) -> None:
    improvement = submit(session, org, status=Status.identified)
    with pytest.raises(IllegalTransition, match="cannot move from identified"):
        route(session, org, improvement)


def test_goodwill_within_the_submitters_own_authority_is_approved_without_asking(
    session: Session, org: Org
) -> None:
    improvement = submit(session, org, cost=200, category=Category.goodwill)

    assert route(session, org, improvement) == []

    assert status_of(session, improvement.id) == Status.approved
    assert outbox(session) == []
    last = history(session, improvement.id)[-1]
    assert (last.from_status, last.to_status) == (Status.submitted, Status.approved)
    assert last.reason == (
        "Approved within own authority (a goodwill gesture): "
        "Asha Patel's goodwill limit covers the estimated £200"
    )


def test_goodwill_above_the_submitters_own_authority_is_routed(session: Session, org: Org) -> None:
    make_approver(session, "Mei Chen", Category.goodwill, 2_000)
    improvement = submit(session, org, cost=800, category=Category.goodwill)

    [request] = route(session, org, improvement)

    assert request.approver_id != org.asha.id
    assert status_of(session, improvement.id) == Status.awaiting_approval


def test_the_submitted_event_twice_at_once_asks_once(session: Session, org: Org) -> None:
    improvement = submit(session, org)

    at_once(
        2,
        lambda own: route_improvement(
            session=own, improvement_id=improvement.id, actor="route", channel=Channel.flow
        ),
    )

    assert len(session.exec(select(ApprovalRequest)).all()) == 1
    assert len(outbox(session)) == 1
    assert status_of(session, improvement.id) == Status.awaiting_approval
