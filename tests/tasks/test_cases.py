"""Customer cases in the domain: opened, changed, delayed, updated, and raised once when overdue."""

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import Session, select

from improve.errors import InvalidInput
from improve.settings import settings
from models import (
    ActionStatus,
    Case,
    CaseNote,
    CaseStatus,
    CaseUpdate,
    Category,
    Channel,
    Colleague,
    ContactFormat,
    Customer,
    Improvement,
    ImprovementCustomer,
    Source,
    Status,
)
from tasks import cases, updates
from tasks.approvals import route_improvement
from tasks.outbox import send_due
from tasks.planning import plan_actions
from tests.factories import link_in, make_colleague, make_customer
from tests.smtpd import SmtpServer
from tests.tasks.helpers import at_once, items_of, outbox

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
def team(session: Session) -> tuple[Colleague, Colleague, Customer]:
    """Mo manages Asha, who owns the cases; Ruth Evans is the customer."""
    mo = make_colleague(session, "Mo Begum", role="Team Leader")
    asha = make_colleague(session, "Asha Patel", manager_id=mo.id)
    ruth = make_customer(session, "Ruth Evans", email="ruth@example.com")
    return asha, mo, ruth


def notes(session: Session, case_id: int) -> list[str]:
    rows = session.exec(select(CaseNote).where(CaseNote.case_id == case_id).order_by(CaseNote.id))
    return [row.what for row in rows]


def open_one(session: Session, asha: Colleague, **fields: object) -> Case:
    case = cases.open_case(
        session=session,
        by=asha,
        channel=Channel.web,
        customer_email=str(fields.pop("customer_email", "ruth@example.com")),
        subject=str(fields.pop("subject", "New water meter")),
        now=NOW,
        **fields,  # type: ignore[arg-type]
    )
    session.commit()
    return case


def test_a_case_is_opened_for_a_known_customer_owned_by_whoever_opens_it(session, team) -> None:
    asha, _mo, ruth = team
    case = open_one(session, asha, details="Meter fitted wrongly", promised_on=date(2026, 12, 5))

    assert (case.customer_id, case.owner_id, case.status) == (ruth.id, asha.id, CaseStatus.open)
    assert case.next_update_due == NOW + timedelta(days=settings.case_update_days)
    assert case.reference == f"CASE-{case.id}"
    [note] = session.exec(select(CaseNote).where(CaseNote.case_id == case.id)).all()
    assert (note.what, note.actor, note.channel) == ("opened", asha.email, "web")


def test_an_unknown_customer_is_named_and_nothing_is_written(session, team) -> None:
    asha, _mo, _ruth = team
    with pytest.raises(InvalidInput) as refused:
        open_one(session, asha, customer_email="Nobody@Example.com", subject=" ")
    assert refused.value.errors == {
        "customer_email": "no customer has the email 'nobody@example.com'",
        "subject": "is required",
    }
    session.rollback()
    assert session.exec(select(Case)).all() == []


def test_an_address_with_a_nul_finds_nobody_and_says_so(session, team) -> None:
    asha, _mo, _ruth = team
    with pytest.raises(InvalidInput) as refused:
        cases.open_case(
            session=session, by=asha, channel=Channel.api, customer_email="ruth@ex\x00ample.com",
            subject="Meter", owner_email="asha\x00@example.org", now=NOW,
        )  # fmt: skip
    assert set(refused.value.errors) == {"customer_email", "owner_email"}
    session.rollback()
    assert session.exec(select(Case)).all() == []


def test_another_owner_and_a_past_due_date_are_checked(session, team) -> None:
    asha, mo, _ruth = team
    case = open_one(session, asha, owner_email=mo.email.upper())
    assert case.owner_id == mo.id
    with pytest.raises(InvalidInput) as refused:
        open_one(session, asha, owner_email="who@example.org", next_update_due=NOW)
    assert set(refused.value.errors) == {"owner_email", "next_update_due"}


