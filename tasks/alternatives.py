"""When a customer's need cannot be met: record the reason and the alternatives, approve each on
the owner's own authority or through the usual routing, then offer the approved ones.

The customer's answer (accept one, or decline) is in tasks/choices.py.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from improve.errors import InvalidInput, NotFound
from improve.formatting import label, money
from improve.settings import settings
from models import (
    Alternative,
    AlternativeStatus,
    Authority,
    Case,
    CaseNote,
    CaseStatus,
    CaseUpdate,
    Category,
    Channel,
    Colleague,
    Customer,
    HelpRequest,
    HelpStatus,
    Improvement,
    ImprovementCreate,
    Partner,
    Source,
    Status,
    Transition,
)
from models.db import MAX_AMOUNT, utcnow
from tasks import links
from tasks.consent import queue_customer_email
from tasks.lifecycle import get_improvement
from tasks.mail import queue_email
from tasks.routing import holds_authority, levels_needed
from tasks.submission import submit_improvement

# Statuses a case may be marked "cannot meet" from: not while a round of alternatives is live.
MARKABLE = (CaseStatus.open, CaseStatus.delayed)
# Improvement statuses that mean its approvers said yes (planning may already have started).
SAID_YES = (Status.approved, Status.in_progress, Status.completed)


@dataclass
class AlternativeIn:
    """One alternative as typed on the form or sent by a script; checked by mark_cannot_meet."""

    description: str = ""
    partner_email: str = ""  # blank: the organisation provides it
    cost: float | str | None = None
    benefit: str = ""
    days_to_deliver: int | str | None = None


@dataclass
class Marked:
    """What marking did: the alternatives made, the improvements to announce after the commit
    (improve.events.emit_submitted), and whether the customer was offered them at once."""

    case_id: int
    alternative_ids: list[int] = field(default_factory=list)
    submitted: list[int] = field(default_factory=list)
    outcome: str = "waiting"  # "offered" when every alternative was within the owner's authority


def get_case(session: Session, case_id: int) -> Case:
    case = session.get(Case, case_id, populate_existing=True)
    if case is None:
        raise NotFound("case", f"CASE-{case_id}")
    return case


def lock_case(session: Session, case_id: int) -> Case:
    """Take the case's row for this transaction (see tasks.lifecycle.lock_improvement): an
    approval landing and the sweep then settle a case one after the other."""
    session.execute(update(Case).where(col(Case.id) == case_id).values(updated_at=Case.updated_at))
    return get_case(session, case_id)


def record_note(
    session: Session, case_id: int, what: str, note: str, actor: str, channel: Channel | str
) -> CaseNote:
    """One line of the case's history (never updated, never deleted)."""
    row = CaseNote(
        case_id=case_id, what=what[:32], note=note[:2000], actor=actor[:254], channel=str(channel)
    )
    session.add(row)
    return row


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


# --- marking ---------------------------------------------------------------------------------


def _number(raw: object, *, whole: bool) -> float | None:
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        raw = raw.strip().replace(",", "").replace("£", "")
        if not raw:
            return None
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    if whole and math.isfinite(value) and value != int(value):
        return math.nan
    return value


def _check(
    session: Session, index: int, raw: AlternativeIn, errors: dict[str, str]
) -> tuple[str, Partner | None, float, str, int] | None:
    """One alternative's fields, or None after writing what is wrong under alternatives.<n>."""
    where = f"alternatives.{index}"
    description = " ".join(raw.description.split())
    name = f"alternative {index}" + (f" (“{description[:60]}”)" if description else "")
    before = len(errors)
    if not description:
        errors[f"{where}.description"] = f"{name} needs a description: what we would do instead"
    elif len(description) > 500:
        errors[f"{where}.description"] = f"{name}: the description can be at most 500 characters"
    partner = None
    email = raw.partner_email.strip().lower()
    if email:
        partner = session.exec(select(Partner).where(Partner.email == email)).first()
        if partner is None:
            errors[f"{where}.partner_email"] = (
                f"{name}: no service partner has the email {email!r}; leave it blank if we "
                "provide it ourselves"
            )
    cost = _number(raw.cost, whole=False)
    if cost is None:
        errors[f"{where}.cost"] = f"{name} has no cost: say what it costs us (0 if nothing)"
    elif not math.isfinite(cost) or cost < 0 or cost > MAX_AMOUNT:
        errors[f"{where}.cost"] = f"{name}: the cost must be a number of pounds, 0 or more"
    benefit = " ".join(raw.benefit.split())
    if not benefit:
        errors[f"{where}.benefit"] = f"{name} needs a benefit: what the customer gains"
    elif len(benefit) > 1000:
        errors[f"{where}.benefit"] = f"{name}: the benefit can be at most 1,000 characters"
    days = _number(raw.days_to_deliver, whole=True)
    if days is None:
        errors[f"{where}.days_to_deliver"] = f"{name} needs the days it takes to deliver"
    elif not math.isfinite(days) or not 0 <= days <= 3650:
        errors[f"{where}.days_to_deliver"] = (
            f"{name}: days to deliver must be a whole number from 0 to 3650"
        )
    if len(errors) > before:
        return None
    return description, partner, float(cost or 0), benefit, int(days or 0)


def _from_mapping(raw: Mapping[str, Any]) -> AlternativeIn:
    """An alternative sent as JSON: unknown keys are ignored, missing ones left blank."""
    known = {name: raw[name] for name in AlternativeIn.__dataclass_fields__ if name in raw}
    for text in ("description", "partner_email", "benefit"):
        known[text] = str(known.get(text) or "")
    return AlternativeIn(**known)


