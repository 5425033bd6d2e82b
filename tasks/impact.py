"""Impact: what an improvement achieved, told to the customers and partners it touched."""

from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from improve.errors import ImproveError
from improve.formatting import money, quantity
from improve.settings import settings
from models import (
    ApprovalRequest,
    ApprovalStatus,
    Category,
    Colleague,
    Customer,
    Improvement,
    ImprovementCustomer,
    ImprovementPartner,
    OutboxEmail,
    Partner,
    Purpose,
    Status,
)
from tasks.choices import case_customer_id, queue_done_notice
from tasks.consent import consenting_customer_ids, queue_customer_email
from tasks.lifecycle import get_improvement
from tasks.mail import queue_email, translations


class NotCompleted(ImproveError):
    status_code = 409

    def __init__(self, reference: str, status: str) -> None:
        super().__init__(f"{reference} is {status}: only a completed improvement is announced")


# How each result reads, by language: (measured wording, estimated wording).
_WORDING: dict[str, list[tuple[str, str]]] = {
    "en": [
        ("{m} saved (measured)", "About {m} saved a year"),
        ("{n} kWh of energy saved (measured)", "About {n} kWh of energy a year"),
        ("{n} kg CO2e of emissions avoided (measured)", "About {n} kg CO2e of emissions a year"),
        (
            "{n} kg of waste kept out of landfill (measured)",
            "About {n} kg of waste kept out of landfill a year",
        ),
        ("{n} sheets of paper saved (measured)", "About {n} sheets of paper a year"),
    ],
    "cy": [
        ("{m} wedi'i arbed (wedi'i fesur)", "Tua {m} wedi'i arbed bob blwyddyn"),
        ("{n} kWh o ynni wedi'i arbed (wedi'i fesur)", "Tua {n} kWh o ynni bob blwyddyn"),
        (
            "{n} kg CO2e o allyriadau wedi'u hosgoi (wedi'u mesur)",
            "Tua {n} kg CO2e o allyriadau bob blwyddyn",
        ),
        (
            "{n} kg o wastraff wedi'i gadw o safleoedd tirlenwi (wedi'i fesur)",
            "Tua {n} kg o wastraff wedi'i gadw o safleoedd tirlenwi bob blwyddyn",
        ),
        (
            "{n} o ddalennau papur wedi'u harbed (wedi'u mesur)",
            "Tua {n} o ddalennau papur bob blwyddyn",
        ),
    ],
}


def impact_lines(improvement: Improvement, language: str = "en") -> list[str]:
    """Plain lines for notices, e.g. "About 1,200 kWh of energy a year" (or in Welsh, "cy").

    A measured result wins over the estimate it replaces; the estimate is shown as one ("About ...
    a year"). Nothing is converted here: the figures are those estimated or measured
    (tasks/estimates.py works them out from activity).
    """
    lines: list[str] = []
    figures: list[tuple[float | None, float | None]] = [
        (improvement.measured_saving, improvement.annual_saving),
        (improvement.measured_kwh, improvement.kwh),
        (improvement.measured_kg_co2e, improvement.kg_co2e),
        (improvement.measured_kg_waste, improvement.kg_waste),
        (improvement.measured_sheets_paper, improvement.sheets_paper),
    ]
    for (measured, estimated), (measured_text, estimated_text) in zip(
        figures, _WORDING[language], strict=True
    ):
        if measured is not None and measured > 0:
            lines.append(measured_text.format(n=quantity(measured), m=money(measured)))
        elif estimated and estimated > 0:
            lines.append(estimated_text.format(n=quantity(estimated), m=money(estimated)))
    return lines


def affected_customers(*, session: Session, improvement_id: int) -> list[Customer]:
    return list(
        session.exec(
            select(Customer)
            .join(ImprovementCustomer, col(ImprovementCustomer.customer_id) == col(Customer.id))
            .where(ImprovementCustomer.improvement_id == improvement_id)
            .order_by(col(Customer.id))
        ).all()
    )


def affected_partners(*, session: Session, improvement_id: int) -> list[Partner]:
    return list(
        session.exec(
            select(Partner)
            .join(ImprovementPartner, col(ImprovementPartner.partner_id) == col(Partner.id))
            .where(ImprovementPartner.improvement_id == improvement_id)
            .order_by(col(Partner.id))
        ).all()
    )


def _exists(session: Session, key: str) -> bool:
    return (
        session.exec(select(OutboxEmail.id).where(OutboxEmail.idempotency_key == key)).first()
        is not None
    )