def test_a_delay_needs_a_reason_and_always_sets_the_next_update(session, team) -> None:
    asha, _mo, _ruth = team
    case = open_one(session, asha)
    with pytest.raises(InvalidInput) as refused:
        cases.mark_delayed(
            session=session, case_id=case.id, by=asha, channel="api", reason="  ", now=NOW
        )
    assert refused.value.errors == {"reason": "is required: say why the case is off plan"}

    later = NOW + timedelta(days=1)
    cases.mark_delayed(
        session=session, case_id=case.id, by=asha, channel="api", reason="Parts on order",
        next_update_due=datetime(2026, 11, 30, 9, 0), now=later,
    )  # fmt: skip
    session.commit()
    case = cases.get_case(session=session, case_id=case.id)
    assert case.status == CaseStatus.delayed and case.delay_reason == "Parts on order"
    assert case.next_update_due == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # naive is UTC

    cases.mark_delayed(
        session=session, case_id=case.id, by=asha, channel="cli", reason="Still waiting", now=later
    )
    assert case.next_update_due == later + timedelta(days=settings.case_update_days)
    assert notes(session, case.id) == ["opened", "delayed", "delayed"]


def test_changes_are_noted_and_closing_ends_the_updates(session, team) -> None:
    asha, mo, _ruth = team
    case = open_one(session, asha)
    cases.change_case(
        session=session, case_id=case.id, by=asha, channel="web", subject="Replacement meter",
        owner_email=mo.email, promised_on=date(2026, 12, 10), now=NOW,
    )  # fmt: skip
    cases.change_case(
        session=session, case_id=case.id, by=mo, channel="web", close=True, reason="Fitted"
    )
    session.commit()
    assert (case.subject, case.owner_id, case.status) == ("Replacement meter", mo.id, "closed")
    assert case.next_update_due is None
    assert notes(session, case.id) == ["opened", "subject", "owner", "promised", "closed"]
    with pytest.raises(cases.CaseClosed, match="is closed"):
        cases.mark_delayed(session=session, case_id=case.id, by=mo, channel="web", reason="x")


async def test_the_preview_is_plain_and_sending_it_emails_the_customer_once(
    session, team, smtp: SmtpServer
) -> None:
    asha, _mo, ruth = team
    case = open_one(session, asha)
    cases.mark_delayed(
        session=session, case_id=case.id, by=asha, channel="web", reason="Parts on order", now=NOW
    )
    draft = updates.preview_update(session=session, case_id=case.id, now=NOW)
    assert draft.subject == f"An update on your case CASE-{case.id}: New water meter"
    assert draft.body.startswith("Dear Ruth Evans,") and "Parts on order" in draft.body
    assert draft.body.endswith("Asha Patel")

    for _ in range(2):  # a double click
        sent = updates.send_update(
            session=session, case_id=case.id, by=asha, channel="web",
            subject="Your new meter", body=draft.body + "\n\nP.S. thank you", now=NOW,
        )  # fmt: skip
        session.commit()
    assert sent.replayed
    assert len(session.exec(select(CaseUpdate)).all()) == 1
    assert case.next_update_due == NOW + timedelta(days=settings.case_update_days)
    [email] = outbox(session, "case_update")
    assert email.recipient == ruth.email

    await send_due()
    [received] = smtp.received
    assert received.recipients == [ruth.email] and received.subject == "Your new meter"
    assert "List-Unsubscribe" not in received.message  # their own case: essential
    assert "P.S. thank you" in received.text and "thank you" in received.html
    assert f"CASE-{case.id}" in received.text


async def test_a_plain_text_customer_gets_no_html(session, team, smtp: SmtpServer) -> None:
    asha, _mo, _ruth = team
    make_customer(session, "Tom Price", email="tom@example.com", contact_format=ContactFormat.text)
    case = open_one(session, asha, customer_email="tom@example.com")
    updates.send_update(
        session=session, case_id=case.id, by=asha, channel="web", subject="Hello", body="News"
    )
    session.commit()
    await send_due()
    [received] = smtp.received
    assert not received.message.is_multipart() and "News" in received.text


