"""What pages and the API read from the database, and the one submission path they share."""

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from improve import events
from models import (
    ActionItem,
    ApprovalRequest,
    ApprovalStatus,
    Channel,
    Colleague,
    Customer,
    Improvement,
    ImprovementCreate,
    ImprovementCustomer,
    ImprovementPartner,
    OutboxEmail,
    Partner,
    Status,
    Transition,
)
from models.db import get_engine, utcnow
from tasks.escalation import Stuck, stuck_improvements
from tasks.lifecycle import get_improvement
from tasks.routing import levels_for
from tasks.submission import find_submission, remember_submission, submit_improvement


@dataclass
class ApprovalView:
    request: ApprovalRequest
    approver: Colleague | None
    on_behalf_of: Colleague | None


@dataclass
class ActionView:
    item: ActionItem
    owner: Colleague | None


@dataclass
class ImprovementView:
    improvement: Improvement
    submitter: Colleague | None
    levels: int
    customers: list[Customer] = field(default_factory=list)
    partners: list[Partner] = field(default_factory=list)
    approvals: list[ApprovalView] = field(default_factory=list)
    actions: list[ActionView] = field(default_factory=list)
    history: list[Transition] = field(default_factory=list)
    emails: list[OutboxEmail] = field(default_factory=list)


def colleagues_by_id(session: Session, ids: set[int | None]) -> dict[int, Colleague]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    rows = session.exec(select(Colleague).where(Colleague.id.in_(wanted))).all()  # type: ignore[union-attr]
    return {c.id: c for c in rows if c.id is not None}


def improvement_view(session: Session, improvement_id: int) -> ImprovementView:
    """Everything about one improvement, or ImprovementNotFound naming IMP-n."""
    improvement = get_improvement(session=session, improvement_id=improvement_id)
    approvals = session.exec(
        select(ApprovalRequest)
        .where(ApprovalRequest.improvement_id == improvement_id)
        .order_by(ApprovalRequest.level, ApprovalRequest.id)  # type: ignore[arg-type]
    ).all()
    actions = session.exec(
        select(ActionItem)
        .where(ActionItem.improvement_id == improvement_id)
        .order_by(ActionItem.position)  # type: ignore[arg-type]
    ).all()
    people = colleagues_by_id(
        session,
        {improvement.submitter_id}
        | {a.approver_id for a in approvals}
        | {a.on_behalf_of_id for a in approvals}
        | {a.owner_id for a in actions},
    )
    customers = session.exec(
        select(Customer)
        .join(ImprovementCustomer, ImprovementCustomer.customer_id == Customer.id)  # type: ignore[arg-type]
        .where(ImprovementCustomer.improvement_id == improvement_id)
        .order_by(Customer.name)  # type: ignore[arg-type]
    ).all()
    partners = session.exec(
        select(Partner)
        .join(ImprovementPartner, ImprovementPartner.partner_id == Partner.id)  # type: ignore[arg-type]
        .where(ImprovementPartner.improvement_id == improvement_id)
        .order_by(Partner.name)  # type: ignore[arg-type]
    ).all()
    history = session.exec(
        select(Transition)
        .where(Transition.improvement_id == improvement_id)
        .order_by(Transition.at, Transition.id)  # type: ignore[arg-type]
    ).all()
    emails = session.exec(
        select(OutboxEmail)
        .where(OutboxEmail.improvement_id == improvement_id)
        .order_by(OutboxEmail.created_at, OutboxEmail.id)  # type: ignore[arg-type]
    ).all()
    return ImprovementView(
        improvement=improvement,
        submitter=people.get(improvement.submitter_id or -1),
        levels=levels_for(improvement, list(approvals)),
        customers=list(customers),
        partners=list(partners),
        approvals=[
            ApprovalView(a, people.get(a.approver_id), people.get(a.on_behalf_of_id or -1))
            for a in approvals
        ],
        actions=[ActionView(a, people.get(a.owner_id or -1)) for a in actions],
        history=list(history),
        emails=list(emails),
    )


