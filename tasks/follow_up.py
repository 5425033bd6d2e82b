"""Follow-up of action items: reminders with a fresh link, escalation when they sit, reassignment.

An owner is reminded a couple of days before the due date and again the day after it, each time
with a new link that replaces the old one; a week overdue, the approvers of the improvement hear
what is late. A link lives until some time after the due date (never less than that from when it
was sent) and is renewed just before it would expire, so an open item always has a live link.
Planning the items is in tasks/planning.py.
"""

import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from improve.errors import InvalidInput, NotFound
from improve.settings import settings
from models import (
    ActionItem,
    ActionStatus,
    ApprovalRequest,
    ApprovalStatus,
    Case,
    Channel,
    Colleague,
    Improvement,
    OutboxEmail,
    Status,
)
from models.db import utcnow
from tasks import links
from tasks.escalation import SWEEP
from tasks.lifecycle import get_improvement, note, raised_for_case
from tasks.mail import queue_email
from tasks.routing import load_fallback

log = logging.getLogger(__name__)

# Knobs of the follow-up. Constants rather than settings: settings.py belongs to everyone and these
# follow from the playbooks' due dates, not from one installation's taste.
REMIND_BEFORE = timedelta(days=2)  # the first reminder, this long before the due date
REMIND_AFTER = timedelta(days=1)  # the second, once the item is this long overdue
ESCALATE_AFTER = timedelta(days=7)  # the approvers hear of an item this long overdue
RENEW_AHEAD = timedelta(days=1)  # a link this close to expiring is replaced by a fresh one


def link_expires_at(due_on: date, now: datetime) -> datetime:
    """When a link sent `now` for an item due `due_on` stops working.

    settings.action_link_expiry_days counts from the end of the due date, so an owner a day late
    still has a working link; a link sent after the due date gets as many days from `now`.
    """
    end_of_due_day = datetime.combine(due_on + timedelta(days=1), time(), tzinfo=UTC)
    return max(end_of_due_day, now) + timedelta(days=settings.action_link_expiry_days)


def action_email_context(
    improvement: Improvement, item: ActionItem, owner: Colleague, case: Case | None = None
) -> dict[str, Any]:
    """What every email to an item's owner says about the item (and its case, if it has one)."""
    return {
        "owner_name": owner.name,
        "reference": improvement.reference,
        "title": improvement.title,
        "improvement_title": improvement.title,
        "action_title": item.title,
        "due_on": item.due_on.isoformat(),
        "case_reference": case.reference if case else "",
    }


def step_url(action_id: int, token: str, case: Case | None) -> str:
    """Where an owner's email sends them: the action's own link, or for an overdue customer
    update, the case's page that previews the update and sends it (sending completes the step)."""
    if case is not None and case.id is not None:
        return links.case_update_url(case.id)
    return links.action_url(action_id, token)


def _queued(session: Session, key: str) -> bool:
    return (
        session.exec(select(OutboxEmail.id).where(OutboxEmail.idempotency_key == key)).first()
        is not None
    )


def _new_link(
    session: Session,
    item: ActionItem,
    *,
    now: datetime,
    owner_id: int | None = None,
) -> str | None:
    """Give an open item a new token (and owner); the old link says it was replaced.

    Conditional on the item still being open with the token read: of a completion and a new link
    at the same moment, one wins. None when it lost.
    """
    assert item.id is not None
    token, token_hash = links.new_token()
    old_hash = item.token_hash
    live = (
        col(ActionItem.token_hash).is_(None)
        if old_hash is None
        else col(ActionItem.token_hash) == old_hash
    )
    values: dict[str, Any] = {
        "token_hash": token_hash,
        "token_expires_at": link_expires_at(item.due_on, now),
    }
    if owner_id is not None:
        values["owner_id"] = owner_id
    changed = session.execute(
        update(ActionItem)
        .where(col(ActionItem.id) == item.id, col(ActionItem.status) == ActionStatus.open, live)
        .values(**values)
    )
    session.refresh(item)
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    links.retire(session=session, token_hash=old_hash, kind="action", target_id=item.id, at=now)
    return token


