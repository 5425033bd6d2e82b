"""Follow-up of action items: reminders with a fresh link around the due date, escalation to the
approvers, renewal of an expiring link, and reassignment."""

from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlparse

import pytest
from sqlmodel import Session

from improve.errors import InvalidInput, LinkRefused
from improve.settings import settings
from models import ActionItem, ActionStatus, Category, Channel, Colleague
from models.db import utcnow
from tasks.follow_up import link_expires_at, reassign_action, remind_and_escalate_actions
from tasks.links import check_action_link
from tasks.outbox import send_due
from tasks.planning import plan_actions
from tests.factories import link_in, make_approved_improvement, make_approver, make_colleague
from tests.smtpd import SmtpServer
from tests.tasks.helpers import history, items_of, outbox

NOTHING = {"reminded": 0, "renewed": 0, "escalated": 0}


def token_from(url: str) -> tuple[int, str]:
    _, kind, action_id, token = urlparse(url).path.split("/")
    assert kind == "actions"
    return int(action_id), token


def at(day: date, hour: int = 9) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def url_in(text: str) -> str:
    return next(line.strip() for line in text.splitlines() if "/actions/" in line)


@pytest.fixture
def plan(session: Session) -> tuple[list[ActionItem], Colleague, Colleague]:
    """An energy improvement approved by Sam, planned today; Farah coordinates facilities."""
    asha = make_colleague(session, "Asha Patel")
    sam = make_approver(session, "Sam Lee", Category.energy, 5_000)
    make_colleague(session, "Farah Khan", role="Facilities Coordinator")
    improvement = make_approved_improvement(
        session, asha, [sam], title="LED lighting in the contact centre", category=Category.energy
    )
    items = plan_actions(
        session=session, improvement_id=improvement.id, actor="advance-improvement"
    )
    session.commit()
    return items, sam, asha


def assigned_token(session: Session, item: ActionItem) -> str:
    """The token of the item's action_assigned email."""
    [row] = [
        r
        for r in outbox(session, "action_assigned")
        if r.idempotency_key == f"action:{item.id}:assigned"
    ]
    return token_from(link_in(row))[1]


def test_a_link_lives_past_the_due_date(session: Session, plan) -> None:
    items, _, _ = plan
    last = items[-1]
    assert last.token_expires_at is not None
    assert last.token_expires_at.date() == last.due_on + timedelta(
        days=settings.action_link_expiry_days + 1
    )
    # The owner, one day late, still has a working link.
    one_day_late = at(last.due_on + timedelta(days=1))
    token = assigned_token(session, last)
    assert check_action_link(session=session, action_id=last.id, token=token, now=one_day_late)


async def test_a_reminder_before_the_due_date_carries_a_fresh_link_and_the_old_one_is_replaced(
    session: Session, plan, smtp: SmtpServer
) -> None:
    items, _, _ = plan
    first = items[0]
    old_token = assigned_token(session, first)
    now = at(first.due_on - timedelta(days=2))

    assert remind_and_escalate_actions(session=session, now=now) == {**NOTHING, "reminded": 1}
    session.commit()
    assert remind_and_escalate_actions(session=session, now=now) == NOTHING  # idempotent
    session.commit()
    await send_due()

    owner = session.get(Colleague, first.owner_id)
    assert owner is not None
    [email] = [m for m in smtp.handler.to(owner.email) if m.subject.startswith("Reminder:")]
    assert first.title in email.subject
    assert "replaces the link in earlier emails" in email.text
    action_id, token = token_from(url_in(email.text))
    assert action_id == first.id
    assert check_action_link(session=session, action_id=first.id, token=token, now=now)
    with pytest.raises(LinkRefused) as old:
        check_action_link(session=session, action_id=first.id, token=old_token, now=now)
    assert old.value.kind == "replaced"
    assert "replaced by a newer one" in str(old.value)


async def test_an_overdue_item_gets_a_second_reminder_with_another_fresh_link(
    session: Session, plan, smtp: SmtpServer
) -> None:
    items, _, _ = plan
    first = items[0]
    remind_and_escalate_actions(session=session, now=at(first.due_on - timedelta(days=2)))
    session.commit()
    before = token_from(link_in(outbox(session, "action_reminder")[0]))[1]
    now = at(first.due_on + timedelta(days=1))

    assert remind_and_escalate_actions(session=session, now=now) == {**NOTHING, "reminded": 1}
    session.commit()
    assert remind_and_escalate_actions(session=session, now=now) == NOTHING
    await send_due()

    owner = session.get(Colleague, first.owner_id)
    assert owner is not None
    [email] = [m for m in smtp.handler.to(owner.email) if m.subject.startswith("Overdue:")]
    token = token_from(url_in(email.text))[1]
    assert check_action_link(session=session, action_id=first.id, token=token, now=now)
    with pytest.raises(LinkRefused) as old:
        check_action_link(session=session, action_id=first.id, token=before, now=now)
    assert old.value.kind == "replaced"


