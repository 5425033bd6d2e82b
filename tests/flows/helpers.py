"""Small steps the flow tests share: decide as an approver would, finish an action as its owner."""

from sqlmodel import Session, select

from models import ActionItem, ActionStatus, ApprovalRequest, ApprovalStatus, Channel
from tasks.decisions import record_decision
from tasks.planning import complete_action
from tests.smtpd import Received, SmtpServer


def to(smtp: SmtpServer, address: str) -> list[Received]:
    """The emails the SMTP server received for one address."""
    return [m for m in smtp.received if address in m.recipients]


def decide(session: Session, improvement_id: int, *, approve: bool, comment: str = "") -> None:
    """Decide the pending request as the web app would, committed, without emitting an event."""
    request = session.exec(
        select(ApprovalRequest).where(
            ApprovalRequest.improvement_id == improvement_id,
            ApprovalRequest.status == ApprovalStatus.pending,
        )
    ).one()
    record_decision(
        session=session, approval_id=request.id, approve=approve, comment=comment,
        channel=Channel.email,
    )  # fmt: skip
    session.commit()


def finish_open_people_steps(session: Session, improvement_id: int, **measured: float) -> int:
    """Mark every open step a person owns as done, with the measured result; how many."""
    items = session.exec(
        select(ActionItem).where(
            ActionItem.improvement_id == improvement_id,
            ActionItem.status == ActionStatus.open,
            ActionItem.automatic_step == None,  # noqa: E711
        )
    ).all()
    for item in items:
        complete_action(
            session=session, action_id=item.id, by="owner@example.org", channel=Channel.email,
            **measured,
        )  # fmt: skip
    session.commit()
    return len(items)