def _remind(
    session: Session,
    improvement: Improvement,
    item: ActionItem,
    owner: Colleague,
    *,
    key: str,
    kind: str,
    now: datetime,
) -> bool:
    """Send the owner a reminder (kind: before, after or renewed) with a new link."""
    replaces = item.token_hash is not None
    token = _new_link(session, item, now=now)
    if token is None:
        return False
    assert item.id is not None and item.token_expires_at is not None
    case = raised_for_case(session=session, improvement_id=item.improvement_id)
    queue_email(
        session=session,
        key=key,
        to=owner.email,
        template="action_reminder",
        context={
            **action_email_context(improvement, item, owner, case),
            "kind": kind,
            "days_overdue": max((now.date() - item.due_on).days, 0),
            "expires_on": item.token_expires_at.date().isoformat(),
            "replaces_earlier_link": replaces,
        },
        links={"url": step_url(item.id, token, case)},
        improvement_id=improvement.id,
    )
    return True


def approvers_of(session: Session, improvement_id: int) -> list[Colleague]:
    """Who approved the improvement, at every level; the fallback approver if nobody did."""
    ids = session.exec(
        select(ApprovalRequest.approver_id)
        .where(
            ApprovalRequest.improvement_id == improvement_id,
            ApprovalRequest.status == ApprovalStatus.approved,
        )
        .order_by(col(ApprovalRequest.level), col(ApprovalRequest.id))
    ).all()
    found = [c for c in (session.get(Colleague, i) for i in dict.fromkeys(ids)) if c is not None]
    if not found:
        fallback = load_fallback(session)
        found = [fallback] if fallback is not None else []
    return found


def _escalate(
    session: Session,
    improvement: Improvement,
    item: ActionItem,
    owner: Colleague | None,
    *,
    now: datetime,
) -> bool:
    """Tell the approvers the item is late, once; True when someone was told."""
    assert improvement.id is not None and item.id is not None
    days = (now.date() - item.due_on).days
    told = []
    for approver in approvers_of(session, improvement.id):
        key = f"action:{item.id}:escalation:{approver.id}"
        if _queued(session, key):
            continue
        queue_email(
            session=session,
            key=key,
            to=approver.email,
            template="action_escalation",
            context={
                "approver_name": approver.name,
                "reference": improvement.reference,
                "title": improvement.title,
                "action_title": item.title,
                "due_on": item.due_on.isoformat(),
                "days_overdue": days,
                "owner_name": owner.name if owner else "nobody",
                "owner_email": owner.email if owner else "",
                "url_improvement": f"{settings.base_url}/improvements/{improvement.id}",
            },
            improvement_id=improvement.id,
        )
        told.append(approver.name)
    if not told:
        return False
    note(
        session=session,
        improvement_id=improvement.id,
        status=improvement.status,
        actor=SWEEP,
        channel=Channel.sweep,
        reason=f"Step {item.position} “{item.title}” is {days} days overdue"
        f" ({owner.name if owner else 'no owner'}); told {', '.join(told)}",
    )
    return True


def open_people_items(session: Session) -> list[tuple[ActionItem, Improvement]]:
    """Open items a person does, of improvements in progress, oldest first."""
    rows = session.exec(
        select(ActionItem, Improvement)
        .join(Improvement, col(Improvement.id) == col(ActionItem.improvement_id))
        .where(
            col(ActionItem.status) == ActionStatus.open,
            col(ActionItem.automatic_step).is_(None),
            col(Improvement.status) == Status.in_progress,
        )
        .order_by(col(ActionItem.due_on), col(ActionItem.id))
    ).all()
    return [(item, improvement) for item, improvement in rows]