@dataclass
class WaitingApproval:
    request: ApprovalRequest
    improvement: Improvement
    approver: Colleague | None
    on_behalf_of: Colleague | None
    waited_since: datetime


@dataclass
class Dashboard:
    status_counts: list[tuple[Status, int]]
    total: int
    waiting: list[WaitingApproval]
    stuck: list[Stuck]
    recent: list[tuple[Improvement, Colleague | None]]
    outbox: dict[str, int]
    now: datetime


def dashboard(session: Session, *, recent: int = 12, waiting: int = 50) -> Dashboard:
    """Counts by status, the approvals waiting (longest first), what is stuck and why (longest
    first), the newest improvements."""
    now = utcnow()
    counts = dict(
        session.exec(select(Improvement.status, func.count()).group_by(Improvement.status)).all()
    )
    pending = session.exec(
        select(ApprovalRequest, Improvement)
        .join(Improvement, Improvement.id == ApprovalRequest.improvement_id)  # type: ignore[arg-type]
        .where(ApprovalRequest.status == ApprovalStatus.pending)
        .order_by(ApprovalRequest.created_at, ApprovalRequest.id)  # type: ignore[arg-type]
        .limit(waiting)
    ).all()
    newest = session.exec(
        select(Improvement)
        .order_by(col(Improvement.created_at).desc(), col(Improvement.id).desc())
        .limit(recent)
    ).all()
    people = colleagues_by_id(
        session,
        {a.approver_id for a, _ in pending}
        | {a.on_behalf_of_id for a, _ in pending}
        | {i.submitter_id for i in newest},
    )
    outbox = dict(
        session.exec(select(OutboxEmail.status, func.count()).group_by(OutboxEmail.status)).all()
    )
    return Dashboard(
        status_counts=[(status, int(counts.get(status, 0))) for status in Status],
        total=sum(int(n) for n in counts.values()),
        waiting=[
            WaitingApproval(
                request=a,
                improvement=i,
                approver=people.get(a.approver_id),
                on_behalf_of=people.get(a.on_behalf_of_id or -1),
                waited_since=a.created_at,
            )
            for a, i in pending
        ],
        stuck=stuck_improvements(session=session, now=now),
        recent=[(i, people.get(i.submitter_id or -1)) for i in newest],
        outbox={str(k): int(v) for k, v in outbox.items()},
        now=now,
    )


def submit(
    data: ImprovementCreate,
    *,
    channel: Channel,
    by: Colleague,
    key: str | None = None,
    field: str = "Idempotency-Key",
) -> tuple[int, bool]:
    """Store a submission, commit, then announce it: (its id, replayed); or raise InvalidInput.

    ImprovementCreate checked each field when it was made, and submit_improvement checks the
    rest before it writes (the CLI goes through both as well); nothing is committed on an error,
    so bad input leaves no trace. With a `key` (the API's Idempotency-Key, the form's one-time
    token) the key is recorded in the improvement's own transaction, and a key `by` used before
    answers with that improvement, committing and announcing nothing (replayed). Of two
    concurrent submissions with one key the first to commit wins; the other's commit fails on
    the unique key, is rolled back, and answers with the winner's. `field` names the key in an
    error.
    """
    assert by.id is not None
    for last_try in (False, True):
        with Session(get_engine()) as session:
            if key is not None:
                earlier = find_submission(
                    session=session, colleague_id=by.id, key=key, data=data, field=field
                )
                if earlier is not None:
                    return earlier, True
            improvement = submit_improvement(session=session, data=data, channel=channel, by=by)
            assert improvement.id is not None
            if key is not None:
                remember_submission(
                    session=session,
                    colleague_id=by.id,
                    key=key,
                    data=data,
                    improvement_id=improvement.id,
                )
            try:
                session.commit()
            except IntegrityError:
                if last_try or key is None:
                    raise
                session.rollback()
                continue  # a concurrent request with this key committed first: answer with it
            improvement_id, submitter_id = improvement.id, improvement.submitter_id
        events.emit_submitted(
            improvement_id=improvement_id, submitter_id=submitter_id, channel=channel
        )
        return improvement_id, False
    raise AssertionError("unreachable: the last try returns or raises")
