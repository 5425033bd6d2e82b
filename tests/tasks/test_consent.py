"""Consent per purpose: no record is no consent; signed opt-out links that cannot be bent."""

import pytest
from sqlmodel import Session, select

from improve.errors import LinkRefused
from models import CustomerConsent, OutboxEmail, OutboxStatus, Purpose
from tasks.consent import has_consent, opt_out, unsubscribe_url
from tasks.mail import queue_email
from tests.factories import make_customer


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
    assert rows["n1"].status == OutboxStatus.failed
    assert "opted out of improvement_updates" in rows["n1"].last_error
    assert rows["a1"].status == OutboxStatus.queued
