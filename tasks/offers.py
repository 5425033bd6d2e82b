"""Offering approved alternatives to the customer, or giving the case back to its owner: each
alternative's cost-benefit summary, and what happens once its approvers have decided.

Marking a case "cannot meet" is in tasks/alternatives.py; the customer's answer in
tasks/choices.py.
"""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from improve.formatting import money
from improve.settings import settings
from models import (
    Alternative,
    AlternativeStatus,
    Case,
    CaseStatus,
    CaseUpdate,
    Channel,
    Colleague,
    Customer,
    HelpRequest,
    HelpStatus,
    Improvement,
    Partner,
    Status,
    Transition,
)
from models.db import utcnow
from tasks import links
from tasks.cases import case_url, get_case, record_note
from tasks.consent import queue_customer_email
from tasks.lifecycle import get_improvement
from tasks.mail import queue_email

# Improvement statuses that mean its approvers said yes (planning may already have started).
SAID_YES = (Status.approved, Status.in_progress, Status.completed)


def lock_case(session: Session, case_id: int) -> Case:
    """Take the case's row for this transaction (see tasks.lifecycle.lock_improvement): an
    approval landing and the sweep then settle a case one after the other."""
    session.execute(update(Case).where(col(Case.id) == case_id).values(updated_at=Case.updated_at))
    return get_case(session=session, case_id=case_id)


# --- the cost-benefit summary ----------------------------------------------------------------


def provider_name(session: Session, alternative: Alternative) -> str:
    if alternative.partner_id is None:
        return "us"
    partner = session.get(Partner, alternative.partner_id)
    return partner.name if partner else f"partner #{alternative.partner_id}"


def cost_benefit_summary(alternative: Alternative, provider: str = "us") -> str:
    """ "£120 to us; the customer gets a loan heater within 5 days (provided by Warm Homes Ltd)":
    the one sentence approvers, the case page and the history all show."""
    days = alternative.days_to_deliver
    within = "the same day" if days == 0 else f"within {days} day{'s' if days != 1 else ''}"
    benefit = alternative.benefit.strip().rstrip(".")
    by = "" if provider == "us" else f" (provided by {provider})"
    return f"{money(alternative.cost)} to us; the customer gets {benefit} {within}{by}"


def customer_lines(session: Session, alternative: Alternative) -> dict[str, Any]:
    """An alternative as the customer reads it: what, what they gain, when, who; never our cost."""
    provider = provider_name(session, alternative)
    return {
        "id": alternative.id,
        "position": alternative.position,
        "description": alternative.description,
        "benefit": alternative.benefit,
        "days_to_deliver": alternative.days_to_deliver,
        "provider": "" if provider == "us" else provider,
    }


# --- after the approvers: offer, or back to the owner ----------------------------------------


def current_round(session: Session, case_id: int) -> list[Alternative]:
    """The alternatives proposed together the last time the case was marked, in order."""
    latest = session.exec(
        select(func.max(Alternative.created_at)).where(Alternative.case_id == case_id)
    ).one()
    if latest is None:
        return []
    return list(
        session.exec(
            select(Alternative)
            .where(Alternative.case_id == case_id, Alternative.created_at == latest)
            .order_by(col(Alternative.position))
            .execution_options(populate_existing=True)
        ).all()
    )


def _take_decisions(session: Session, case: Case, round_: list[Alternative], actor: str) -> None:
    """A proposed alternative follows its improvement: approved, or rejected (with why)."""
    for alternative in round_:
        if alternative.status != AlternativeStatus.proposed or alternative.improvement_id is None:
            continue
        improvement = get_improvement(session=session, improvement_id=alternative.improvement_id)
        if improvement.status in SAID_YES:
            alternative.status = AlternativeStatus.approved
            what = "approved"
        elif improvement.status in (Status.rejected, Status.cancelled):
            alternative.status = AlternativeStatus.rejected
            what = "rejected"
        else:
            continue
        session.add(alternative)
        record_note(
            session,
            case,
            f"alternative_{what}",
            f"Alternative {alternative.position} {what} through {improvement.reference}"
            + _latest_reason(session, improvement),
            actor,
            Channel.flow,
        )


