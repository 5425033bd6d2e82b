"""Email: queue a templated message in the caller's transaction; render and send the outbox."""

import hashlib
from typing import Any

from sqlmodel import Session, select

from improve.settings import settings
from models import OutboxEmail


def message_id_for(key: str) -> str:
    """A stable Message-ID, so a resend of the same row is recognisably the same email."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    domain = settings.mail_from.rsplit("@", 1)[-1].strip("> ") or "improve.local"
    return f"<{digest}@{domain}>"


def queue_email(
    *,
    session: Session,
    key: str,
    to: str,
    template: str,
    context: dict[str, Any],
    improvement_id: int | None = None,
) -> OutboxEmail:
    """Add an email to the outbox unless one with this idempotency key is already there.

    Nothing is committed here: the row lands with the caller's change or not at all.
    `context` must be JSON-serialisable; it is rendered when the email is sent.
    """
    existing = session.exec(select(OutboxEmail).where(OutboxEmail.idempotency_key == key)).first()
    if existing is not None:
        return existing
    row = OutboxEmail(
        idempotency_key=key,
        recipient=to,
        template=template,
        context=context,
        improvement_id=improvement_id,
        message_id=message_id_for(key),
    )
    session.add(row)
    session.flush()
    return row
