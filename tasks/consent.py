"""Customer consent per purpose: signed unsubscribe links, opting out, and asking before writing."""

import base64
import hashlib
import hmac
from collections.abc import Iterable

from sqlalchemy import update
from sqlmodel import Session, col, select

from improve.errors import LinkRefused
from improve.settings import settings
from models import Customer, CustomerConsent, OutboxEmail, OutboxStatus, Purpose
from models.db import utcnow

# The templates that write to a customer for each purpose: an opt-out also stops those still queued.
TEMPLATES_FOR: dict[Purpose, tuple[str, ...]] = {
    Purpose.improvement_updates: ("customer_notice",),
    Purpose.policy_news: (),
    Purpose.invitations: (),
}


def _signature(customer_id: int, purpose: Purpose) -> str:
    # Bound to the customer and the purpose, so a link cannot be edited to opt someone else out.
    # No expiry: an unsubscribe link in an old email must still work (RFC 8058).
    message = f"unsubscribe:{customer_id}:{purpose.value}".encode()
    digest = hmac.new(
        settings.secret_key.get_secret_value().encode(), message, hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def unsubscribe_url(customer_id: int, purpose: Purpose | str) -> str:
    """The link that stops one purpose of email to one customer, signed with the secret key."""
    purpose = Purpose(purpose)
    token = _signature(customer_id, purpose)
    return f"{settings.base_url}/unsubscribe/{customer_id}/{purpose.value}/{token}"


def opt_out(*, session: Session, customer_id: int, purpose: Purpose | str, token: str) -> Customer:
    """Record that a customer wants no more email for `purpose`; idempotent. The caller commits.

    A bad signature, an unknown purpose or an unknown customer all get the same "tampered" refusal,
    so the link says nothing about who our customers are.
    """
    refused = LinkRefused(
        "tampered",
        "This unsubscribe link is not valid: it may have been cut short or changed. "
        "Please use the link from the email exactly as it arrived.",
        404,
    )
    try:
        purpose = Purpose(purpose)
    except ValueError:
        raise refused from None
    if not hmac.compare_digest(_signature(customer_id, purpose), str(token)):
        raise refused
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise refused

    consent = session.exec(
        select(CustomerConsent).where(
            CustomerConsent.customer_id == customer_id, CustomerConsent.purpose == purpose
        )
    ).first()
    now = utcnow()
    if consent is None:
        session.add(
            CustomerConsent(
                customer_id=customer_id,
                purpose=purpose,
                granted=False,
                channel="email",
                changed_at=now,
            )
        )
    elif consent.granted:
        consent.granted = False
        consent.channel = "email"
        consent.changed_at = now
        session.add(consent)
    # else: already opted out; keep the original date of the refusal.
    session.flush()

    # Notices queued before the opt-out but not yet sent must not go out after it.
    skip_withheld_notices(session=session, customer=customer, purpose=purpose)
    return customer


def _withheld(session: Session, customer: Customer, purpose: Purpose) -> str | None:
    """Why `purpose` notices must not go to `customer` (what a skipped row records), or None."""
    consent = session.exec(
        select(CustomerConsent).where(
            CustomerConsent.customer_id == customer.id, CustomerConsent.purpose == purpose
        )
    ).first()
    if consent is not None and consent.granted:
        return None
    what = purpose.value.replace("_", " ")
    if consent is None:  # no record is no consent
        return f"skipped: {customer.name} has not agreed to {what}"
    return f"skipped: {customer.name} withdrew consent to {what} on {consent.changed_at:%Y-%m-%d}"


def consent_withheld(*, session: Session, recipient: str, template: str) -> str | None:
    """Why this email must not be sent to `recipient` now, or None when it may be.

    The one consent rule for the outbox: a template of TEMPLATES_FOR goes to a customer only while
    they agree to its purpose. It is checked when the email is sent, not only when it is queued.
    An address that is no customer's (a colleague's thank-you reuses customer_notice) needs none.
    """
    purposes = [purpose for purpose, templates in TEMPLATES_FOR.items() if template in templates]
    if not purposes:
        return None
    customer = session.exec(select(Customer).where(Customer.email == recipient)).first()
    if customer is None:
        return None
    for purpose in purposes:
        reason = _withheld(session, customer, purpose)
        if reason is not None:
            return reason
    return None


def skip_withheld_notices(*, session: Session, customer: Customer, purpose: Purpose) -> int:
    """Mark the queued `purpose` notices to a customer who does not agree to it as skipped.

    The same rule as `consent_withheld`, applied at once to every waiting row; a row already being
    sent is left to its sender, which asks `consent_withheld` itself. Returns how many were skipped.
    """
    templates = TEMPLATES_FOR[purpose]
    reason = _withheld(session, customer, purpose) if templates else None
    if reason is None:
        return 0
    result = session.exec(
        update(OutboxEmail)
        .where(
            col(OutboxEmail.recipient) == customer.email,
            col(OutboxEmail.template).in_(templates),
            col(OutboxEmail.status) == OutboxStatus.queued,
        )
        .values(status=OutboxStatus.skipped, last_error=reason)
    )
    return int(result.rowcount)


def has_consent(*, session: Session, customer_id: int, purpose: Purpose | str) -> bool:
    """True only when the customer said yes to this purpose: no record means no consent."""
    granted = session.exec(
        select(CustomerConsent.granted).where(
            CustomerConsent.customer_id == customer_id, CustomerConsent.purpose == Purpose(purpose)
        )
    ).first()
    return bool(granted)


def consenting_customer_ids(
    *, session: Session, customer_ids: Iterable[int], purpose: Purpose | str
) -> set[int]:
    """Which of these customers said yes to `purpose` (one query for a whole list)."""
    wanted = list(customer_ids)
    if not wanted:
        return set()
    rows = session.exec(
        select(CustomerConsent.customer_id).where(
            col(CustomerConsent.customer_id).in_(wanted),
            CustomerConsent.purpose == Purpose(purpose),
            CustomerConsent.granted == True,  # noqa: E712  (SQL, not Python truthiness)
        )
    ).all()
    return set(rows)
