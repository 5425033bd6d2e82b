"""Suggestions from the public form: bots dropped without a word, people and addresses rate
limited, nothing at all until the address is confirmed, then one `customer` improvement whose
sender hears what became of it."""

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from improve.errors import InvalidInput, LinkRefused, TooManyRequests
from improve.settings import settings
from models import (
    Category,
    Channel,
    Customer,
    CustomerConsent,
    Improvement,
    ImprovementCustomer,
    OutboxEmail,
    Purpose,
    Source,
    Status,
    Suggestion,
    SuggestionStatus,
)
from models.db import utcnow
from tasks.approvals import route_improvement
from tasks.decisions import advance_after_decision, record_decision
from tasks.mail import build_message, reader_for
from tasks.planning import plan_actions
from tasks.suggestions import check_confirm_link, client_key, confirm, receive, tell_outcome
from tests.factories import link_in, make_approver, make_customer
from tests.tasks.helpers import at_once

FORM = {
    "name": "Ruth Ames",
    "email": "Ruth@Example.com",
    "title": "Send my bills by email",
    "description": "I recycle a paper bill every month.",
    "category": "resource",
    "client": "203.0.113.7",
    "form_age_seconds": 30.0,
    "honeypot": "",
}


def send(session: Session, **changes: Any) -> Suggestion | None:
    suggestion = receive(session=session, **{**FORM, **changes})
    session.commit()
    return suggestion


def token_of(session: Session, suggestion: Suggestion) -> str:
    row = session.exec(
        select(OutboxEmail).where(
            OutboxEmail.idempotency_key == f"suggestion:{suggestion.id}:confirm"
        )
    ).one()
    return link_in(row).rsplit("/", 1)[-1]


def rows(session: Session, table: type) -> list[Any]:
    return list(session.exec(select(table)).all())


@pytest.mark.parametrize(
    "bot",
    [
        {"honeypot": "http://spam.example"},  # a field no person sees, filled
        {"form_age_seconds": 0.4},  # sent before a person could have read the form
        {"form_age_seconds": None},  # no timestamp, or one not signed by us
    ],
)
def test_a_bot_is_dropped_without_a_word_and_nothing_is_stored(
    session: Session, bot: dict[str, Any]
) -> None:
    assert send(session, **bot) is None
    assert rows(session, Suggestion) == []
    assert rows(session, OutboxEmail) == []


def test_bad_fields_are_named_and_nothing_is_stored(session: Session) -> None:
    with pytest.raises(InvalidInput) as refused:
        send(session, email="ruth at example", title=" a ", category="parking")
    assert set(refused.value.errors) == {"email", "title", "category"}
    assert "'ruth at example' is not an email address" in refused.value.errors["email"]
    with pytest.raises(InvalidInput) as refused:
        send(session, email="")
    assert refused.value.errors["email"].startswith("is needed")
    with pytest.raises(InvalidInput) as refused:
        send(session, email="two@example.com, three@example.com")
    assert list(refused.value.errors) == ["email"]
    assert rows(session, Suggestion) == []
    assert rows(session, OutboxEmail) == []


def test_a_suggestion_waits_unconfirmed_with_only_its_confirmation_email(
    session: Session,
) -> None:
    suggestion = send(session)
    assert suggestion is not None
    assert suggestion.status == SuggestionStatus.unconfirmed
    assert suggestion.email == "ruth@example.com"
    assert suggestion.client == client_key("203.0.113.7") != "203.0.113.7"
    token = token_of(session, suggestion)
    assert suggestion.token_hash is not None and token not in suggestion.token_hash
    assert suggestion.expires_at is not None
    assert suggestion.expires_at - suggestion.created_at == timedelta(
        days=settings.suggestion_link_expiry_days
    )
    # Nothing else at all: no customer, no improvement, no consent, one email.
    assert rows(session, Customer) == []
    assert rows(session, Improvement) == []
    assert rows(session, CustomerConsent) == []
    [email] = rows(session, OutboxEmail)
    assert (email.template, email.recipient) == ("suggestion_confirm", "ruth@example.com")
    message = build_message(email, reader_for(None))
    assert message["Subject"] == "Please confirm your suggestion: Send my bills by email"
    assert message["List-Unsubscribe"] is None  # essential: asked for a moment ago
    body = message.get_body(("plain",))
    assert body is not None and link_in(email) in body.get_content()