async def test_an_item_a_week_late_is_escalated_to_the_approver_once(
    session: Session, plan, smtp: SmtpServer
) -> None:
    items, sam, _ = plan
    first = items[0]
    now = at(first.due_on + timedelta(days=7))

    counts = remind_and_escalate_actions(session=session, now=now)
    session.commit()
    # The owner, never reminded, hears now too, with a live link.
    assert counts == {**NOTHING, "reminded": 1, "escalated": 1}
    assert remind_and_escalate_actions(session=session, now=now) == NOTHING
    assert remind_and_escalate_actions(session=session, now=now + timedelta(days=3)) == NOTHING
    session.commit()
    await send_due()

    [email] = smtp.handler.to(sam.email)
    assert email.subject.startswith("Late: " + first.title)
    assert "7 days overdue" in email.text
    assert f"{settings.base_url}/improvements/{first.improvement_id}" in email.text
    assert any(
        "7 days overdue" in t.reason and "Sam Lee" in t.reason
        for t in history(session, first.improvement_id)
    )


async def test_an_expired_link_is_renewed_so_an_open_item_always_has_one(
    session: Session, plan, smtp: SmtpServer
) -> None:
    items, _, _ = plan
    last = items[-1]
    now = utcnow()
    last.token_expires_at = now - timedelta(hours=1)
    session.add(last)
    session.commit()
    old_token = assigned_token(session, last)
    with pytest.raises(LinkRefused) as expired:
        check_action_link(session=session, action_id=last.id, token=old_token, now=now)
    assert expired.value.kind == "expired"

    assert remind_and_escalate_actions(session=session, now=now) == {**NOTHING, "renewed": 1}
    session.commit()
    assert remind_and_escalate_actions(session=session, now=now) == NOTHING
    await send_due()

    owner = session.get(Colleague, last.owner_id)
    assert owner is not None
    [email] = [m for m in smtp.handler.to(owner.email) if m.subject.startswith("A new link for:")]
    token = token_from(url_in(email.text))[1]
    renewed = check_action_link(session=session, action_id=last.id, token=token, now=now)
    assert renewed.token_expires_at == link_expires_at(last.due_on, now)
    assert renewed.token_expires_at > now


async def test_a_reassigned_item_goes_to_its_new_owner_with_a_new_link(
    session: Session, plan, smtp: SmtpServer
) -> None:
    items, _, _ = plan
    first = items[0]
    old_owner = session.get(Colleague, first.owner_id)
    assert old_owner is not None
    old_token = assigned_token(session, first)
    grace = make_colleague(session, "Grace Mensah")

    item = reassign_action(
        session=session,
        action_id=first.id,
        to_email=grace.email.upper(),
        by="olu.ade@example.org",
        channel=Channel.cli,
    )
    session.commit()
    await send_due()

    assert item.owner_id == grace.id
    [email] = smtp.handler.to(grace.email)
    assert email.subject.startswith(f"Action for you: {first.title}")
    assert f"that was {old_owner.name}'s has been passed to you" in email.text
    token = token_from(url_in(email.text))[1]
    assert check_action_link(session=session, action_id=first.id, token=token)
    with pytest.raises(LinkRefused) as old:
        check_action_link(session=session, action_id=first.id, token=old_token)
    assert old.value.kind == "replaced"
    [moved] = [t for t in history(session, first.improvement_id) if "moved from" in t.reason]
    assert moved.actor == "olu.ade@example.org" and moved.channel == Channel.cli
    assert f"from {old_owner.name} to Grace Mensah" in moved.reason

    with pytest.raises(InvalidInput, match="already owns it"):
        reassign_action(session=session, action_id=first.id, to_email=grace.email, by="olu")
    done = items_of(session, first.improvement_id)[1]
    done.status = ActionStatus.done
    session.add(done)
    session.commit()
    with pytest.raises(InvalidInput, match="only an open action"):
        reassign_action(session=session, action_id=done.id, to_email=old_owner.email, by="olu")
