"""Community stakeholders who read the impact report: their signed one-click unsubscribe link."""

import base64
import hashlib
import hmac

from sqlalchemy import update
from sqlmodel import Session, col

from improve.errors import LinkRefused
from improve.settings import settings
from models import OutboxEmail, OutboxStatus, Stakeholder

TEMPLATE = "impact_report"


def _signature(stakeholder_id: int) -> str:
    # Bound to the stakeholder, so a link cannot be edited to unsubscribe someone else; no expiry,
    # so the link in an old report still works (RFC 8058). The prefix keeps it apart from the
    # customers' unsubscribe signatures (tasks/consent.py), which sign with the same key.
    message = f"unsubscribe:stakeholder:{stakeholder_id}".encode()
    digest = hmac.new(
        settings.secret_key.get_secret_value().encode(), message, hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def unsubscribe_url(stakeholder_id: int) -> str:
    """The link that stops the impact report to one stakeholder, signed with the secret key."""
    return f"{settings.base_url}/impact/unsubscribe/{stakeholder_id}/{_signature(stakeholder_id)}"


def check_unsubscribe(*, session: Session, stakeholder_id: int, token: str) -> Stakeholder:
    """The stakeholder a link is for; a bad signature or an unknown stakeholder get the same
    refusal, so the link says nothing about who reads the report."""
    stakeholder = session.get(Stakeholder, stakeholder_id)
    if not hmac.compare_digest(_signature(stakeholder_id), str(token)) or stakeholder is None:
        raise LinkRefused(
            "tampered",
            "This unsubscribe link is not valid: it may have been cut short or changed. "
            "Please use the link from the email exactly as it arrived.",
            404,
        )
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