async def test_a_welsh_customer_gets_a_welsh_draft_and_a_welsh_email(
    session, team, smtp: SmtpServer
) -> None:
    asha, _mo, _ruth = team
    make_customer(session, "Nia Morgan", email="nia@example.com", language="cy")
    case = open_one(session, asha, customer_email="nia@example.com", subject="Mesurydd newydd")
    cases.mark_delayed(
        session=session, case_id=case.id, by=asha, channel="web", reason="Rhannau ar archeb",
        now=NOW,
    )  # fmt: skip
    draft = updates.preview_update(session=session, case_id=case.id, now=NOW)
    assert draft.subject == f"Diweddariad ar eich achos CASE-{case.id}: Mesurydd newydd"
    assert draft.body.startswith("Annwyl Nia Morgan,") and "Y rheswm yw: Rhannau" in draft.body

    updates.send_update(
        session=session, case_id=case.id, by=asha, channel="web", subject=draft.subject,
        body=draft.body, now=NOW,
    )  # fmt: skip
    session.commit()
    await send_due()
    [received] = smtp.received
    assert f"Eich cyfeirnod: CASE-{case.id}" in received.text
    assert "achos ar agor gyda ni" in received.text and 'lang="cy"' in received.html


def test_an_update_needs_words(session, team) -> None:
    asha, _mo, _ruth = team
    case = open_one(session, asha)
    with pytest.raises(InvalidInput) as refused:
        updates.send_update(
            session=session, case_id=case.id, by=asha, channel="api", subject="", body=""
        )
    assert set(refused.value.errors) == {"subject", "body"}


def overdue(session: Session, asha: Colleague) -> Case:
    case = open_one(session, asha)
    cases.mark_delayed(
        session=session, case_id=case.id, by=asha, channel="web", reason="Parts on order",
        next_update_due=NOW + timedelta(hours=1), now=NOW,
    )  # fmt: skip
    session.commit()
    return case


def test_an_overdue_update_is_raised_once_for_the_owner(session, team) -> None:
    asha, _mo, ruth = team
    case = overdue(session, asha)
    assert updates.raise_overdue_updates(session=session, now=NOW) == []  # not due yet

    later = NOW + timedelta(hours=2)
    [raised] = updates.raise_overdue_updates(session=session, now=later)
    session.commit()
    assert updates.raise_overdue_updates(session=session, now=later) == []
    assert updates.raise_overdue_updates(session=session, now=later + timedelta(days=3)) == []

    improvement = session.get(Improvement, raised)
    assert improvement is not None
    assert improvement.title == f"Update overdue: CASE-{case.id} New water meter"
    assert (improvement.category, improvement.source) == (
        Category.customer_update,
        Source.triggered,
    )
    assert (improvement.submitter_id, improvement.status) == (asha.id, Status.submitted)
    assert session.get(ImprovementCustomer, (raised, ruth.id)) is not None
    assert cases.get_case(session=session, case_id=case.id).overdue_improvement_id == raised
    assert notes(session, case.id)[-1] == "overdue_raised"


def test_two_sweeps_at_once_raise_it_once(session, team) -> None:
    asha, _mo, _ruth = team
    overdue(session, asha)
    later = NOW + timedelta(hours=2)
    outcomes = at_once(2, lambda own: len(updates.raise_overdue_updates(session=own, now=later)))
    assert outcomes == ["0", "1"]
    assert len(session.exec(select(Improvement)).all()) == 1


