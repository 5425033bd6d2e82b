"""Escalation: the sweep's reminders, escalations and expiries of unanswered approval requests,
and the improvements that are stuck with nobody asked and nothing open.

An approver who has not answered is reminded with a new link; a long silence or an expired
request goes to someone else at the same level; a request the improvement no longer needs is
withdrawn. When every request at a level has lapsed and nobody new can be asked, the operations
fallback is asked again: an improvement awaiting approval always has a live request, or shows
on the dashboard as stuck with the reason. Asking itself is in tasks/approvals.py.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from improve.formatting import duration
from improve.settings import settings
from models import (
    ActionItem,
    ActionStatus,
    ApprovalRequest,
    ApprovalStatus,
    Channel,
    Colleague,
    Improvement,
    Status,
)
from tasks import links
from tasks.approvals import (
    approval_requests,
    ask,
    asked_sentence,
    deciders,
    get_colleague,
    queue_request_email,
    request_approvals,
)
from tasks.decisions import DECIDED, next_step
from tasks.lifecycle import lock_improvement, note
from tasks.offers import awaits_customer
from tasks.routing import (
    NoApprover,
    Organisation,
    Route,
    choose_replacement,
    load_organisation,
    routes_for,
)

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
    org = load_organisation(session=session, improvement=improvement, today=now.date())
    replacement = partial(
        choose_replacement,
        org=org,
        level=request.level,
        approver_id=request.approver_id,
        on_behalf_of_id=request.on_behalf_of_id,
        why=why,
    )
    route = replacement(asked={*others, *(r.approver_id for r in same_level)})
    if route is None and relax:
        route = replacement(asked=others)
    again = False
    if route is None and relax:
        # The search above never returns the approver it replaces, so a fallback who let it
        # lapse would leave the level with nobody pending: they are asked again instead.
        route = _ask_again(org, request, approver, asked=others, why=why)
        again = route is not None
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
            reason=f"{approver.name} {why}; nobody else can be asked at level {request.level}"
            + ("" if request.status == ApprovalStatus.pending else STUCK_NOTE),
        )
        return False
    new = ask(session, improvement, route, now=now, escalated_from_name=approver.name)
    what = "Asked again at" if again else "Escalated"
    note(
        session=session,
        improvement_id=improvement.id,
        status=Status.awaiting_approval,
        actor=SWEEP,
        channel=Channel.sweep,
        reason=f"{what} level {request.level}: " + asked_sentence(session, [new], None),
    )
    return True


STUCK_NOTE = "; it waits for operations on the dashboard's stuck list"


def _ask_again(
    org: Organisation,
    request: ApprovalRequest,
    approver: Colleague,
    *,
    asked: set[int],
    why: str,
) -> Route | None:
    """After a lapse with nobody new to ask: the operations fallback again, else the same approver.

    Asking someone a second time, with a fresh link, beats leaving nobody asked at all.
    """
    level = request.level
    reason = f"{approver.name} {why} and nobody new can be asked at level {level}"
    route = org.to_fallback(level, reason, asked)
    if route is None and org.available(approver, asked):
        assert approver.id is not None
        route = Route(level, approver.id, request.on_behalf_of_id, f"{reason}; asked again")
    return route


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


# ---------------------------------------------------------------------------------------------
# Stuck: an improvement in a non-final status with nobody asked and nothing open

# An event starts its flow within seconds; what has not moved on after this long lost its event
# (or its flow). Sooner, the sweep would race the event's own flow and the dashboard would call
# an improvement stuck while its flow is still running.
EVENT_GRACE = timedelta(minutes=1)


@dataclass
class Stuck:
    """An improvement nobody is working on, why, and since when."""

    improvement: Improvement
    reason: str
    since: datetime
    ask_again: bool = False  # awaiting approval with every request lapsed: the sweep asks again


def stuck_improvements(
    *, session: Session, now: datetime, grace: timedelta = EVENT_GRACE
) -> list[Stuck]:
    """Every improvement in a non-final status with nobody asked and nothing open, oldest first.

    - awaiting approval with no pending request (lapsed, or a decision never acted on);
    - approved with no action plan, or in progress with no open action and not completed;
    - submitted and never routed.
    What changed within `grace` of `now` is left out: its own flow is still moving it.
    """
    before = now - grace
    improvements = session.exec(
        select(Improvement)
        .where(
            col(Improvement.status).in_(
                [Status.submitted, Status.awaiting_approval, Status.approved, Status.in_progress]
            )
        )
        .order_by(col(Improvement.id))
    ).all()
    stuck: list[Stuck] = []
    for improvement in improvements:
        found = _why_stuck(session, improvement, now=now)
        if found is not None and found.since <= before:
            stuck.append(found)
    return sorted(stuck, key=lambda s: (s.since, s.improvement.id or 0))


def _why_stuck(session: Session, improvement: Improvement, *, now: datetime) -> Stuck | None:
    assert improvement.id is not None
    status = Status(improvement.status)
    if status == Status.submitted:
        reason = f"submitted on {improvement.created_at:%Y-%m-%d %H:%M} and never routed"
        try:
            routes_for(session=session, improvement_id=improvement.id, today=now.date(), levels=[1])
        except NoApprover as error:
            reason += f": {error}"
        return Stuck(improvement, reason, improvement.created_at)
    if status == Status.awaiting_approval:
        return _why_no_request(session, improvement)
    items = list(
        session.exec(select(ActionItem).where(col(ActionItem.improvement_id) == improvement.id))
    )
    if any(item.status == ActionStatus.open for item in items):
        return None
    if status == Status.approved:
        if awaits_customer(session=session, improvement_id=improvement.id):
            return None  # an alternative offered to a customer: planned once they accept it
        return Stuck(
            improvement,
            f"approved on {improvement.updated_at:%Y-%m-%d %H:%M}, but no action plan was made",
            improvement.updated_at,
        )
    done = [i.completed_at for i in items if i.status == ActionStatus.done and i.completed_at]
    if not items:
        reason = "in progress, but it has no action plan"
    else:
        reason = (
            f"in progress, but no action is open: all {len(items)} are done or cancelled "
            "and it was never completed"
        )
    return Stuck(improvement, reason, max([improvement.updated_at, *done]))


def _why_no_request(session: Session, improvement: Improvement) -> Stuck | None:
    """Awaiting approval with no pending request: why, or None while one is pending."""
    assert improvement.id is not None
    requests = approval_requests(session, improvement.id)
    if any(r.status == ApprovalStatus.pending for r in requests):
        return None
    prefix = "awaiting approval, but no request is open: "
    if not requests:
        return Stuck(improvement, prefix + "nobody was ever asked", improvement.updated_at, True)
    step, level = next_step(improvement, requests)
    if step != "waiting":
        decided = [r for r in requests if r.status in DECIDED and r.decided_at]
        last = decided[-1] if decided else requests[-1]
        when = last.decided_at or last.created_at
        return Stuck(
            improvement,
            f"{prefix}level {last.level} was {last.status} on {when:%Y-%m-%d %H:%M} "
            "and the improvement was never moved on",
            when,
        )
    at_level = [r for r in requests if r.level == level]
    if not at_level:
        return Stuck(
            improvement, f"{prefix}nobody was ever asked at level {level}", improvement.updated_at,
            True,
        )  # fmt: skip
    last = at_level[-1]
    who = get_colleague(session, last.approver_id).name
    if last.status == ApprovalStatus.expired:
        what, when = f"expired on {last.expires_at:%Y-%m-%d}", last.expires_at
    else:
        what, when = f"is {last.status}", last.escalated_at or last.created_at
    return Stuck(
        improvement, f"{prefix}the last one, to {who} at level {level}, {what}", when, True
    )


def ask_again(*, session: Session, improvement_id: int, now: datetime) -> bool:
    """Ask someone at the waiting level of an improvement whose requests there all lapsed.

    The deputy, the next covering authority or the fallback, else the fallback (or the last
    approver) once more. Nothing happens when a request is pending or the improvement moved on.
    Uncommitted; True when someone was asked.
    """
    improvement = lock_improvement(session=session, improvement_id=improvement_id)
    if improvement.status != Status.awaiting_approval:
        return False
    found = _why_no_request(session, improvement)
    if found is None or not found.ask_again:
        return False
    requests = approval_requests(session, improvement_id)
    _, level = next_step(improvement, requests)
    at_level = [r for r in requests if r.level == level]
    if not at_level:
        return bool(
            request_approvals(
                session=session,
                improvement_id=improvement_id,
                level=level,
                actor=SWEEP,
                channel=Channel.sweep,
            )
        )
    last = at_level[-1]
    why = (
        f"let the request expire on {last.expires_at:%Y-%m-%d}"
        if last.status == ApprovalStatus.expired
        else f"no longer holds the request ({last.status})"
    )
    return _escalate(session, improvement, last, why=why, now=now, relax=True)