def _latest_reason(session: Session, improvement: Improvement) -> str:
    """ ": <why>" from the improvement's newest history row (the approver's words), or "."."""
    last = session.exec(
        select(Transition)
        .where(Transition.improvement_id == improvement.id)
        .order_by(col(Transition.id).desc())
    ).first()
    return f": {last.reason}" if last and last.reason else "."


def settle_case(*, session: Session, case_id: int, actor: str, channel: Channel | str) -> str:
    """Move a case on once its alternatives are decided; idempotent. Uncommitted.

    "waiting" while an alternative still waits for approval; "offered" when at least one is
    approved (the customer is emailed once, with a single choice link); "returned" when every one
    was rejected (the case goes back to its owner); "nothing" when the case is not waiting on
    its approvers (already offered, or never marked).
    """
    case = lock_case(session, case_id)
    if case.status != CaseStatus.cannot_meet:
        return "nothing"
    round_ = current_round(session, case_id)
    _take_decisions(session, case, round_, actor)
    if any(a.status == AlternativeStatus.proposed for a in round_):
        return "waiting"
    approved = [a for a in round_ if a.status == AlternativeStatus.approved]
    if approved:
        _offer(session, case, round_, approved, actor, channel)
        return "offered"
    _return_to_owner(session, case, round_, actor, channel)
    return "returned"


def settle_after_decision(*, session: Session, improvement_id: int, actor: str) -> str:
    """After an approval decision on an alternative's improvement: settle its case (or
    "nothing" when the improvement is no alternative)."""
    case_id = session.exec(
        select(Alternative.case_id).where(Alternative.improvement_id == improvement_id)
    ).first()
    if case_id is None:
        return "nothing"
    return settle_case(session=session, case_id=case_id, actor=actor, channel=Channel.flow)


def cases_to_settle(*, session: Session, changed_before: datetime | None = None) -> list[int]:
    """Cases still waiting on approvers whose alternatives may all be decided (a lost event).

    `changed_before` leaves alone cases changed since, whose own flow is moving them now.
    """
    query = select(Case.id).where(Case.status == CaseStatus.cannot_meet)
    if changed_before is not None:
        query = query.where(col(Case.updated_at) <= changed_before)
    return [
        case_id
        for case_id in session.exec(query.order_by(col(Case.id))).all()
        if case_id is not None
        and all(_decided(session, a) for a in current_round(session, case_id))
    ]


def _decided(session: Session, alternative: Alternative) -> bool:
    """Approved on the owner's authority, or its improvement's approvers have answered."""
    if alternative.status != AlternativeStatus.proposed:
        return True
    if alternative.improvement_id is None:
        return False
    improvement = get_improvement(session=session, improvement_id=alternative.improvement_id)
    return improvement.status in (*SAID_YES, Status.rejected, Status.cancelled)


def awaits_customer(*, session: Session, improvement_id: int) -> bool:
    """An approved alternative is planned only once the customer accepts it."""
    status = session.exec(
        select(Alternative.status).where(Alternative.improvement_id == improvement_id)
    ).first()
    return status is not None and status != AlternativeStatus.accepted


