"""Community stakeholders who read the impact report: their signed one-click unsubscribe link."""

from sqlalchemy import update
from sqlmodel import Session, col

from improve.settings import settings
from models import OutboxEmail, OutboxStatus, Stakeholder
from tasks import links

TEMPLATE = "impact_report"


def _message(stakeholder_id: int) -> str:
    # Bound to the stakeholder; the prefix keeps it apart from the customers' unsubscribe links
    # (tasks/consent.py), which are signed with the same key.
    return f"unsubscribe:stakeholder:{stakeholder_id}"


def unsubscribe_url(stakeholder_id: int) -> str:
    """The link that stops the impact report to one stakeholder, signed with the secret key."""
    token = links.signature(_message(stakeholder_id))
    return f"{settings.base_url}/impact/unsubscribe/{stakeholder_id}/{token}"


def check_unsubscribe(*, session: Session, stakeholder_id: int, token: str) -> Stakeholder:
    """The stakeholder a link is for; a bad signature or an unknown stakeholder get the same
    refusal, so the link says nothing about who reads the report."""
    stakeholder = session.get(Stakeholder, stakeholder_id)
    if not links.signed(_message(stakeholder_id), token) or stakeholder is None:
        raise links.unsigned("unsubscribe link")
    return stakeholder


def unsubscribe(*, session: Session, stakeholder_id: int, token: str) -> Stakeholder:
    """Stop the impact report to this stakeholder, the ones still waiting to go too; idempotent.
    The caller commits."""
    stakeholder = check_unsubscribe(session=session, stakeholder_id=stakeholder_id, token=token)
    stakeholder.subscribed = False
    session.add(stakeholder)
    # Conditional on still being queued: a row a sender claimed meanwhile is the sender's to settle.
    session.exec(
        update(OutboxEmail)
        .where(
            col(OutboxEmail.recipient) == stakeholder.email,
            col(OutboxEmail.template) == TEMPLATE,
            col(OutboxEmail.status) == OutboxStatus.queued,
        )
        .values(status=OutboxStatus.skipped, last_error=f"skipped: {stakeholder.name} unsubscribed")
    )
    session.flush()
    return stakeholder