def own_authority(session: Session, owner: Colleague, cost: float) -> Authority | None:
    """The owner's alternative-solution authority that covers `cost` at every level it needs
    (tasks.routing.holds_authority, the rule goodwill uses too), or None."""
    if not owner.active or owner.id is None:
        return None
    held = session.exec(
        select(Authority).where(
            Authority.colleague_id == owner.id,
            Authority.category == Category.alternative_solution,
        )
    ).all()
    levels = levels_needed(cost, settings.two_level_threshold)
    if not holds_authority(held, owner.id, cost, levels):
        return None
    return min((a for a in held if a.spending_limit >= cost), key=lambda a: a.spending_limit)


def mark_cannot_meet(
    *,
    session: Session,
    case_id: int,
    reason: str,
    alternatives: Sequence[AlternativeIn | Mapping[str, Any]],
    actor: str,
    channel: Channel,
) -> Marked:
    """Record that a case's need cannot be met, with the reason and the alternatives. Uncommitted.

    Each alternative within the owner's own alternative-solution authority is approved at once;
    each beyond it becomes an alternative_solution improvement submitted by the owner, which the
    usual routing takes to approvers. Once none is waiting for approval the approved ones are
    offered to the customer (settle_case). Everything is checked before anything is written:
    bad input raises InvalidInput naming each field and leaves no trace. The caller commits,
    then announces Marked.submitted with improve.events.emit_submitted.
    """
    case = lock_case(session, case_id)
    errors: dict[str, str] = {}
    reason = (reason or "").strip()
    if case.status not in MARKABLE:
        raise InvalidInput(
            {
                "status": f"{case.reference} is {label(case.status).lower()}: alternatives can be "
                "proposed only while it is open or delayed"
            }
        )
    if not reason:
        errors["reason"] = "is required: say why the need cannot be met (the customer reads it)"
    elif len(reason) > 2000:
        errors["reason"] = f"can be at most 2,000 characters (it is {len(reason):,})"
    if not alternatives:
        errors["alternatives"] = "propose at least one alternative we can offer the customer"
    given = [a if isinstance(a, AlternativeIn) else _from_mapping(a) for a in alternatives]
    checked = [_check(session, n, raw, errors) for n, raw in enumerate(given, start=1)]
    if errors:
        raise InvalidInput(errors)
    owner = session.get(Colleague, case.owner_id)
    customer = session.get(Customer, case.customer_id)
    assert owner is not None and customer is not None

    now = utcnow()
    case.cannot_meet_reason, case.status, case.updated_at = reason, CaseStatus.cannot_meet, now
    session.add(case)
    record_note(session, case_id, "cannot_meet", reason, actor, channel)
    last = session.exec(
        select(func.max(Alternative.position)).where(Alternative.case_id == case_id)
    ).one()
    marked = Marked(case_id=case_id)
    for offset, fields in enumerate(checked, start=1):
        assert fields is not None
        description, partner, cost, benefit, days = fields
        alternative = Alternative(
            case_id=case_id,
            position=(last or 0) + offset,
            description=description,
            partner_id=partner.id if partner else None,
            cost=cost,
            benefit=benefit,
            days_to_deliver=days,
            created_at=now,  # one round of alternatives shares its moment (see current_round)
        )
        session.add(alternative)
        session.flush()
        assert alternative.id is not None
        marked.alternative_ids.append(alternative.id)
        summary = cost_benefit_summary(alternative, partner.name if partner else "us")
        authority = own_authority(session, owner, cost)
        if authority is not None:
            alternative.status = AlternativeStatus.approved
            record_note(
                session,
                case_id,
                "alternative_approved",
                f"Alternative {alternative.position} approved within {owner.name}'s own "
                f"authority: their alternative solution limit of "
                f"{money(authority.spending_limit)} covers it. {summary}.",
                actor,
                channel,
            )
            continue
        improvement = _submit_for_approval(
            session, case, owner, customer, partner, alternative, summary, channel
        )
        alternative.improvement_id = improvement.id
        marked.submitted.append(improvement.id)  # type: ignore[arg-type]
        record_note(
            session,
            case_id,
            "alternative_proposed",
            f"Alternative {alternative.position} is beyond {owner.name}'s own authority, so "
            f"{improvement.reference} asks for approval. {summary}.",
            actor,
            channel,
        )
    session.flush()
    marked.outcome = settle_case(session=session, case_id=case_id, actor=actor, channel=channel)
    return marked


def _submit_for_approval(
    session: Session,
    case: Case,
    owner: Colleague,
    customer: Customer,
    partner: Partner | None,
    alternative: Alternative,
    summary: str,
    channel: Channel,
) -> Improvement:
    """The alternative_solution improvement that takes an alternative to its approvers."""
    description = (
        f"{customer.name}'s need in {case.reference} “{case.subject}” cannot be met: "
        f"{case.cannot_meet_reason}\n\n"
        f"Alternative {alternative.position}: {alternative.description}\n"
        f"Cost and benefit: {summary}.\n\n"
        f"It is beyond the case owner {owner.name}'s own authority. Once approved it is offered "
        "to the customer, who chooses; it is planned only if they accept it."
    )
    data = ImprovementCreate(
        title=f"Alternative for {case.reference}: {alternative.description}"[:200],
        description=description[:10_000],
        category=Category.alternative_solution,
        source=Source.triggered,
        estimated_cost=alternative.cost,
        submitter_email=owner.email,
        customer_emails=[customer.email],
        partner_emails=[partner.email] if partner else [],
    )
    return submit_improvement(session=session, data=data, channel=channel)


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
            case.id,  # type: ignore[arg-type]
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


def case_url(case_id: int) -> str:
    return f"{settings.base_url}/cases/{case_id}"


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
        case.id,
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
    record_note(session, case.id, "returned", note, actor, channel)
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
