"""Plain helpers for the web tests: links with real tokens, and a snapshot of every table."""

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import Session, SQLModel

from models import (
    ActionItem,
    ApprovalRequest,
    ApprovalStatus,
    Colleague,
    Improvement,
)
from models.db import get_engine, utcnow
from tasks.links import new_token


def approval_link(
    session: Session,
    improvement: Improvement,
    approver: Colleague,
    *,
    level: int = 1,
    on_behalf_of: Colleague | None = None,
    reason: str = "Your authority covers resource improvements up to £5,000.",
    expires_at: datetime | None = None,
    status: ApprovalStatus = ApprovalStatus.pending,
    **fields: Any,
) -> tuple[ApprovalRequest, str]:
    """A pending approval request and the path of its link, as an approval email carries it."""
    token, token_hash = new_token()
    approval = ApprovalRequest(
        improvement_id=improvement.id,
        approver_id=approver.id,
        on_behalf_of_id=on_behalf_of.id if on_behalf_of else None,
        level=level,
        reason=reason,
        status=status,
        token_hash=token_hash,
        expires_at=expires_at or utcnow() + timedelta(days=14),
        **fields,
    )
    session.add(approval)
    session.commit()
    session.refresh(approval)
    return approval, f"/approvals/{approval.id}/{token}"


def action_link(
    session: Session,
    improvement: Improvement,
    owner: Colleague | None,
    *,
    title: str = "Send the e-statement offer to account customers",
    position: int = 1,
    due_on: date | None = None,
    expires_at: datetime | None = None,
) -> tuple[ActionItem, str]:
    """An open action item and the path of its link, as an action_assigned email carries it."""
    token, token_hash = new_token()
    item = ActionItem(
        improvement_id=improvement.id,
        position=position,
        title=title,
        owner_id=owner.id if owner else None,
        due_on=due_on or date.today() + timedelta(days=7),
        token_hash=token_hash,
        token_expires_at=expires_at or utcnow() + timedelta(days=60),
    )
    session.add(item)
    session.commit()
    session.refresh(item)
    return item, f"/actions/{item.id}/{token}"


def snapshot() -> dict[str, list[tuple]]:
    """Every row of every table, in a fresh session: compare two to prove nothing changed."""
    with Session(get_engine()) as session:
        return {
            table.name: [
                tuple(row)
                for row in session.execute(
                    sa_select(table).order_by(*table.primary_key.columns)
                ).all()
            ]
            for table in SQLModel.metadata.sorted_tables
        }
