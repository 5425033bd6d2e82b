"""Improvements by id, and the one place that moves them between states and writes history."""

from sqlalchemy import Subquery, func, update
from sqlmodel import Session, col, select

from improve.errors import IllegalTransition, ImprovementNotFound
from models import Case, Channel, Improvement, Status, Transition
from models.db import utcnow

# Every arrow of the lifecycle in DESIGN.md. A rejected improvement can be put back to approval
# (a second opinion at the next level, or a delegate); completed and cancelled are final.
ALLOWED: dict[Status | None, set[Status]] = {
    None: {Status.identified, Status.submitted},
    Status.identified: {Status.submitted, Status.rejected, Status.cancelled},
    Status.submitted: {
        Status.awaiting_approval,
        Status.approved,  # within the submitter's own authority (goodwill)
        Status.rejected,  # duplicate or invalid
        Status.cancelled,
    },
    Status.awaiting_approval: {Status.approved, Status.rejected, Status.cancelled},
    Status.approved: {Status.in_progress, Status.cancelled},
    Status.in_progress: {Status.completed, Status.cancelled},
    Status.rejected: {Status.awaiting_approval},
    Status.completed: set(),
    Status.cancelled: set(),
}


def get_improvement(*, session: Session, improvement_id: int) -> Improvement:
    """The improvement as the database has it now (not a stale copy), or ImprovementNotFound."""
    improvement = session.get(Improvement, improvement_id, populate_existing=True)
    if improvement is None:
        raise ImprovementNotFound(improvement_id)
    return improvement


def lock_improvement(*, session: Session, improvement_id: int) -> Improvement:
    """Take the improvement's row for this transaction, so changes to its approvals take turns.

    A no-op UPDATE rather than SELECT ... FOR UPDATE because it works on both databases: a row
    lock on PostgreSQL, the write lock on SQLite (which otherwise lets two readers decide alike).
    """
    session.execute(
        update(Improvement)
        .where(col(Improvement.id) == improvement_id)
        .values(updated_at=Improvement.updated_at)
    )
    return get_improvement(session=session, improvement_id=improvement_id)


def can_move(from_status: Status | None, to_status: Status) -> bool:
    return to_status in ALLOWED[from_status]


def record_creation(
    *, session: Session, improvement: Improvement, actor: str, channel: Channel, reason: str = ""
) -> Transition:
    """Write the first history row of a new improvement (its id must be assigned)."""
    assert improvement.id is not None
    if not can_move(None, improvement.status):
        raise IllegalTransition(improvement.reference, None, improvement.status)
    row = Transition(
        improvement_id=improvement.id,
        from_status=None,
        to_status=improvement.status,
        actor=actor,
        channel=channel,
        reason=reason,
    )
    session.add(row)
    return row


def move(
    *,
    session: Session,
    improvement_id: int,
    to: Status,
    actor: str,
    channel: Channel,
    reason: str = "",
) -> Transition:
    """Move an improvement to `to` and record it, in the caller's transaction.

    The update is conditional on the status read, so two concurrent movers cannot both succeed:
    the loser sees the winner's state and gets IllegalTransition naming it.
    """
    improvement = get_improvement(session=session, improvement_id=improvement_id)
    from_status = Status(improvement.status)
    if not can_move(from_status, to):
        raise IllegalTransition(improvement.reference, from_status, to)
    now = utcnow()
    result = session.execute(
        update(Improvement)
        .where(Improvement.id == improvement_id, Improvement.status == from_status)  # type: ignore[arg-type]
        .values(status=to, updated_at=now)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        current = session.get(Improvement, improvement_id, populate_existing=True)
        raise IllegalTransition(improvement.reference, current.status if current else None, to)
    session.refresh(improvement)
    row = Transition(
        improvement_id=improvement_id,
        from_status=from_status,
        to_status=to,
        actor=actor,
        channel=channel,
        reason=reason,
        at=now,
    )
    session.add(row)
    return row


def note(
    *,
    session: Session,
    improvement_id: int,
    status: Status,
    actor: str,
    channel: Channel,
    reason: str,
) -> Transition:
    """A history row for something that happened while the status stayed `status`.

    move records changes of status; a decision at one of two levels, a second level asked, an
    escalation change none, yet the audit trail must show who did them and how.
    """
    row = Transition(
        improvement_id=improvement_id,
        from_status=status,
        to_status=status,
        actor=actor[:254],
        channel=channel,
        reason=reason[:2000],
    )
    session.add(row)
    return row


def raised_for_case(*, session: Session, improvement_id: int) -> Case | None:
    """The case whose overdue update this improvement was raised for, while it still is.

    Routing approves it as the owner's own remit, and planning gives it one step: send the update.
    """
    return session.exec(select(Case).where(Case.overdue_improvement_id == improvement_id)).first()


def completion_times() -> Subquery:
    """(improvement_id, completed_at) for each completed improvement: when its history first says
    it was completed (the one answer to "when was it done?" for the digest and the report)."""
    return (
        select(
            col(Transition.improvement_id).label("improvement_id"),
            func.min(Transition.at).label("completed_at"),
        )
        .where(Transition.to_status == Status.completed)
        .group_by(col(Transition.improvement_id))
        .subquery("completion_times")
    )