def queue_customer_notices(
    *,
    session: Session,
    improvement: Improvement,
    key_prefix: str,
    summary: str | dict[str, str],
    lines: list[str] | None = None,
    only_case_customer: bool = False,
) -> dict[str, int]:
    """A customer_notice to each affected customer who agreed to improvement updates.

    `summary` is text, or the same text in each language (tasks.mail.translations); the lines of
    what it achieved are given in each language unless `lines` says otherwise. Keys are
    f"{key_prefix}:customer:{id}"; returns {"customers": notices due, "queued": new rows,
    "not_consented": customers left alone}. The customer whose accepted alternative this
    improvement delivers is told in their own words (tasks/choices.py): general notices leave
    them out, and `only_case_customer` writes to nobody else.
    """
    assert improvement.id is not None
    own = case_customer_id(session, improvement.id)
    customers = [
        c
        for c in affected_customers(session=session, improvement_id=improvement.id)
        if own is None or (c.id == own) == only_case_customer
    ]
    consenting = consenting_customer_ids(
        session=session,
        customer_ids=[c.id for c in customers if c.id is not None],
        purpose=Purpose.improvement_updates,
    )
    achieved: list[str] | dict[str, list[str]] = (
        translations(en=impact_lines(improvement), cy=impact_lines(improvement, "cy"))
        if lines is None
        else lines
    )
    counts = {"customers": 0, "queued": 0, "not_consented": 0}
    for customer in customers:
        assert customer.id is not None
        if customer.id not in consenting:
            counts["not_consented"] += 1
            continue
        key = f"{key_prefix}:customer:{customer.id}"
        counts["customers"] += 1
        if _exists(session, key):
            continue
        context: dict[str, Any] = {
            "reference": improvement.reference,
            "title": improvement.title,
            "summary": summary,
            "impact_lines": achieved,
        }
        # Language, plain text, window and weekly limit follow the customer when it is sent.
        queue_customer_email(
            session=session,
            key=key,
            customer=customer,
            template="customer_notice",
            context=context,
            purpose=Purpose.improvement_updates,
            improvement_id=improvement.id,
        )
        counts["queued"] += 1
    return counts


def queue_partner_notices(
    *,
    session: Session,
    improvement: Improvement,
    key_prefix: str,
    summary: str,
    lines: list[str] | None = None,
) -> dict[str, int]:
    """A partner_notice to each partner the improvement touches (a business contact: no consent).

    Keys are f"{key_prefix}:partner:{id}"; returns {"partners": notices due, "queued": new rows}.
    """
    assert improvement.id is not None
    lines = impact_lines(improvement) if lines is None else lines
    counts = {"partners": 0, "queued": 0}
    for partner in affected_partners(session=session, improvement_id=improvement.id):
        key = f"{key_prefix}:partner:{partner.id}"
        counts["partners"] += 1
        if _exists(session, key):
            continue
        queue_email(
            session=session,
            key=key,
            to=partner.email,
            template="partner_notice",
            context={
                "partner_name": partner.name,
                "contact_name": partner.contact_name or partner.name,
                "reference": improvement.reference,
                "title": improvement.title,
                "summary": summary,
                "impact_lines": lines,
            },
            improvement_id=improvement.id,
        )
        counts["queued"] += 1
    return counts


def _colleague_to_thank(session: Session, improvement: Improvement) -> tuple[str, str]:
    """(name, email) of who hears that it is done: the submitter, else the last approver, else the
    fallback approver. Someone always does, so this note doubles as the "announced" marker."""
    candidates: list[int] = []
    if improvement.submitter_id is not None:
        candidates.append(improvement.submitter_id)
    approver_id = session.exec(
        select(ApprovalRequest.approver_id)
        .where(
            ApprovalRequest.improvement_id == improvement.id,
            ApprovalRequest.status == ApprovalStatus.approved,
        )
        .order_by(col(ApprovalRequest.level).desc(), col(ApprovalRequest.id).desc())
    ).first()
    if approver_id is not None:
        candidates.append(approver_id)
    for colleague_id in candidates:
        colleague = session.get(Colleague, colleague_id)
        if colleague is not None and colleague.active:
            return colleague.name, colleague.email
    return "colleague", settings.fallback_approver


def announced_key(improvement_id: int) -> str:
    """The outbox key whose presence means the completion was announced."""
    return f"notice:{improvement_id}:submitter"


