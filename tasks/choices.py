"""The customer's choice from the link in the offer: accept one alternative, or decline them all.

An accepted alternative becomes an action plan (its approved improvement, or a new one approved on
the owner's own authority); declining reopens the case for its owner. When the plan is done the
customer is told (queue_done_notice, from the completion announcement).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from improve.errors import IllegalTransition, InvalidInput, LinkRefused
from improve.settings import settings
from models import (
    Alternative,
    AlternativeStatus,
    Case,
    CaseStatus,
    CaseUpdate,
    Category,
    Channel,
    Colleague,
    Customer,
    Improvement,
    ImprovementCreate,
    Partner,
    Source,
    Status,
)
from models.db import utcnow
from tasks import links
from tasks.alternatives import own_authority
from tasks.cases import get_case, record_note
from tasks.consent import queue_customer_email
from tasks.lifecycle import move, note
from tasks.offers import (
    cost_benefit_summary,
    current_round,
    customer_lines,
    provider_name,
    tell_owner,
)
from tasks.submission import submit_improvement


@dataclass
class Choice:
    """What the customer's answer did: the case, and the improvement to plan (accepted)."""

    case_id: int
    accepted: Alternative | None = None
    improvement_id: int | None = None


def offered(session: Session, case: Case) -> list[Alternative]:
    """The alternatives on offer to the customer now."""
    assert case.id is not None
    return [a for a in current_round(session, case.id) if a.status == AlternativeStatus.offered]


