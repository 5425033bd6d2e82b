"""Customer consent per purpose: queueing an email to a customer with its purpose and unsubscribe
link, signed unsubscribe links, opting out, and asking before writing."""

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import insert, update
from sqlmodel import Session, col, select

from improve.settings import settings
from models import Customer, CustomerConsent, OutboxEmail, OutboxStatus, Purpose
from models.db import utcnow
from tasks import links
from tasks.mail import CUSTOMER_ID, ESSENTIAL, PURPOSE, customer_of, outbox_values, queue_email

# The purpose of a customer_notice queued before rows carried their purpose (queue_customer_email
# writes it into the row): outbox rows can wait, so rows from before the change still say why.
_PURPOSE_BEFORE_ROWS_SAID = {"customer_notice": Purpose.improvement_updates}


def queue_customer_email(
    *,
    session: Session,
    key: str,
    customer: Customer,
    template: str,
    context: dict[str, Any],
    purpose: Purpose | None,
    links: dict[str, str] | None = None,
    improvement_id: int | None = None,
) -> OutboxEmail:
    """Queue an email to a customer so that it follows their preferences; the caller commits.

    The one way to write to a customer. A non-essential template (not in tasks.mail.ESSENTIAL)
    needs the `purpose` the customer consents to: the row records it, and carries the signed
    one-click unsubscribe link for it (header and footer). An essential one takes `purpose=None`:
    it needs no consent and offers no way out. Language, HTML or plain text, the contact window and
    the weekly limit are not fixed here: the sender reads them from the customer when it sends, so
    a preference changed while the email waits is honoured. A template should extend
    `_customer.html`/`_customer.txt` (and their `.cy` twins), which carry greeting and footer.
    """
    context, links = _for_customer(customer, template, context, purpose, links)
    return queue_email(
        session=session,
        key=key,
        to=customer.email,
        template=template,
        context=context,
        links=links,
        improvement_id=improvement_id,
    )


def _for_customer(
    customer: Customer,
    template: str,
    context: dict[str, Any],
    purpose: Purpose | None,
    links: dict[str, str] | None,
) -> tuple[dict[str, Any], dict[str, str] | None]:
    """The context and links of an email to `customer`: its name, who it is for, its purpose and
    the unsubscribe link for it (the rule queue_customer_email and its bulk twin share)."""
    assert customer.id is not None
    essential = template in ESSENTIAL
    if purpose is None and not essential:
        raise ValueError(
            f"{template} is not essential, so it needs the purpose {customer.name} consents to"
        )
    if purpose is not None and essential:
        raise ValueError(f"{template} is essential: it needs no consent, so give no purpose")
    context = {"customer_name": customer.name, **context, CUSTOMER_ID: customer.id}
    links = dict(links or {})
    if purpose is not None:
        context[PURPOSE] = Purpose(purpose).value
        links["unsubscribe_url"] = unsubscribe_url(customer.id, purpose)
    return context, links or None


# Keys asked about in one IN (...) list: well under SQLite's limit on bound parameters.
_KEYS_PER_QUERY = 900


def queue_customer_emails(
    *,
    session: Session,
    template: str,
    purpose: Purpose | None,
    emails: Iterable[tuple[str, Customer, dict[str, Any]]],
    improvement_id: int | None = None,
) -> int:
    """queue_customer_email for many customers at once: (key, customer, context) each; the
    caller commits. The same rules, in a few queries: the keys already queued are read in
    chunks and skipped, the new rows inserted in one statement. Returns how many were new.

    For a notice to thousands (a policy's subscribers): 10,000 single queue_customer_email calls
    are 10,000 look-ups and 10,000 flushes.
    """
    wanted = list(emails)
    keys = [key for key, _, _ in wanted]
    existing: set[str] = set()
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        chunk = keys[start : start + _KEYS_PER_QUERY]
        existing.update(
            session.exec(
                select(OutboxEmail.idempotency_key).where(
                    col(OutboxEmail.idempotency_key).in_(chunk)
                )
            ).all()
        )
    rows = []
    for key, customer, context in wanted:
        if key in existing:
            continue
        existing.add(key)  # the same key twice in one call is one email, as with single calls
        full, links = _for_customer(customer, template, context, purpose, None)
        rows.append(
            outbox_values(
                key=key,
                to=customer.email,
                template=template,
                context=full,
                links=links,
                improvement_id=improvement_id,
            )
        )
    if rows:
        # Core, not ORM objects: building 10,000 SQLModel rows took longer than inserting them.
        # One executemany; the columns left out take their defaults (queued, due now).
        session.connection().execute(insert(OutboxEmail), rows)
    return len(rows)


def purpose_of(row: OutboxEmail) -> Purpose | None:
    """The purpose a queued email serves (what the customer must agree to), or None if it names
    none: an essential email, or one queued without queue_customer_email."""
    if row.template in ESSENTIAL:
        return None
    named = (row.context or {}).get(PURPOSE)
    if named is None:
        return _PURPOSE_BEFORE_ROWS_SAID.get(row.template)
    try:
        return Purpose(named)
    except ValueError:
        return None


def _message(customer_id: int, purpose: Purpose) -> str:
    # Bound to the customer and the purpose, so a link cannot be edited to opt someone else out.
    return f"unsubscribe:{customer_id}:{purpose.value}"


def unsubscribe_url(customer_id: int, purpose: Purpose | str) -> str:
    """The link that stops one purpose of email to one customer, signed with the secret key."""
    purpose = Purpose(purpose)
    token = links.signature(_message(customer_id, purpose))
    return f"{settings.base_url}/unsubscribe/{customer_id}/{purpose.value}/{token}"


