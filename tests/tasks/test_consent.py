"""Consent per purpose: no record is no consent; signed opt-out links that cannot be bent;
asked again when an email is sent, not only when it is queued."""

from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select, update

from improve.errors import LinkRefused
from models import Customer, CustomerConsent, OutboxEmail, OutboxStatus, Purpose
from models.db import utcnow
from tasks.consent import consent_withheld, has_consent, opt_out, unsubscribe_url
from tasks.mail import queue_email
from tasks.outbox import resend, send_due
from tests.factories import make_customer
from tests.smtpd import SmtpServer


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def consent_row(session: Session, customer_id: int, purpose: Purpose) -> CustomerConsent:
    return session.exec(
        select(CustomerConsent)
        .where(CustomerConsent.customer_id == customer_id, CustomerConsent.purpose == purpose)
        .execution_options(populate_existing=True)
    ).one()


def test_the_link_names_customer_and_purpose_and_is_signed() -> None:
    url = unsubscribe_url(42, Purpose.improvement_updates)
    prefix = "http://127.0.0.1:8000/unsubscribe/42/improvement_updates/"
    assert url.startswith(prefix)
    assert len(token_of(url)) >= 43  # a whole HMAC-SHA256, base64url
    assert url == unsubscribe_url(42, "improvement_updates")  # stable: old emails keep working
    assert token_of(url) != token_of(unsubscribe_url(43, Purpose.improvement_updates))
    assert token_of(url) != token_of(unsubscribe_url(42, Purpose.policy_news))


def test_opting_out_records_a_no_by_email_once(session: Session) -> None:
    customer = make_customer(session, consents=(Purpose.improvement_updates, Purpose.invitations))
    token = token_of(unsubscribe_url(customer.id, Purpose.improvement_updates))

    assert (
        opt_out(
            session=session, customer_id=customer.id, purpose="improvement_updates", token=token
        ).id
        == customer.id
    )
    session.commit()
    row = consent_row(session, customer.id, Purpose.improvement_updates)
    assert (row.granted, row.channel) == (False, "email")
    first_change = row.changed_at

    opt_out(
        session=session, customer_id=customer.id, purpose=Purpose.improvement_updates, token=token
    )
    session.commit()
    assert consent_row(session, customer.id, Purpose.improvement_updates).changed_at == first_change
    assert not has_consent(
        session=session, customer_id=customer.id, purpose=Purpose.improvement_updates
    )
    # The other purposes stay as the customer set them.
    assert has_consent(session=session, customer_id=customer.id, purpose=Purpose.invitations)


@pytest.mark.parametrize(
    "bend",
    ["changed token", "other customer", "other purpose", "unknown purpose", "unknown customer"],
)
def test_a_bent_link_is_refused_as_tampered_and_changes_nothing(
    session: Session, bend: str
) -> None:
    customer = make_customer(session)
    other = make_customer(session)
    token = token_of(unsubscribe_url(customer.id, Purpose.improvement_updates))
    customer_id, purpose = customer.id, "improvement_updates"
    if bend == "changed token":
        token = token[:-1] + ("A" if token[-1] != "A" else "B")
    elif bend == "other customer":
        customer_id = other.id
    elif bend == "other purpose":
        purpose = "policy_news"
    elif bend == "unknown purpose":
        purpose = "everything"
    else:
        customer_id = 999_999

    with pytest.raises(LinkRefused) as refused:
        opt_out(session=session, customer_id=customer_id, purpose=purpose, token=token)
    assert (refused.value.kind, refused.value.status_code) == ("tampered", 404)
    session.rollback()
    assert all(
        row.granted
        for row in session.exec(select(CustomerConsent)).all()
        if row.purpose == Purpose.improvement_updates
    )


def test_no_record_means_no_consent(session: Session) -> None:
    customer = make_customer(session)
    for row in session.exec(select(CustomerConsent)).all():
        session.delete(row)
    session.commit()
    assert not has_consent(
        session=session, customer_id=customer.id, purpose=Purpose.improvement_updates
    )

    token = token_of(unsubscribe_url(customer.id, Purpose.policy_news))
    opt_out(session=session, customer_id=customer.id, purpose=Purpose.policy_news, token=token)
    session.commit()
    assert consent_row(session, customer.id, Purpose.policy_news).granted is False