def _offer(
    session: Session,
    case: Case,
    round_: list[Alternative],
    approved: list[Alternative],
    actor: str,
    channel: Channel | str,
) -> None:
    """Email the customer the approved alternatives with one choice link; awaiting_customer."""
    assert case.id is not None
    customer = session.get(Customer, case.customer_id)
    owner = session.get(Colleague, case.owner_id)
    assert customer is not None and owner is not None
    now = utcnow()
    token, token_hash = links.new_token()
    expires = now + timedelta(days=settings.choice_link_expiry_days)
    # A second round (after a decline): the first offer's link then says it was replaced.
    links.retire(
        session=session, token_hash=case.choice_token_hash, kind="choice", target_id=case.id, at=now
    )
    case.status, case.updated_at = CaseStatus.awaiting_customer, now
    case.choice_token_hash, case.choice_expires_at = token_hash, expires
    # The offer is this update; if the customer says nothing, the owner follows up when it lapses.
    case.next_update_due = expires
    session.add(case)
    for alternative in approved:
        alternative.status = AlternativeStatus.offered
        session.add(alternative)
    offered = [customer_lines(session, a) for a in approved]
    email = queue_customer_email(
        session=session,
        key=f"case:{case.id}:offer:{round_[0].id}",
        customer=customer,
        template="alternatives_offer",
        purpose=None,  # service on their own case
        context={
            "customer_name": customer.name,
            "reference": case.reference,
            "case_subject": case.subject,
            "reason": case.cannot_meet_reason,
            "alternatives": offered,
            "owner_name": owner.name,
            "expires_on": f"{expires:%Y-%m-%d}",
        },
        links={"url": links.choice_url(case.id, token)},
    )
    listed = "; ".join(f"{a['position']}. {a['description']}" for a in offered)
    session.add(
        CaseUpdate(
            case_id=case.id,
            subject=f"Other ways we can help with {case.reference}",
            body=f"Explained why the need cannot be met and offered: {listed}",
            sent_by=actor[:254],
            channel="email",
            email_id=email.id,
        )
    )
    record_note(
        session,
        case,
        "offered",
        f"Offered {customer.name} {len(offered)} alternative(s) by email: {listed}. "
        f"The choice link works until {expires:%Y-%m-%d}.",
        actor,
        channel,
    )


def _return_to_owner(
    session: Session, case: Case, round_: list[Alternative], actor: str, channel: Channel | str
) -> None:
    """Every alternative was rejected: the case is the owner's again, and they are told."""
    assert case.id is not None
    now = utcnow()
    case.status, case.updated_at = CaseStatus.open, now
    if case.next_update_due is None:
        case.next_update_due = now + timedelta(days=settings.case_update_days)
    session.add(case)
    note = (
        f"Every alternative was rejected ({len(round_)}); the case is back with its owner to "
        "find another way or propose new alternatives."
    )
    record_note(session, case, "returned", note, actor, channel)
    tell_owner(
        session,
        case,
        key=f"case:{case.id}:returned:{round_[0].id}",
        headline="None of the alternatives was approved",
        summary=(
            f"The approvers did not approve any of the alternatives you proposed for "
            f"{case.reference}, so nothing was offered to the customer. The case is open again: "
            "please find another way to help, or propose new alternatives."
        ),
        lines=[
            f"Alternative {a.position}: {a.description} — {cost_benefit_summary(a)}" for a in round_
        ],
    )


def tell_owner(
    session: Session, case: Case, *, key: str, headline: str, summary: str, lines: list[str]
) -> None:
    """A case_owner_notice to the owner and to colleagues who agreed to help on the case."""
    assert case.id is not None
    owner = session.get(Colleague, case.owner_id)
    helpers = session.exec(
        select(Colleague)
        .join(HelpRequest, col(HelpRequest.helper_id) == col(Colleague.id))
        .where(HelpRequest.case_id == case.id, HelpRequest.status == HelpStatus.accepted)
    ).all()
    people = [p for p in [owner, *helpers] if p is not None and p.active]
    for person in {p.id: p for p in people}.values():
        queue_email(
            session=session,
            key=f"{key}:{person.id}",
            to=person.email,
            template="case_owner_notice",
            context={
                "name": person.name,
                "reference": case.reference,
                "case_subject": case.subject,
                "headline": headline,
                "summary": summary,
                "lines": lines,
                "url": case_url(case.id),
            },
        )
