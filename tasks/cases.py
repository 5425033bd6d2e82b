"""Customer cases: opening, delays, updates to the customer, and the overdue check."""

from datetime import datetime

from sqlmodel import Session, col, select

from models import Case


def overdue_case_ids(*, session: Session, now: datetime, limit: int = 500) -> list[int]:
    """Open cases whose next update is due and not yet raised: one range of one index.

    `ix_customer_case_update_due` is (overdue_improvement_id, next_update_due): the rows with no
    improvement raised come first, ordered by when their update is due, so the query reads only
    the due ones however many cases are open.
    """
    return [
        case_id
        for case_id in session.exec(
            select(Case.id)
            .where(col(Case.overdue_improvement_id).is_(None))
            .where(col(Case.next_update_due) <= now)
            .order_by(col(Case.next_update_due))
            .limit(limit)
        )
        if case_id is not None
    ]
