"""Approvals: ask the colleagues whose authority covers an improvement, by email with a link.

Their answers are recorded in tasks/decisions.py; the sweep reminds and escalates the unanswered
in tasks/escalation.py. Both build on the requests and the helpers here.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from improve.errors import IllegalTransition, NotFound
from improve.formatting import money
from improve.settings import settings
from models import ApprovalRequest, ApprovalStatus, Channel, Colleague, Improvement, Status
from models.db import utcnow
from tasks import links
from tasks.lifecycle import lock_improvement, move, note, raised_for_case
from tasks.mail import queue_email
from tasks.routing import Route, levels_for, routes_for

# ---------------------------------------------------------------------------------------------
# Asking


def route_improvement(
    *, session: Session, improvement_id: int, actor: str, channel: Channel
) -> list[ApprovalRequest]:
    """Ask the level-1 approvers of a submitted improvement and move it to awaiting_approval.

    A goodwill gesture within the submitter's own authority is approved at once and nobody is
    asked (an empty list). Already routed: nothing changes and the existing requests come back.
    """
    # Two routers at once: one asks.
    improvement = lock_improvement(session=session, improvement_id=improvement_id)
    if improvement.status == Status.identified:
        raise IllegalTransition(improvement.reference, improvement.status, Status.awaiting_approval)
    if improvement.status != Status.submitted:
        return approval_requests(session, improvement_id)
    case = raised_for_case(session=session, improvement_id=improvement_id)
    if case is not None and case.owner_id == improvement.submitter_id:
        # Keeping one's own customer informed needs nobody's approval: it is the job.
        move(
            session=session,
            improvement_id=improvement_id,
            to=Status.approved,
            actor=actor,
            channel=channel,
            reason=f"Approved within the case owner's own remit: updating the customer on "
            f"{case.reference} is theirs to do",
        )
        return []
    if not routes_for(session=session, improvement_id=improvement_id, levels=[1]):
        submitter = session.get(Colleague, improvement.submitter_id)
        move(
            session=session,
            improvement_id=improvement_id,
            to=Status.approved,
            actor=actor,
            channel=channel,
            reason=(
                # C8's words, so the audit trail answers "was this within their own authority?"
                "Approved within own authority (a goodwill gesture): "
                f"{submitter.name if submitter else 'the submitter'}'s goodwill limit covers "
                f"the estimated {money(improvement.estimated_cost)}"
            ),
        )
        return []
    requests = request_approvals(
        session=session, improvement_id=improvement_id, level=1, actor=actor, channel=channel
    )
    # A second router waited at the lock above and found it routed; should one get here anyway,
    # the conditional move fails and takes its requests and emails with it.
    move(
        session=session,
        improvement_id=improvement_id,
        to=Status.awaiting_approval,
        actor=actor,
        channel=channel,
        reason=asked_sentence(session, requests, levels_for(improvement, requests)),
    )
    return requests


def request_approvals(
    *, session: Session, improvement_id: int, level: int, actor: str, channel: Channel
) -> list[ApprovalRequest]:
    """Ask the approver for one level, with a link and the reason they were chosen.

    Idempotent per (improvement, level): once a level has been asked, the same requests return.
    Whoever decided another level is not asked again, so two levels mean two people.
    """
    improvement = lock_improvement(session=session, improvement_id=improvement_id)
    existing = [r for r in approval_requests(session, improvement_id) if r.level == level]
    if existing:
        return existing
    routes = routes_for(
        session=session,
        improvement_id=improvement_id,
        levels=[level],
        exclude=deciders(session, improvement_id, other_than_level=level),
    )
    now = utcnow()
    created = [ask(session, improvement, route, now=now) for route in routes]
    if created and improvement.status == Status.awaiting_approval:
        note(
            session=session,
            improvement_id=improvement_id,
            status=Status.awaiting_approval,
            actor=actor,
            channel=channel,
            reason=asked_sentence(session, created, levels_for(improvement, created)),
        )
    return created


def ask(
    session: Session,
    improvement: Improvement,
    route: Route,
    *,
    now: datetime,
    escalated_from_name: str | None = None,
) -> ApprovalRequest:
    """One approval request with a fresh token, and its email queued in the same transaction."""
    assert improvement.id is not None
    token, token_hash = links.new_token()
    request = ApprovalRequest(
        improvement_id=improvement.id,
        approver_id=route.approver_id,
        on_behalf_of_id=route.on_behalf_of_id,
        level=route.level,
        reason=route.reason[:1000],
        token_hash=token_hash,
        expires_at=now + timedelta(days=settings.approval_expiry_days),
        created_at=now,  # the sweep measures waiting from here, also when it runs with its own now
    )
    session.add(request)
    session.flush()
    queue_request_email(
        session,
        improvement,
        request,
        token,
        key=f"approval:{request.id}:request",
        escalated_from_name=escalated_from_name,
    )
    return request


def queue_request_email(
    session: Session,
    improvement: Improvement,
    request: ApprovalRequest,
    token: str,
    *,
    key: str,
    reminder: bool = False,
    escalated_from_name: str | None = None,
) -> None:
    """The approval_request email: the first ask, a reminder, or an escalation to someone new."""
    assert request.id is not None
    approver = get_colleague(session, request.approver_id)
    principal = session.get(Colleague, request.on_behalf_of_id) if request.on_behalf_of_id else None
    context: dict[str, Any] = {
        "approver_name": approver.name,
        "on_behalf_of_name": principal.name if principal else None,
        "reference": improvement.reference,
        "title": improvement.title,
        "description": improvement.description,
        "category": str(improvement.category),
        "submitter_name": _submitter_name(session, improvement),
        "estimated_cost": float(improvement.estimated_cost),
        "annual_saving": float(improvement.annual_saving),
        "kwh": float(improvement.kwh),
        "kg_co2e": float(improvement.kg_co2e),
        "kg_waste": float(improvement.kg_waste),
        "level": request.level,
        "levels": levels_for(improvement, approval_requests(session, request.improvement_id)),
        "reason": request.reason,
        "expires_on": f"{request.expires_at:%Y-%m-%d}",
        "reminder": reminder,
        "escalated_from_name": escalated_from_name,
        # A reminder carries a new link and the earlier one stops working (tasks/escalation.py).
        "replaces_earlier_link": reminder,
    }
    queue_email(
        session=session,
        key=key,
        to=approver.email,
        template="approval_request",
        context=context,
        links={"url": links.approval_url(request.id, token)},
        improvement_id=improvement.id,
    )


# ---------------------------------------------------------------------------------------------
# Helpers that deciding and escalating share


def get_colleague(session: Session, colleague_id: int) -> Colleague:
    """The colleague with this id, or NotFound naming it."""
    colleague = session.get(Colleague, colleague_id)
    if colleague is None:
        raise NotFound("colleague", colleague_id)
    return colleague


def approval_requests(session: Session, improvement_id: int) -> list[ApprovalRequest]:
    """Every request made for an improvement, oldest first, as the database has them now."""
    return list(
        session.exec(
            select(ApprovalRequest)
            .where(col(ApprovalRequest.improvement_id) == improvement_id)
            .order_by(col(ApprovalRequest.id))
            .execution_options(populate_existing=True)
        ).all()
    )


def deciders(session: Session, improvement_id: int, *, other_than_level: int) -> set[int]:
    """Who approved another level (and whom they stood in for): not to be asked again."""
    ids: set[int] = set()
    for request in approval_requests(session, improvement_id):
        if request.level != other_than_level and request.status == ApprovalStatus.approved:
            ids.add(request.approver_id)
            if request.on_behalf_of_id is not None:
                ids.add(request.on_behalf_of_id)
    return ids


def _submitter_name(session: Session, improvement: Improvement) -> str:
    if improvement.submitter_id is None:
        return f"Improve ({improvement.source} improvement)"
    return get_colleague(session, improvement.submitter_id).name


def asked_sentence(
    session: Session, requests: Sequence[ApprovalRequest], levels: int | None
) -> str:
    """ "Asked Sam Lee for level 1 of 2 approval: ...": the words the audit trail keeps."""
    parts = []
    for request in requests:
        approver = get_colleague(session, request.approver_id)
        who = approver.name
        if request.on_behalf_of_id is not None:
            who += f" (on behalf of {get_colleague(session, request.on_behalf_of_id).name})"
        of = f" of {levels}" if levels else ""
        parts.append(f"Asked {who} for level {request.level}{of} approval: {request.reason}")
    return "; ".join(parts)