def _claim(
    session: Session, case: Case, token: str, to: CaseStatus, now: datetime, **values: object
) -> None:
    """Record the answer once: the case moves only if it still awaits the customer and the
    token is still its live, unexpired one. A second answer gets LinkRefused ("used")."""
    result = session.execute(
        update(Case)
        .where(
            col(Case.id) == case.id,
            col(Case.status) == CaseStatus.awaiting_customer,
            col(Case.choice_token_hash) == links.hash_token(token),
            col(Case.choice_expires_at) > now,
        )
        .values(status=to, updated_at=now, **values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        links.check_choice_link(session=session, case_id=case.id, token=token, now=now)  # type: ignore[arg-type]
        raise LinkRefused("used", "This link has already been used.", 410)
    session.refresh(case)


def accept_alternative(
    *, session: Session, case_id: int, token: str, alternative_id: int | None
) -> Choice:
    """The customer accepts one offered alternative. Uncommitted; the caller commits, then emits
    ALTERNATIVE_ACCEPTED so advance-improvement plans Choice.improvement_id.

    Recorded with who (the customer's email), when and what; the others are declined and their
    approved improvements cancelled; the owner (and helpers) are told.
    """
    case = links.check_choice_link(session=session, case_id=case_id, token=token)
    choices = offered(session, case)
    chosen = next((a for a in choices if a.id == alternative_id), None)
    if chosen is None:
        raise InvalidInput({"alternative": "Please choose one of the options listed."})
    customer = session.get(Customer, case.customer_id)
    owner = session.get(Colleague, case.owner_id)
    assert customer is not None and owner is not None
    now = utcnow()
    # Agreed: the customer should next hear from us when it is delivered.
    due = now + timedelta(days=max(chosen.days_to_deliver, 1))
    _claim(session, case, token, CaseStatus.agreed, now, next_update_due=due)
    summary = cost_benefit_summary(chosen, provider_name(session, chosen))
    what = f"alternative {chosen.position}: {chosen.description} ({summary})"
    record_note(
        session,
        case,
        "accepted",
        f"{customer.name} ({customer.email}) accepted {what} on {now:%Y-%m-%d %H:%M} UTC.",
        customer.email,
        Channel.email,
    )
    for other in choices:
        if other is not chosen:
            _decline(session, other, customer.email, f"{customer.name} chose another option")
    chosen.status = AlternativeStatus.accepted
    session.add(chosen)
    improvement_id = _plan_for(session, case, chosen, owner, customer, summary)
    tell_owner(
        session,
        case,
        key=f"case:{case_id}:accepted:{chosen.id}",
        headline=f"{customer.name} accepted an alternative",
        summary=(
            f"{customer.name} accepted alternative {chosen.position} for {case.reference}. "
            f"Its action plan is being drawn up as IMP-{improvement_id}; each step's owner gets "
            "an email with what to do and by when."
        ),
        lines=[f"{chosen.description} — {summary}"],
    )
    return Choice(case_id=case_id, accepted=chosen, improvement_id=improvement_id)


def _plan_for(
    session: Session,
    case: Case,
    chosen: Alternative,
    owner: Colleague,
    customer: Customer,
    summary: str,
) -> int:
    """The approved improvement that carries the accepted alternative's action plan."""
    said = f"The customer, {customer.name} ({customer.email}), accepted it"
    if chosen.improvement_id is not None:
        note(
            session=session,
            improvement_id=chosen.improvement_id,
            status=Status.approved,
            actor=customer.email,
            channel=Channel.email,
            reason=f"{said} through the choice link for {case.reference}",
        )
        return chosen.improvement_id
    # Approved on the owner's own authority when it was marked: it needs an improvement only now.
    improvement = submit_improvement(
        session=session,
        data=ImprovementCreate(
            title=f"Alternative for {case.reference}: {chosen.description}"[:200],
            description=(
                f"{customer.name}'s need in {case.reference} “{case.subject}” cannot be met: "
                f"{case.cannot_meet_reason}\n\nThey accepted alternative {chosen.position}: "
                f"{chosen.description}\nCost and benefit: {summary}."
            ),
            category=Category.alternative_solution,
            source=Source.triggered,
            estimated_cost=chosen.cost,
            submitter_email=owner.email,
            customer_emails=[customer.email],
            partner_emails=[p for p in [_partner_email(session, chosen)] if p],
        ),
        channel=Channel.email,
    )
    assert improvement.id is not None
    authority = own_authority(session, owner, chosen.cost)
    move(
        session=session,
        improvement_id=improvement.id,
        to=Status.approved,
        actor=owner.email,
        channel=Channel.email,
        reason=(
            f"Approved within {owner.name}'s own authority"
            + (
                f" (alternative solution limit {authority.spending_limit:,.0f})"
                if authority
                else ""
            )
            + f" when {case.reference} was marked; {said}"
        ),
    )
    chosen.improvement_id = improvement.id
    return improvement.id


def _partner_email(session: Session, alternative: Alternative) -> str | None:
    partner = session.get(Partner, alternative.partner_id) if alternative.partner_id else None
    return partner.email if partner else None


def _decline(session: Session, alternative: Alternative, actor: str, why: str) -> None:
    """Not taken: declined, and an improvement approved only to be offered is cancelled."""
    alternative.status = AlternativeStatus.declined
    session.add(alternative)
    if alternative.improvement_id is None:
        return
    try:
        move(
            session=session,
            improvement_id=alternative.improvement_id,
            to=Status.cancelled,
            actor=actor,
            channel=Channel.email,
            reason=f"Not needed: {why}",
        )
    except IllegalTransition:
        pass  # already planned or finished: not ours to undo here


def decline_alternatives(*, session: Session, case_id: int, token: str, note: str) -> Choice:
    """The customer declines every option, with a note: the case is open again for its owner,
    who is emailed the note and must update the customer by next_update_due. Uncommitted."""
    note = " ".join((note or "").split())
    if len(note) > 2000:
        raise InvalidInput(
            {"note": f"Please keep it under 2,000 characters (it is {len(note):,})."}
        )
    case = links.check_choice_link(session=session, case_id=case_id, token=token)
    choices = offered(session, case)
    customer = session.get(Customer, case.customer_id)
    assert customer is not None
    now = utcnow()
    due = now + timedelta(days=settings.case_update_days)
    _claim(session, case, token, CaseStatus.open, now, next_update_due=due)
    said = note or "(no note given)"
    record_note(
        session,
        case,
        "declined",
        f"{customer.name} ({customer.email}) declined the alternatives offered: {said}",
        customer.email,
        Channel.email,
    )
    for alternative in choices:
        _decline(session, alternative, customer.email, f"{customer.name} declined the options")
    tell_owner(
        session,
        case,
        key=f"case:{case_id}:declined:{choices[0].id if choices else 0}",
        headline=f"{customer.name} declined the alternatives",
        summary=(
            f"{customer.name} declined the alternatives offered for {case.reference}, so the "
            f"case is open again. Please get back to them by {due:%Y-%m-%d}."
        ),
        lines=[f"Their note: {said}"],
    )
    return Choice(case_id=case_id)


# --- when the accepted alternative is done ---------------------------------------------------


def accepted_alternative(session: Session, improvement_id: int) -> Alternative | None:
    return session.exec(
        select(Alternative).where(
            Alternative.improvement_id == improvement_id,
            Alternative.status == AlternativeStatus.accepted,
        )
    ).first()


def case_customer_id(session: Session, improvement_id: int) -> int | None:
    """The customer whose accepted alternative this improvement delivers: told by
    queue_done_notice, so the general notices leave them out."""
    alternative = accepted_alternative(session, improvement_id)
    return (
        get_case(session=session, case_id=alternative.case_id).customer_id if alternative else None
    )


def customer_update_summary(session: Session, improvement: Improvement) -> str | None:
    """What the plan's "send the customer the agreed alternative" step says, in the customer's
    terms (never our cost or the approvers' notes); None if it carries no accepted alternative."""
    alternative = accepted_alternative(session, improvement.id)  # type: ignore[arg-type]
    if alternative is None:
        return None
    lines = customer_lines(session, alternative)
    by = f" with {lines['provider']}" if lines["provider"] else ""
    return (
        f"We are arranging what you chose: {alternative.description}{by}. "
        f"You can expect {alternative.benefit.rstrip('.')} within "
        f"{alternative.days_to_deliver} day(s) of your choice."
    )


def queue_done_notice(*, session: Session, improvement_id: int) -> bool:
    """Tell the customer their accepted alternative is done, and close the case; idempotent.
    False when the improvement carries no accepted alternative."""
    alternative = accepted_alternative(session, improvement_id)
    if alternative is None:
        return False
    case = get_case(session=session, case_id=alternative.case_id)
    customer = session.get(Customer, case.customer_id)
    owner = session.get(Colleague, case.owner_id)
    assert case.id is not None and customer is not None and owner is not None
    email = queue_customer_email(
        session=session,
        key=f"case:{case.id}:done:{alternative.id}",
        customer=customer,
        template="alternative_done",
        purpose=None,  # service on their own case
        context={
            "customer_name": customer.name,
            "reference": case.reference,
            "case_subject": case.subject,
            "alternative": customer_lines(session, alternative),
            "owner_name": owner.name,
        },
        improvement_id=improvement_id,
    )
    if case.status == CaseStatus.agreed:
        now = utcnow()
        case.status, case.next_update_due, case.updated_at = CaseStatus.closed, None, now
        session.add(case)
        session.add(
            CaseUpdate(
                case_id=case.id,
                subject=f"Done: {alternative.description}"[:200],
                body=f"Told {customer.name} that alternative {alternative.position} is done.",
                sent_by="announce-impact",
                channel="email",
                email_id=email.id,
            )
        )
        record_note(
            session,
            case,
            "closed",
            f"Alternative {alternative.position} delivered (IMP-{improvement_id} completed); "
            f"{customer.name} told.",
            "announce-impact",
            Channel.flow,
        )
    return True