def test_the_owner_approves_it_and_sending_the_update_completes_it(session, team) -> None:
    asha, _mo, _ruth = team
    case = overdue(session, asha)
    [raised] = updates.raise_overdue_updates(session=session, now=NOW + timedelta(hours=2))
    session.commit()

    assert (
        route_improvement(session=session, improvement_id=raised, actor="t", channel="flow") == []
    )
    improvement = session.get(Improvement, raised, populate_existing=True)
    assert improvement is not None and improvement.status == Status.approved
    [item] = plan_actions(session=session, improvement_id=raised, actor="t")
    session.commit()
    assert (item.owner_id, item.automatic_step) == (asha.id, None)
    assert item.title == f"Send Ruth Evans an update on CASE-{case.id}"
    [assigned] = outbox(session, "action_assigned")
    assert link_in(assigned) == f"{settings.base_url}/cases/{case.id}/update"

    sent = updates.send_update(
        session=session, case_id=case.id, by=asha, channel="web", subject="News", body="Soon."
    )
    session.commit()
    assert sent.completed_action_ids == [item.id]
    assert [i.status for i in items_of(session, raised)] == [ActionStatus.done]
    assert cases.get_case(session=session, case_id=case.id).overdue_improvement_id is None


def test_an_update_sent_before_the_raise_is_planned_cancels_it(session, team) -> None:
    asha, _mo, _ruth = team
    case = overdue(session, asha)
    [raised] = updates.raise_overdue_updates(session=session, now=NOW + timedelta(hours=2))
    updates.send_update(
        session=session, case_id=case.id, by=asha, channel="web", subject="News", body="Soon."
    )
    session.commit()
    improvement = session.get(Improvement, raised, populate_existing=True)
    assert improvement is not None and improvement.status == Status.cancelled


def test_the_manager_hears_once_when_it_sits(session, team) -> None:
    asha, mo, _ruth = team
    case = overdue(session, asha)
    raised_at = NOW + timedelta(hours=2)
    [raised] = updates.raise_overdue_updates(session=session, now=raised_at)
    session.commit()
    route_improvement(session=session, improvement_id=raised, actor="t", channel="flow")
    plan_actions(session=session, improvement_id=raised, actor="t")
    session.commit()
    improvement = session.get(Improvement, raised)
    assert improvement is not None
    sat = improvement.created_at + timedelta(hours=settings.overdue_escalate_hours)

    assert updates.escalate_overdue_updates(session=session, now=sat - timedelta(minutes=1)) == 0
    assert updates.escalate_overdue_updates(session=session, now=sat) == 1
    assert updates.escalate_overdue_updates(session=session, now=sat + timedelta(hours=5)) == 0
    [told] = outbox(session, "case_overdue_escalation")
    assert told.recipient == mo.email
    assert notes(session, case.id)[-1] == "escalated"


def test_the_list_filters_by_status_and_overdue(session, team) -> None:
    asha, _mo, _ruth = team
    late = overdue(session, asha)
    fine = open_one(session, asha, subject="Billing question")
    later = NOW + timedelta(hours=2)

    def ids(**wanted: object) -> list[int | None]:
        rows, _total = cases.list_cases(
            session=session,
            wanted=cases.CaseFilter(**wanted),  # type: ignore[arg-type]
            now=later,
        )
        return [row.id for row in rows]

    assert ids() == [late.id, fine.id]
    assert ids(overdue=True) == [late.id]
    assert ids(overdue=False) == [fine.id]
    assert ids(status=CaseStatus.open) == [fine.id]


def test_the_same_words_later_are_a_new_update_and_a_key_replays(session, team) -> None:
    asha, _mo, _ruth = team
    case = open_one(session, asha)

    def send(at: datetime, key: str | None = None) -> updates.Sent:
        sent = updates.send_update(
            session=session, case_id=case.id, by=asha, channel="api", subject="No news yet",
            body="We are still waiting for the part.", key=key, now=at,
        )  # fmt: skip
        session.commit()
        return sent

    first = send(NOW)
    assert send(NOW + timedelta(minutes=2)).replayed  # a retry moments later
    later = send(NOW + timedelta(days=7))  # next week, the same words: a new update
    assert not later.replayed and later.update.id != first.update.id
    keyed = send(NOW + timedelta(days=8), key="k1")
    assert send(NOW + timedelta(days=9), key="k1").update.id == keyed.update.id
    assert len(outbox(session, "case_update")) == 3