def remind_and_escalate_actions(*, session: Session, now: datetime) -> dict[str, int]:
    """Remind owners of open items, renew expiring links and escalate late items, uncommitted.

    - from REMIND_BEFORE before the due date: one reminder with a new link;
    - from REMIND_AFTER after it: another, again with a new link;
    - otherwise, a link about to expire (or none at all): a new one, in a reminder;
    - from ESCALATE_AFTER after it: the approvers are told, once.
    Each email has an idempotency key, so a second run at the same `now` changes nothing.
    """
    counts = {"reminded": 0, "renewed": 0, "escalated": 0}
    today = now.date()
    for item, improvement in open_people_items(session):
        assert item.id is not None
        owner = session.get(Colleague, item.owner_id) if item.owner_id is not None else None
        if today >= item.due_on + ESCALATE_AFTER and _escalate(
            session, improvement, item, owner, now=now
        ):
            counts["escalated"] += 1
        if owner is None:
            continue  # nobody to remind; the escalation names the gap
        stage = (
            "after"
            if today >= item.due_on + REMIND_AFTER
            else "before"
            if today >= item.due_on - REMIND_BEFORE
            else None
        )
        key = f"action:{item.id}:reminder:{stage}"
        if stage is not None and not _queued(session, key):
            if _remind(session, improvement, item, owner, key=key, kind=stage, now=now):
                counts["reminded"] += 1
            continue
        expiring = item.token_expires_at is None or now >= item.token_expires_at - RENEW_AHEAD
        if item.token_hash is None or expiring:
            # Keyed by the link it replaces: once renewed, the new link is not expiring.
            key = f"action:{item.id}:renewal:{(item.token_hash or 'none')[:16]}"
            if not _queued(session, key) and _remind(
                session, improvement, item, owner, key=key, kind="renewed", now=now
            ):
                counts["renewed"] += 1
    return counts


def reassign_action(
    *,
    session: Session,
    action_id: int,
    to_email: str,
    by: str,
    channel: Channel = Channel.cli,
    now: datetime | None = None,
) -> ActionItem:
    """Give an open item to someone else, with a new link; the old link says it was replaced.

    The new owner gets an action_assigned email; the history says who moved it. Caller commits.
    """
    now = now or utcnow()
    item = session.get(ActionItem, action_id)
    if item is None:
        raise NotFound("action", action_id)
    errors: dict[str, str] = {}
    if not by.strip():
        errors["by"] = "say who is moving it"
    if item.status != ActionStatus.open:
        errors["action"] = f"is {item.status}; only an open action can be reassigned"
    elif item.automatic_step is not None:
        errors["action"] = f"is carried out automatically ({item.automatic_step}); nobody owns it"
    email = to_email.strip().lower()
    owner = session.exec(select(Colleague).where(Colleague.email == email)).first()
    if owner is None:
        raise NotFound("colleague", email)
    if not owner.active:
        errors["to"] = f"{owner.name} is no longer active"
    elif owner.id == item.owner_id:
        errors["to"] = f"{owner.name} already owns it"
    if errors:
        raise InvalidInput(errors)
    previous = session.get(Colleague, item.owner_id) if item.owner_id is not None else None
    improvement = get_improvement(session=session, improvement_id=item.improvement_id)
    token = _new_link(session, item, now=now, owner_id=owner.id)
    case = raised_for_case(session=session, improvement_id=item.improvement_id)
    if token is None:
        raise InvalidInput({"action": f"is {item.status}; only an open action can be reassigned"})
    assert item.token_hash is not None
    queue_email(
        session=session,
        # One per link, so a second reassignment to the same person sends again.
        key=f"action:{action_id}:assigned:{item.token_hash[:16]}",
        to=owner.email,
        template="action_assigned",
        context={
            **action_email_context(improvement, item, owner, case),
            "reassigned_from": previous.name if previous else "",
        },
        links={"url": step_url(action_id, token, case)},
        improvement_id=improvement.id,
    )
    note(
        session=session,
        improvement_id=item.improvement_id,
        status=improvement.status,
        actor=by.strip(),
        channel=channel,
        reason=f"Step {item.position} “{item.title}” moved from "
        f"{previous.name if previous else 'nobody'} to {owner.name}",
    )
    log.info("action %s of %s reassigned to %s by %s", action_id, improvement.reference, email, by)
    return item