def test_one_client_is_limited_to_its_hour(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "suggestions_per_hour", 2)
    send(session, email="a@example.com")
    send(session, email="b@example.com")
    with pytest.raises(TooManyRequests) as refused:
        send(session, email="c@example.com")
    assert "this connection has sent 2 suggestions in the last hour" in str(refused.value)
    assert 3500 < refused.value.retry_after <= 3600
    assert "please try again after" in str(refused.value).lower()
    # Another client is not held back by this one.
    assert send(session, email="c@example.com", client="198.51.100.1") is not None
    # An hour on, the first client may send again.
    later = utcnow() + timedelta(hours=1, seconds=1)
    assert receive(session=session, **{**FORM, "email": "d@example.com"}, now=later) is not None


def test_one_address_is_limited_whichever_client_sends(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "suggestions_per_hour", 2)
    send(session, client="198.51.100.1")
    send(session, client="198.51.100.2")
    with pytest.raises(TooManyRequests) as refused:
        send(session, client="198.51.100.3", email="RUTH@example.com ")
    assert "this email address has sent 2 suggestions" in str(refused.value)
    assert len(rows(session, Suggestion)) == 2


def test_confirming_makes_a_customer_improvement_once(session: Session) -> None:
    suggestion = send(session)
    assert suggestion is not None and suggestion.id is not None
    token = token_of(session, suggestion)

    confirmed = confirm(session=session, suggestion_id=suggestion.id, token=token)
    session.commit()

    assert confirmed.status == SuggestionStatus.confirmed
    [customer] = rows(session, Customer)
    assert (customer.name, customer.email) == ("Ruth Ames", "ruth@example.com")
    [consent] = rows(session, CustomerConsent)
    assert (consent.purpose, consent.granted, consent.channel) == (
        Purpose.improvement_updates,
        True,
        "suggestion",
    )
    [improvement] = rows(session, Improvement)
    assert (improvement.title, improvement.source, improvement.category) == (
        "Send my bills by email",
        Source.customer,
        Category.resource,  # as chosen on the form
    )
    assert improvement.status == Status.submitted and improvement.submitter_id is None
    assert (confirmed.customer_id, confirmed.improvement_id) == (customer.id, improvement.id)
    [link] = rows(session, ImprovementCustomer)
    assert (link.improvement_id, link.customer_id) == (improvement.id, customer.id)

    with pytest.raises(LinkRefused) as again:
        confirm(session=session, suggestion_id=suggestion.id, token=token)
    assert again.value.kind == "used"
    assert f"it became IMP-{improvement.id}" in str(again.value)
    assert len(rows(session, Improvement)) == 1


def test_the_same_link_confirmed_twice_at_once_makes_one_improvement(session: Session) -> None:
    suggestion = send(session)
    assert suggestion is not None and suggestion.id is not None
    token = token_of(session, suggestion)

    def work(own: Session) -> str:
        try:
            confirm(session=own, suggestion_id=suggestion.id, token=token)  # type: ignore[arg-type]
            return "confirmed"
        except LinkRefused as refused:
            own.rollback()
            return refused.kind

    assert at_once(2, work) == ["confirmed", "used"]
    assert len(rows(session, Improvement)) == 1
    assert len(rows(session, Customer)) == 1


def test_an_existing_customer_is_reused_and_their_no_stands(session: Session) -> None:
    ruth = make_customer(session, "Ruth Ames", email="ruth@example.com", consents=())
    suggestion = send(session, category="")
    assert suggestion is not None and suggestion.id is not None
    confirm(session=session, suggestion_id=suggestion.id, token=token_of(session, suggestion))
    session.commit()
    assert [c.id for c in rows(session, Customer)] == [ruth.id]
    [improvement] = rows(session, Improvement)
    assert improvement.category == Category.process  # the default
    consent = session.exec(
        select(CustomerConsent).where(
            CustomerConsent.customer_id == ruth.id,
            CustomerConsent.purpose == Purpose.improvement_updates,
        )
    ).one()
    assert consent.granted is False  # an earlier "no" is not overridden by a form


