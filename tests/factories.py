"""Plain functions that make believable test data, committed to the real database."""

from datetime import date, datetime, timedelta
from itertools import count
from typing import Any

from sqlmodel import Session

from models import (
    Access,
    Authority,
    Case,
    Category,
    Channel,
    Colleague,
    Customer,
    CustomerConsent,
    Improvement,
    ImprovementCustomer,
    ImprovementPartner,
    OutboxEmail,
    Partner,
    Purpose,
    RecordKind,
    ServiceProcess,
    ServiceRecord,
    Status,
)
from models.db import utcnow
from tasks.lifecycle import record_creation
from tasks.mail import context_of

_seq = count(1)


def make_colleague(session: Session, name: str | None = None, **fields: Any) -> Colleague:
    n = next(_seq)
    name = name or f"Colleague {n}"
    colleague = Colleague(
        name=name,
        email=fields.pop("email", f"{name.lower().replace(' ', '.')}.{n}@example.org"),
        team=fields.pop("team", "Customer Service"),
        role=fields.pop("role", "Adviser"),
        **fields,
    )
    session.add(colleague)
    session.commit()
    session.refresh(colleague)
    return colleague


def make_authority(
    session: Session,
    colleague: Colleague,
    category: Category | str = Category.energy,
    limit: float = 5_000,
    level: int = 1,
) -> Authority:
    authority = Authority(
        colleague_id=colleague.id, category=Category(category), spending_limit=limit, level=level
    )
    session.add(authority)
    session.commit()
    return authority


def make_operator(session: Session) -> Colleague:
    """A colleague in operations: they may submit for others and see customers' contacts."""
    return make_colleague(
        session,
        "Olu Operations",
        email="olu.operations@example.org",
        team="Operations",
        role="Operations analyst",
        access=Access.operations,
    )


def make_approver(
    session: Session,
    name: str | None = None,
    category: Category | str = Category.energy,
    limit: float = 5_000,
    level: int = 1,
    **fields: Any,
) -> Colleague:
    colleague = make_colleague(session, name, role=fields.pop("role", "Team Leader"), **fields)
    make_authority(session, colleague, category, limit, level)
    return colleague


def make_customer(
    session: Session,
    name: str | None = None,
    consents: tuple[Purpose, ...] = (Purpose.improvement_updates,),
    **fields: Any,
) -> Customer:
    n = next(_seq)
    name = name or f"Customer {n}"
    customer = Customer(
        name=name,
        email=fields.pop("email", f"customer.{n}@example.com"),
        **fields,
    )
    session.add(customer)
    session.commit()
    session.refresh(customer)
    for purpose in Purpose:
        session.add(
            CustomerConsent(customer_id=customer.id, purpose=purpose, granted=purpose in consents)
        )
    session.commit()
    return customer


def make_partner(session: Session, name: str | None = None, **fields: Any) -> Partner:
    n = next(_seq)
    name = name or f"Partner {n}"
    partner = Partner(name=name, email=fields.pop("email", f"partner.{n}@example.net"), **fields)
    session.add(partner)
    session.commit()
    session.refresh(partner)
    return partner


def make_process(session: Session, name: str | None = None, **fields: Any) -> ServiceProcess:
    process = ServiceProcess(name=name or f"Process {next(_seq)}", **fields)
    session.add(process)
    session.commit()
    session.refresh(process)
    return process


def make_record(
    session: Session,
    process: ServiceProcess,
    kind: RecordKind,
    occurred_at: datetime,
    quantity: float,
    **fields: Any,
) -> ServiceRecord:
    """One service record, with a key of its own unless given one."""
    record = ServiceRecord(
        key=fields.pop("key", f"test-record-{next(_seq)}"),
        process_id=process.id,
        kind=kind,
        occurred_at=occurred_at,
        quantity=quantity,
        **fields,
    )
    session.add(record)
    session.commit()
    session.refresh(record)
    return record


def make_improvement(
    session: Session,
    submitter: Colleague | None,
    title: str = "Paperless statements for account customers",
    category: Category | str = Category.resource,
    status: Status = Status.submitted,
    customers: list[Customer] = (),  # type: ignore[assignment]
    partners: list[Partner] = (),  # type: ignore[assignment]
    **fields: Any,
) -> Improvement:
    improvement = Improvement(
        title=title,
        description=fields.pop("description", "Switch account customers to e-statements."),
        category=Category(category),
        submitter_id=submitter.id if submitter else None,
        status=status,
        **fields,
    )
    session.add(improvement)
    session.flush()
    record_creation(
        session=session,
        improvement=improvement,
        actor=submitter.email if submitter else "system",
        channel=Channel.cli,
    ) if status in (Status.identified, Status.submitted) else None
    for customer in customers:
        session.add(ImprovementCustomer(improvement_id=improvement.id, customer_id=customer.id))
    for partner in partners:
        session.add(ImprovementPartner(improvement_id=improvement.id, partner_id=partner.id))
    session.commit()
    session.refresh(improvement)
    return improvement


def make_case(
    session: Session,
    owner: Colleague,
    customer: Customer | None = None,
    subject: str = "Replacement bin not delivered",
    **fields: Any,
) -> Case:
    """An open customer case, straight from the model (no email, no event), due an update in a
    week."""
    case = Case(
        customer_id=(customer or make_customer(session)).id,
        subject=subject,
        owner_id=owner.id,
        details=fields.pop("details", "The customer's replacement has not arrived."),
        next_update_due=fields.pop("next_update_due", utcnow() + timedelta(days=7)),
        **fields,
    )
    session.add(case)
    session.commit()
    session.refresh(case)
    return case


def today() -> date:
    return date.today()


def make_approval(
    session: Session,
    improvement: Improvement,
    approver: Colleague,
    level: int = 1,
    status: str = "approved",
    **fields: Any,
) -> Any:
    """An approval request already decided (approved by default), as the routing step leaves it."""
    from datetime import timedelta

    from models import ApprovalRequest, ApprovalStatus
    from models.db import utcnow
    from tasks.links import new_token

    approval = ApprovalRequest(
        improvement_id=improvement.id,
        approver_id=approver.id,
        level=level,
        status=ApprovalStatus(status),
        token_hash=new_token()[1],
        expires_at=fields.pop("expires_at", utcnow() + timedelta(days=14)),
        decided_at=fields.pop("decided_at", utcnow() if status != "pending" else None),
        **fields,
    )
    session.add(approval)
    session.commit()
    session.refresh(approval)
    return approval


def make_approved_improvement(
    session: Session,
    submitter: Colleague | None,
    approvers: list[Colleague] = (),  # type: ignore[assignment]
    **fields: Any,
) -> Improvement:
    """An improvement in `approved`, with one approved request per approver (level 1, 2, ...)."""
    improvement = make_improvement(session, submitter, status=Status.approved, **fields)
    for level, approver in enumerate(approvers, start=1):
        make_approval(session, improvement, approver, level=level)
    return improvement


def link_in(email: OutboxEmail, name: str = "url") -> str:
    """A link an outbox row carries sealed, opened as the sender opens it."""
    return str(context_of(email)[name])
