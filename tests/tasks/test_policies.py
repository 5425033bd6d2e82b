"""The policy library: adding and linking policies, publishing a version, its notices once each."""

import pytest
from sqlalchemy import func
from sqlmodel import Session, col, select

from improve.errors import Forbidden, InvalidInput
from models import (
    Access,
    ContactFormat,
    Customer,
    CustomerConsent,
    OutboxEmail,
    OutboxStatus,
    Policy,
    PolicyVersion,
    Purpose,
)
from tasks.mail import build_message, customer_of, reader_for
from tasks.outbox import send_due
from tasks.policies import (
    PolicyConflict,
    add_policy,
    check_may_publish,
    link_improvement,
    link_processes,
    notice_progress,
    policies_of_improvement,
    policies_of_process,
    policy_view,
    publish,
    queue_notices,
)
from tests.factories import (
    make_colleague,
    make_customer,
    make_improvement,
    make_partner,
    make_process,
)
from tests.smtpd import SmtpServer


def _policy(session: Session, **fields: object) -> Policy:
    owner = make_colleague(session, "Priya Shah")
    make_process(session, "billing")
    policy = add_policy(
        session=session,
        **{
            "title": "Paperless by default",
            "summary": "Statements and letters go by email unless a customer asks for paper.",
            "link": "https://brightwater.example/policies/paperless",
            "owner_email": owner.email,
            "processes": ["billing"],
            **fields,
        },  # type: ignore[arg-type]
    )
    session.commit()
    return policy


def _notices(session: Session) -> list[OutboxEmail]:
    return list(session.exec(select(OutboxEmail).order_by(col(OutboxEmail.id))).all())


def test_a_policy_keeps_its_owner_processes_and_improvements(session: Session) -> None:
    policy = _policy(session)
    fleet = make_process(session, "deliveries")
    improvement = make_improvement(session, make_colleague(session), title="E-statements")

    assert (
        link_processes(session=session, policy_id=policy.id, names=["deliveries", "billing"]) == 1
    )
    assert link_improvement(session=session, policy_id=policy.id, improvement_id=improvement.id)
    assert not link_improvement(session=session, policy_id=policy.id, improvement_id=improvement.id)
    session.commit()

    view = policy_view(session=session, policy_id=policy.id)
    assert view.owner is not None and view.owner.name == "Priya Shah"
    assert [p.name for p in view.processes] == ["billing", "deliveries"]
    assert [i.title for i in view.improvements] == ["E-statements"]
    assert [p.title for p in policies_of_process(session=session, process_id=fleet.id)] == [
        "Paperless by default"
    ]
    assert policies_of_improvement(session=session, improvement_id=improvement.id) == [policy]


def test_bad_input_is_named_and_nothing_is_stored(session: Session) -> None:
    _policy(session)
    with pytest.raises(InvalidInput) as bad:
        add_policy(
            session=session,
            title="",
            link="javascript:alert(1)",
            owner_email="nobody@example.org",
            processes=["billing", "laundry"],
        )
    assert set(bad.value.errors) == {"title", "link", "owner_email", "processes"}
    assert "'laundry'" in bad.value.errors["processes"]
    with pytest.raises(PolicyConflict) as taken:
        add_policy(session=session, title="paperless BY default")
    assert taken.value.status_code == 409 and "title" in taken.value.errors
    session.rollback()
    assert session.exec(select(func.count()).select_from(Policy)).one() == 1


def test_publishing_notifies_each_subscriber_once_in_their_language(session: Session) -> None:
    policy = _policy(session)
    ann = make_customer(session, "Ann Hughes", consents=(Purpose.policy_news,))
    rhys = make_customer(
        session,
        "Rhys Jones",
        consents=(Purpose.policy_news,),
        language="cy",
        contact_format=ContactFormat.text,
    )
    not_asked = make_customer(session, "Bo Quiet", consents=(Purpose.improvement_updates,))
    hears = make_partner(session, "Inkwell Print", hears_policies=True, contact_name="Lin Bo")
    make_partner(session, "Deaf Freight", hears_policies=False)

    published = publish(
        session=session,
        policy_id=policy.id,
        version="2.0",
        changes="Paper statements now need a request.",
        actor="priya.shah@brightwater.example",
    )
    session.commit()

    rows = _notices(session)
    assert sorted(r.recipient for r in rows) == sorted([ann.email, rhys.email, hears.email])
    assert not_asked.email not in {r.recipient for r in rows}
    assert {r.idempotency_key for r in rows} == {
        f"policy:{published.id}:customer:{ann.id}",
        f"policy:{published.id}:customer:{rhys.id}",
        f"policy:{published.id}:partner:{hears.id}",
    }
    assert session.get(Policy, policy.id).version == "2.0"  # type: ignore[union-attr]
    welsh = next(r for r in rows if r.recipient == rhys.email)
    message = build_message(welsh, reader_for(customer_of(session=session, row=welsh)))
    assert message["Subject"].startswith("Mae ein polisi wedi newid: Paperless by default")
    assert message.get_content_type() == "text/plain"  # Rhys reads plain text
    assert message["List-Unsubscribe"] is not None  # news, not essential