def check_unsubscribe(
    *, session: Session, customer_id: int, purpose: Purpose | str, token: str
) -> tuple[Customer, Purpose]:
    """The customer and purpose an unsubscribe link is for. A bad signature, an unknown purpose
    or an unknown customer all get the same "tampered" refusal, so the link says nothing about
    who our customers are."""
    refused = links.unsigned("unsubscribe link")
    try:
        purpose = Purpose(purpose)
    except ValueError:
        raise refused from None
    if not links.signed(_message(customer_id, purpose), token):
        raise refused
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise refused
    return customer, purpose


def opt_out(*, session: Session, customer_id: int, purpose: Purpose | str, token: str) -> Customer:
    """Record that a customer wants no more email for `purpose`, if the link checks out
    (`check_unsubscribe`); idempotent. The caller commits."""
    customer, purpose = check_unsubscribe(
        session=session, customer_id=customer_id, purpose=purpose, token=token
    )
    record_consent(
        session=session, customer=customer, purpose=purpose, granted=False, channel="email"
    )
    return customer


def record_consent(
    *, session: Session, customer: Customer, purpose: Purpose | str, granted: bool, channel: str
) -> CustomerConsent:
    """Record a customer's yes or no to one purpose, and how they said it; the caller commits.

    Saying the same again keeps the date they first said it. A no also stops the emails for that
    purpose still waiting to go (held ones too): they must not go out after it.
    """
    purpose = Purpose(purpose)
    consent = session.exec(
        select(CustomerConsent).where(
            CustomerConsent.customer_id == customer.id, CustomerConsent.purpose == purpose
        )
    ).first()
    if consent is None:
        assert customer.id is not None
        consent = CustomerConsent(
            customer_id=customer.id, purpose=purpose, granted=granted, channel=channel
        )
    elif consent.granted != granted:
        consent.granted, consent.channel, consent.changed_at = granted, channel, utcnow()
    session.add(consent)
    session.flush()
    if not granted:
        skip_withheld_notices(session=session, customer=customer, purpose=purpose)
    return consent


def _withheld(session: Session, customer: Customer, purpose: Purpose) -> str | None:
    """Why `purpose` notices must not go to `customer` (what a skipped row records), or None."""
    assert customer.id is not None
    consents = consents_of(session=session, customer_ids=[customer.id])
    return withheld_reason(customer, purpose, consents.get((customer.id, purpose)))


def withheld_reason(
    customer: Customer, purpose: Purpose, consent: CustomerConsent | None
) -> str | None:
    """The consent rule itself, given the customer's answer for `purpose` (None if never asked)."""
    if consent is not None and consent.granted:
        return None
    what = purpose.value.replace("_", " ")
    if consent is None:  # no record is no consent
        return f"skipped: {customer.name} has not agreed to {what}"
    return f"skipped: {customer.name} withdrew consent to {what} on {consent.changed_at:%Y-%m-%d}"


def consents_of(
    *, session: Session, customer_ids: Iterable[int]
) -> dict[tuple[int, str], CustomerConsent]:
    """Every answer these customers gave, by (customer id, purpose): one query for a batch."""
    wanted = set(customer_ids)
    if not wanted:
        return {}
    return {
        (c.customer_id, str(c.purpose)): c
        for c in session.exec(
            select(CustomerConsent).where(col(CustomerConsent.customer_id).in_(wanted))
        )
    }


def consent_withheld(*, session: Session, row: OutboxEmail) -> str | None:
    """Why this email must not be sent now, or None when it may be (see `row_withheld`)."""
    customer = customer_of(session=session, row=row)
    known = [customer.id] if customer is not None and customer.id is not None else []
    consents = consents_of(session=session, customer_ids=known)
    return row_withheld(row, customer, consents)


def row_withheld(
    row: OutboxEmail,
    customer: Customer | None,
    consents: Mapping[tuple[int, str], CustomerConsent],
) -> str | None:
    """Why this email must not be sent now, or None when it may be; `customer` is the one it goes
    to (`customer_of`), `consents` hold at least theirs (`consents_of`).

    The one consent rule for the outbox, asked when the email is sent, not only when it is queued:
    a non-essential email goes to a customer only while they agree to its purpose, and one that
    names no purpose (queued without queue_customer_email) cannot show their agreement, so it is
    not sent either. Essential email, and email to anyone who is no customer (a colleague's
    thank-you reuses customer_notice), needs none.
    """
    if row.template in ESSENTIAL or customer is None or customer.id is None:
        return None
    purpose = purpose_of(row)
    if purpose is None:
        return (
            f"skipped: {row.template} to {customer.name} names no purpose they agreed to "
            "(queue customer email with tasks.consent.queue_customer_email)"
        )
    return withheld_reason(customer, purpose, consents.get((customer.id, purpose)))


def skip_withheld_notices(*, session: Session, customer: Customer, purpose: Purpose) -> int:
    """Mark the queued `purpose` emails to a customer who does not agree to it as skipped.

    The same rule as `consent_withheld`, applied at once to every waiting row (held ones too); a
    row already being sent is left to its sender, which asks `consent_withheld` itself. Returns how
    many were skipped.
    """
    reason = _withheld(session, customer, purpose)
    if reason is None:
        return 0
    waiting = session.exec(
        select(OutboxEmail).where(
            col(OutboxEmail.recipient) == customer.email,
            col(OutboxEmail.status) == OutboxStatus.queued,
        )
    ).all()
    ids = [row.id for row in waiting if purpose_of(row) == purpose]
    if not ids:
        return 0
    # Conditional on still being queued: a row a sender claimed meanwhile is the sender's to settle.
    result = session.exec(
        update(OutboxEmail)
        .where(col(OutboxEmail.id).in_(ids), col(OutboxEmail.status) == OutboxStatus.queued)
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