def test_a_wrong_or_late_link_is_refused_and_confirms_nothing(session: Session) -> None:
    suggestion = send(session)
    assert suggestion is not None and suggestion.id is not None
    token = token_of(session, suggestion)
    with pytest.raises(LinkRefused) as tampered:
        confirm(session=session, suggestion_id=suggestion.id, token=token[:-2] + "xx")
    assert tampered.value.kind == "tampered"
    other = send(session, email="other@example.com")
    assert other is not None and other.id is not None
    with pytest.raises(LinkRefused) as foreign:
        confirm(session=session, suggestion_id=other.id, token=token)
    assert foreign.value.kind == "foreign"
    late = suggestion.created_at + timedelta(days=settings.suggestion_link_expiry_days, seconds=1)
    with pytest.raises(LinkRefused) as expired:
        check_confirm_link(session=session, suggestion_id=suggestion.id, token=token, now=late)
    assert expired.value.kind == "expired"
    assert rows(session, Improvement) == []


def _confirmed(session: Session) -> Improvement:
    suggestion = send(session, category="process")
    assert suggestion is not None and suggestion.id is not None
    confirm(session=session, suggestion_id=suggestion.id, token=token_of(session, suggestion))
    session.commit()
    [improvement] = rows(session, Improvement)
    return improvement


def _decide(session: Session, improvement: Improvement, approve: bool, comment: str = "") -> None:
    [request] = route_improvement(
        session=session, improvement_id=improvement.id, actor="flow", channel=Channel.flow
    )
    session.commit()
    record_decision(
        session=session,
        approval_id=request.id,
        approve=approve,
        comment=comment,
        channel=Channel.email,
    )
    session.commit()
    advance_after_decision(session=session, improvement_id=improvement.id, actor="flow")
    session.commit()


def outcome_emails(session: Session) -> list[OutboxEmail]:
    return list(
        session.exec(
            select(OutboxEmail)
            .where(OutboxEmail.template == "suggestion_outcome")
            .order_by(OutboxEmail.id)
        ).all()
    )


def test_a_rejected_suggestion_tells_its_sender_why_once(session: Session) -> None:
    make_approver(session, "Pat Reid", Category.process, 5_000)
    improvement = _confirmed(session)
    _decide(session, improvement, approve=False, comment="We already plan e-billing in spring.")

    assert tell_outcome(session=session, improvement_id=improvement.id) == "rejected"
    assert tell_outcome(session=session, improvement_id=improvement.id) == "rejected"
    session.commit()
    [email] = outcome_emails(session)
    assert email.recipient == "ruth@example.com"
    assert email.idempotency_key.endswith(":outcome:rejected")
    customer = session.exec(select(Customer)).one()
    message = build_message(email, reader_for(customer))
    assert message["Subject"] == "Your suggestion: Send my bills by email"
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "We already plan e-billing in spring." in text
    assert f"{settings.base_url}/suggest" in text  # the footer invites the next idea
    assert message["List-Unsubscribe"] is not None  # an update they may stop


def test_an_approved_suggestion_is_told_once_it_is_planned(session: Session) -> None:
    make_approver(session, "Pat Reid", Category.process, 5_000)
    improvement = _confirmed(session)
    _decide(session, improvement, approve=True)
    assert tell_outcome(session=session, improvement_id=improvement.id) is None  # not planned yet
    items = plan_actions(session=session, improvement_id=improvement.id, actor="flow")
    assert tell_outcome(session=session, improvement_id=improvement.id) == "approved"
    session.commit()
    [email] = outcome_emails(session)
    assert email.idempotency_key.endswith(":outcome:approved")
    assert email.context["done_by"] == f"{max(i.due_on for i in items):%Y-%m-%d}"
    assert email.context["purpose"] == Purpose.improvement_updates.value


def test_an_improvement_no_suggestion_made_tells_nobody(session: Session) -> None:
    make_approver(session, "Pat Reid", Category.process, 5_000)
    improvement = _confirmed(session)
    other = Improvement(title="Staff idea", category=Category.process, status=Status.rejected)
    session.add(other)
    session.commit()
    assert tell_outcome(session=session, improvement_id=other.id) is None  # type: ignore[arg-type]
    assert tell_outcome(session=session, improvement_id=improvement.id) is None  # only submitted
    assert outcome_emails(session) == []
