"""When a customer's need cannot be met: record the reason and the alternatives, approve each on
the owner's own authority or through the usual routing (offering the approved ones is in
tasks/offers.py, the customer's answer in tasks/choices.py).
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from improve.errors import InvalidInput
from improve.formatting import label, money
from improve.settings import settings
from models import (
    Alternative,
    AlternativeStatus,
    Authority,
    Case,
    CaseStatus,
    Category,
    Channel,
    Colleague,
    Customer,
    Improvement,
    ImprovementCreate,
    Partner,
    Source,
)
from models.db import MAX_AMOUNT, utcnow
from tasks.cases import record_note
from tasks.offers import (
    cost_benefit_summary,
    lock_case,
    settle_case,
)
from tasks.routing import holds_authority, levels_needed
from tasks.submission import submit_improvement

# Statuses a case may be marked "cannot meet" from: not while a round of alternatives is live.
MARKABLE = (CaseStatus.open, CaseStatus.delayed)


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
        partner = (  # no address holds a NUL, and PostgreSQL refuses one even in a query
            session.exec(select(Partner).where(Partner.email == email)).first()
            if "\x00" not in email
            else None
        )
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
    record_note(session, case, "cannot_meet", reason, actor, channel)
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
                case,
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
            case,
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