def test_an_opt_out_stops_the_notices_still_waiting_to_go(session: Session) -> None:
    customer = make_customer(session)
    for key, template in [("n1", "customer_notice"), ("a1", "action_assigned")]:
        queue_email(session=session, key=key, to=customer.email, template=template, context={})
    session.commit()

    opt_out(
        session=session,
        customer_id=customer.id,
        purpose=Purpose.improvement_updates,
        token=token_of(unsubscribe_url(customer.id, Purpose.improvement_updates)),
    )
    session.commit()
    rows = {r.idempotency_key: r for r in session.exec(select(OutboxEmail)).all()}
    assert rows["n1"].status == OutboxStatus.skipped
    assert rows["n1"].last_error == (
        f"skipped: {customer.name} withdrew consent to improvement updates on {utcnow():%Y-%m-%d}"
    )
    # The same rule, and the same words, as the sender's check when it sends.
    assert rows["n1"].last_error == consent_withheld(session=session, row=rows["n1"])
    assert rows["a1"].status == OutboxStatus.queued


NOTICE = {
    "reference": "IMP-42",
    "title": "Paperless statements",
    "summary": "Your statements now arrive by email.",
    "impact_lines": ["12,000 sheets of paper saved a year"],
}


def notice(session: Session, customer: Customer) -> OutboxEmail:
    """A customer_notice as announce_completion queues it, with its unsubscribe link."""
    assert customer.id is not None
    return queue_email(
        session=session,
        key=f"notice:{customer.id}",
        to=customer.email,
        template="customer_notice",
        context={**NOTICE, "customer_name": customer.name},
        links={"unsubscribe_url": unsubscribe_url(customer.id, Purpose.improvement_updates)},
    )


def thank_you(session: Session, to: str) -> OutboxEmail:
    """The note to a colleague that reuses the customer_notice template: no consent is asked."""
    return queue_email(
        session=session,
        key=f"thanks:{to}",
        to=to,
        template="customer_notice",
        context={**NOTICE, "customer_name": "Asha Patel", "unsubscribe_url": None},
    )


def withdraw_by_phone(session: Session, customer: Customer, on: datetime) -> None:
    """A colleague records what the customer said on the phone: not the link, so nothing but the
    consent record changes."""
    session.exec(
        update(CustomerConsent)
        .where(
            CustomerConsent.customer_id == customer.id,  # type: ignore[arg-type]
            CustomerConsent.purpose == Purpose.improvement_updates,  # type: ignore[arg-type]
        )
        .values(granted=False, channel="phone", changed_at=on)
    )
    session.commit()


def fresh(session: Session, row: OutboxEmail) -> OutboxEmail:
    session.commit()
    got = session.get(OutboxEmail, row.id, populate_existing=True)
    assert got is not None
    return got


async def test_consent_is_asked_again_when_the_notice_is_sent(
    session: Session, smtp: SmtpServer
) -> None:
    ruth = make_customer(session, "Ruth Ames", email="ruth.ames@example.com")
    nia = make_customer(session, "Nia Brown", email="nia.brown@example.com")
    to_ruth, to_nia = notice(session, ruth), notice(session, nia)
    thanks = thank_you(session, "asha.patel@example.org")
    session.commit()
    withdraw_by_phone(session, ruth, datetime(2026, 11, 28, 9, 30, tzinfo=UTC))

    assert await send_due() == {"sent": 2, "deferred": 0, "failed": 0, "skipped": 1}

    assert sorted(r.recipients[0] for r in smtp.received) == [
        "asha.patel@example.org",
        "nia.brown@example.com",
    ]
    skipped = fresh(session, to_ruth)
    assert skipped.status == OutboxStatus.skipped
    assert skipped.last_error == (
        "skipped: Ruth Ames withdrew consent to improvement updates on 2026-11-28"
    )
    assert skipped.attempts == 0 and skipped.sent_at is None
    assert fresh(session, to_nia).status == OutboxStatus.sent
    assert fresh(session, thanks).status == OutboxStatus.sent
    # Skipped is final: no later batch sends it.
    assert await send_due() == {"sent": 0, "deferred": 0, "failed": 0, "skipped": 0}
    assert len(smtp.received) == 2


async def test_a_failed_notice_sent_again_after_an_opt_out_is_skipped_not_sent(
    session: Session, smtp: SmtpServer
) -> None:
    ruth = make_customer(session, "Ruth Ames")
    row = notice(session, ruth)
    session.commit()
    smtp.refuse_next("550 5.7.1 Message rejected")
    assert (await send_due())["failed"] == 1
    opt_out(
        session=session,
        customer_id=ruth.id,
        purpose=Purpose.improvement_updates,
        token=token_of(unsubscribe_url(ruth.id, Purpose.improvement_updates)),
    )
    session.commit()
    assert fresh(session, row).status == OutboxStatus.failed  # not waiting, so not skipped yet

    resend(session=session, email_id=row.id, by="Olu Operations")
    session.commit()

    assert await send_due() == {"sent": 0, "deferred": 0, "failed": 0, "skipped": 1}
    assert smtp.received == []
    row = fresh(session, row)
    assert row.status == OutboxStatus.skipped
    assert row.last_error.startswith("skipped: Ruth Ames withdrew consent to improvement updates")