async def test_notices_go_out_once_and_show_their_progress(
    session: Session, smtp: SmtpServer
) -> None:
    policy = _policy(session)
    ann = make_customer(session, "Ann Hughes", consents=(Purpose.policy_news,))
    partner = make_partner(session, "Inkwell Print", hears_policies=True)
    published = publish(
        session=session, policy_id=policy.id, version="1", changes="First.", actor="ops"
    )
    session.commit()
    assert notice_progress(session=session, version_id=published.id)["queued"] == 2

    await send_due()
    await send_due()

    assert sorted(r for m in smtp.received for r in m.recipients) == sorted(
        [ann.email, partner.email]
    )
    assert notice_progress(session=session, version_id=published.id) == {
        "queued": 0,
        "held": 0,
        "sending": 0,
        "sent": 2,
        "failed": 0,
        "skipped": 0,
        "total": 2,
    }


def test_the_same_version_is_refused_and_queueing_again_adds_nothing(session: Session) -> None:
    policy = _policy(session)
    make_customer(session, consents=(Purpose.policy_news,))
    make_partner(session, hears_policies=True)
    published = publish(
        session=session, policy_id=policy.id, version="2.0", changes="New.", actor="ops"
    )
    session.commit()

    with pytest.raises(PolicyConflict) as again:
        publish(session=session, policy_id=policy.id, version="2.0", changes="New.", actor="ops")
    assert again.value.status_code == 409
    assert "version 2.0 of 'Paperless by default' was published on" in again.value.errors["version"]
    session.rollback()

    counts = queue_notices(session=session, version_id=published.id)
    session.commit()
    assert counts == {"customers": 1, "partners": 1, "queued": 0}
    assert len(_notices(session)) == 2
    assert session.exec(select(func.count()).select_from(PolicyVersion)).one() == 1


def test_bad_versions_and_changes_are_named(session: Session) -> None:
    policy = _policy(session)
    with pytest.raises(InvalidInput) as bad:
        publish(
            session=session, policy_id=policy.id, version="two point oh", changes=" ", actor="x"
        )
    assert set(bad.value.errors) == {"version", "changes"}


def test_only_the_owner_or_operations_may_publish(session: Session) -> None:
    policy = _policy(session)
    owner = session.get(type(make_colleague(session)), policy.owner_id)
    assert owner is not None
    check_may_publish(colleague=owner, policy=policy)
    check_may_publish(colleague=make_colleague(session, access=Access.operations), policy=policy)
    with pytest.raises(Forbidden, match="owner or operations"):
        check_may_publish(colleague=make_colleague(session), policy=policy)


def test_ten_thousand_subscribers_are_queued_in_bulk(session: Session) -> None:
    policy = _policy(session)
    # Made in bulk too: ten thousand factory calls would be the slow part of this test.
    session.add_all(
        Customer(name=f"Subscriber {n}", email=f"sub.{n}@example.com") for n in range(10_000)
    )
    session.flush()
    ids = session.exec(select(Customer.id)).all()
    session.add_all(
        CustomerConsent(customer_id=i, purpose=Purpose.policy_news, granted=n % 5 != 0)
        for n, i in enumerate(ids)
    )
    session.commit()

    published = publish(
        session=session, policy_id=policy.id, version="3", changes="Bigger.", actor="ops"
    )
    session.commit()

    assert notice_progress(session=session, version_id=published.id)["queued"] == 8_000
    assert queue_notices(session=session, version_id=published.id)["queued"] == 0
    statuses = set(session.exec(select(OutboxEmail.status)).all())
    assert statuses == {OutboxStatus.queued}


def test_a_nul_in_a_process_or_owner_is_named_not_looked_up(session: Session) -> None:
    """PostgreSQL refuses a NUL in a query: the domain names the field instead of failing."""
    with pytest.raises(InvalidInput) as refused:
        add_policy(
            session=session,
            title="Paperless by default",
            processes=["bill\x00ing"],
            owner_email="a\x00@example.org",
        )
    assert refused.value.errors == {
        "processes": "must not contain NUL characters",
        "owner_email": "must not contain NUL characters",
    }