def announce_completion(*, session: Session, improvement_id: int) -> dict[str, int]:
    """Tell everyone a completed improvement touched what it achieved; idempotent. Caller commits.

    Customers who agreed to improvement updates get a customer_notice (plain text if that is their
    preference, with an unsubscribe link); partners a partner_notice; the submitter a thank-you
    (reusing customer_notice, without an unsubscribe link). Returns counts of notices due
    ("customers", "partners", "colleagues", "not_consented") and "queued": rows added by this call.
    """
    improvement = get_improvement(session=session, improvement_id=improvement_id)
    if improvement.status != Status.completed:
        raise NotCompleted(improvement.reference, improvement.status)
    prefix = f"notice:{improvement_id}"
    customer_summary = translations(
        en=f"We have finished “{improvement.title}”, a change that touched the service you "
        "receive. Thank you for your patience while we made it.",
        cy=f"Rydym wedi gorffen “{improvement.title}”, newid a oedd yn effeithio ar y gwasanaeth "
        "a gewch. Diolch i chi am eich amynedd tra oeddem yn ei wneud.",
    )
    customers = (
        # The customer's own update was the result; a notice about "Update overdue" would not be.
        {"customers": 0, "queued": 0, "not_consented": 0}
        if improvement.category == Category.customer_update
        else queue_customer_notices(
            session=session, improvement=improvement, key_prefix=prefix, summary=customer_summary
        )
    )
    partners = queue_partner_notices(
        session=session,
        improvement=improvement,
        key_prefix=prefix,
        summary=f"We have finished “{improvement.title}”, which involved your service to us. "
        "Thank you for working on it with us.",
    )
    queued = customers["queued"] + partners["queued"]
    # The customer of a case whose accepted alternative this was: told it is done, case closed.
    queue_done_notice(session=session, improvement_id=improvement_id)
    key = announced_key(improvement_id)
    if not _exists(session, key):
        name, email = _colleague_to_thank(session, improvement)
        queue_email(
            session=session,
            key=key,
            to=email,
            template="customer_notice",
            context={
                "customer_name": name,
                "reference": improvement.reference,
                "title": improvement.title,
                "summary": f"Your suggestion {improvement.reference} “{improvement.title}” is "
                "complete: every step of its plan is done. Thank you for making it happen. "
                f"We are telling {customers['customers']} customer(s) and "
                f"{partners['partners']} partner(s) what it achieved.",
                "impact_lines": impact_lines(improvement),
                "unsubscribe_url": None,  # a note to a colleague about their own work: not optional
            },
            improvement_id=improvement_id,
        )
        queued += 1
    return {
        "customers": customers["customers"],
        "partners": partners["partners"],
        "colleagues": 1,
        "not_consented": customers["not_consented"],
        "queued": queued,
    }


def improvements_to_announce(*, session: Session) -> list[int]:
    """Completed improvements whose announcement is not in the outbox yet (a lost event)."""
    completed = session.exec(
        select(Improvement.id)
        .where(Improvement.status == Status.completed)
        .order_by(col(Improvement.id))
    ).all()
    if not completed:
        return []
    keys = {announced_key(i): i for i in completed if i is not None}
    announced = set(
        session.exec(
            select(OutboxEmail.idempotency_key).where(
                col(OutboxEmail.idempotency_key).in_(list(keys))
            )
        ).all()
    )
    return [i for key, i in keys.items() if key not in announced]


# total's name → the Improvement column it sums
ESTIMATES = {
    "estimated_cost": "estimated_cost",
    "estimated_saving": "annual_saving",
    "estimated_kwh": "kwh",
    "estimated_kg_co2e": "kg_co2e",
    "estimated_kg_waste": "kg_waste",
    "estimated_sheets_paper": "sheets_paper",
}
MEASURED = ("measured_saving", "measured_kwh", "measured_kg_co2e", "measured_kg_waste")
# An estimate counts while the improvement is still going to happen (or has happened).
LIVE = (
    Status.submitted,
    Status.awaiting_approval,
    Status.approved,
    Status.in_progress,
    Status.completed,
)


def impact_totals(*, session: Session) -> dict[str, float]:
    """Dashboard totals: estimates over live improvements, measured results over completed ones,
    and how many improvements are in each status.

    Keys: estimated_cost, estimated_saving, estimated_kwh, estimated_kg_co2e, estimated_kg_waste,
    estimated_sheets_paper; measured_saving, measured_kwh, measured_kg_co2e, measured_kg_waste;
    improvements; status_<name> for every status.
    """
    totals: dict[str, float] = {}
    row = session.exec(
        select(
            *(func.coalesce(func.sum(getattr(Improvement, f)), 0) for f in ESTIMATES.values())
        ).where(col(Improvement.status).in_(LIVE))
    ).one()
    for name, value in zip(ESTIMATES, row, strict=True):
        totals[name] = float(value)
    row = session.exec(
        select(*(func.coalesce(func.sum(getattr(Improvement, f)), 0) for f in MEASURED)).where(
            Improvement.status == Status.completed
        )
    ).one()
    for field, value in zip(MEASURED, row, strict=True):
        totals[field] = float(value)
    counts = dict(
        session.exec(select(Improvement.status, func.count()).group_by(Improvement.status)).all()
    )
    for status in Status:
        totals[f"status_{status.value}"] = int(counts.get(status, 0))
    totals["improvements"] = sum(int(n) for n in counts.values())
    return totals
