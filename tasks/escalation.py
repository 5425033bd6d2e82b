"""Escalation: the sweep's reminders, escalations and expiries of unanswered approval requests.

An approver who has not answered is reminded with a new link; a long silence or an expired
request goes to someone else at the same level; a request the improvement no longer needs is
withdrawn. Asking itself is in tasks/approvals.py.
"""

import logging
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from improve.formatting import duration
from improve.settings import settings
from models import ApprovalRequest, ApprovalStatus, Channel, Improvement, Status
from tasks import links
from tasks.approvals import (
    approval_requests,
    ask,
    asked_sentence,
    deciders,
    get_colleague,
    queue_request_email,
)
from tasks.lifecycle import lock_improvement, note
from tasks.routing import choose_replacement, load_organisation

log = logging.getLogger(__name__)

SWEEP = "sweep"  # the actor the history names for what the sweep did


def remind_and_escalate(*, session: Session, now: datetime) -> dict[str, int]:
    """Remind, escalate and expire pending approval requests as of `now`, uncommitted.

    - waiting longer than settings.reminder_after: one reminder, with a new link;
    - longer than settings.escalate_after: withdrawn and asked of the approver's deputy, else the
      next covering authority, else the fallback (the email says whom it was escalated from);
    - past its expiry: expired, and asked of someone else the same way unless another request
      is still pending at that level.
    Every step is recorded on the request, so a second run at the same `now` changes nothing.
    """
    counts = {"reminded": 0, "escalated": 0, "expired": 0, "withdrawn": 0}
    pending = session.exec(
        select(ApprovalRequest)
        .where(col(ApprovalRequest.status) == ApprovalStatus.pending)
        .order_by(col(ApprovalRequest.id))
    ).all()
    for request in pending:
        improvement = lock_improvement(session=session, improvement_id=request.improvement_id)
        session.refresh(request)
        if request.status != ApprovalStatus.pending:
            continue  # decided or handed on since the list was read
        if improvement.status != Status.awaiting_approval:
            # Cancelled, or moved on without this request: its link must not act any more.
            if _set_status(session, request, ApprovalStatus.superseded):
                counts["withdrawn"] += 1
            continue
        waited = now - request.created_at
        if now >= request.expires_at:
            if not _set_status(session, request, ApprovalStatus.expired):
                continue
            counts["expired"] += 1
            still_pending = [
                r
                for r in approval_requests(session, request.improvement_id)
                if r.level == request.level and r.status == ApprovalStatus.pending
            ]
            if not still_pending:
                why = f"let the request expire on {request.expires_at:%Y-%m-%d}"
                if _escalate(session, improvement, request, why=why, now=now, relax=True):
                    counts["escalated"] += 1
        elif waited >= settings.escalate_after and request.escalated_at is None:
            why = f"has not answered in {duration(waited)}"
            if _escalate(session, improvement, request, why=why, now=now):
                counts["escalated"] += 1
            elif request.reminded_at is None and _remind(session, improvement, request, now=now):
                # Nobody else can take it: the approver at least hears again, in this same run,
                # so that a second run finds nothing left to do.
                counts["reminded"] += 1
        elif waited >= settings.reminder_after and request.reminded_at is None:
            if _remind(session, improvement, request, now=now):
                counts["reminded"] += 1
    return counts


def _remind(
    session: Session, improvement: Improvement, request: ApprovalRequest, *, now: datetime
) -> bool:
    """Send the approver a reminder with a new link; False if it was reminded meanwhile."""
    # Only the hash of the first token is stored, so the first link cannot be sent again. The
    # reminder carries a new token and the old link stops working (the email says so): one live
    # link per request, so a forwarded first email cannot decide once a reminder has gone out.
    token, token_hash = links.new_token()
    replaced_hash = request.token_hash
    reminded = session.execute(
        update(ApprovalRequest)
        .where(
            col(ApprovalRequest.id) == request.id,
            col(ApprovalRequest.status) == ApprovalStatus.pending,
            col(ApprovalRequest.reminded_at).is_(None),
        )
        .values(token_hash=token_hash, reminded_at=now)
    )
    session.refresh(request)
    if reminded.rowcount != 1:  # type: ignore[attr-defined]
        return False
    links.retire(
        session=session, token_hash=replaced_hash, kind="approval", target_id=request.id, at=now
    )
    queue_request_email(
        session, improvement, request, token, key=f"approval:{request.id}:reminder", reminder=True
    )
    return True


def _escalate(
    session: Session,
    improvement: Improvement,
    request: ApprovalRequest,
    *,
    why: str,
    now: datetime,
    relax: bool = False,
) -> bool:
    """Ask someone else at the request's level; True when a new request was made.

    `relax` (after an expiry) allows asking again someone asked before at this level rather than
    leaving the level with nobody pending.
    """
    assert improvement.id is not None
    approver = get_colleague(session, request.approver_id)
    same_level = [r for r in approval_requests(session, improvement.id) if r.level == request.level]
    others = deciders(session, improvement.id, other_than_level=request.level)
    replacement = partial(
        choose_replacement,
        org=load_organisation(session=session, improvement=improvement, today=now.date()),
        level=request.level,
        approver_id=request.approver_id,
        on_behalf_of_id=request.on_behalf_of_id,
        why=why,
    )
    route = replacement(asked={*others, *(r.approver_id for r in same_level)})
    if route is None and relax:
        route = replacement(asked=others)
    if request.status == ApprovalStatus.pending:
        # Withdrawn only when someone takes over; with nobody else to ask it stays with the
        # approver, marked so that the next sweep does not try again.
        values: dict[str, Any] = {"escalated_at": now}
        if route is not None:
            values["status"] = ApprovalStatus.superseded
        changed = session.execute(
            update(ApprovalRequest)
            .where(
                col(ApprovalRequest.id) == request.id,
                col(ApprovalRequest.status) == ApprovalStatus.pending,
                col(ApprovalRequest.escalated_at).is_(None),
            )
            .values(**values)
        )
        session.refresh(request)
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            return False  # decided or escalated meanwhile
    else:
        request.escalated_at = now
        session.add(request)
    if route is None:
        log.warning(
            "%s level %s: %s %s and nobody else can be asked",
            improvement.reference,
            request.level,
            approver.name,
            why,
        )
        note(
            session=session,
            improvement_id=improvement.id,
            status=Status.awaiting_approval,
            actor=SWEEP,
            channel=Channel.sweep,
            reason=f"{approver.name} {why}; nobody else can be asked at level {request.level}",
        )
        return False
    new = ask(session, improvement, route, now=now, escalated_from_name=approver.name)
    note(
        session=session,
        improvement_id=improvement.id,
        status=Status.awaiting_approval,
        actor=SWEEP,
        channel=Channel.sweep,
        reason=f"Escalated level {request.level}: " + asked_sentence(session, [new], None),
    )
    return True


def _set_status(session: Session, request: ApprovalRequest, status: ApprovalStatus) -> bool:
    """pending → status, only if still pending (a decision at this moment wins)."""
    changed = session.execute(
        update(ApprovalRequest)
        .where(
            col(ApprovalRequest.id) == request.id,
            col(ApprovalRequest.status) == ApprovalStatus.pending,
        )
        .values(status=status)
    )
    session.refresh(request)
    return changed.rowcount == 1  # type: ignore[attr-defined]
