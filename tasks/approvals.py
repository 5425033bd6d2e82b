"""Approvals: ask the colleagues with authority, record their answers, and move the idea on."""

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from improve.errors import (
    IllegalTransition,
    ImprovementNotFound,
    InvalidInput,
    LinkRefused,
    NotFound,
)
from improve.formatting import duration, money
from improve.settings import settings
from models import (
    ApprovalRequest,
    ApprovalStatus,
    Authority,
    Channel,
    Colleague,
    Improvement,
    Status,
    Transition,
)
from models.db import utcnow
from tasks import links
from tasks.lifecycle import move
from tasks.mail import queue_email
from tasks.routing import (
    Route,
    choose_replacement,
    levels_needed,
    load_fallback,
    routes_for,
)

log = logging.getLogger(__name__)

SWEEP = "sweep"
REJECTION_NEEDS_A_REASON = "Please say why, so the submitter can learn from it"
DECIDED = (ApprovalStatus.approved, ApprovalStatus.rejected)


# ---------------------------------------------------------------------------------------------
# Asking


def route_improvement(
    *, session: Session, improvement_id: int, actor: str, channel: Channel
) -> list[ApprovalRequest]:
    """Ask the level-1 approvers of a submitted improvement and move it to awaiting_approval.

    A goodwill gesture within the submitter's own authority is approved at once and nobody is
    asked (an empty list). Already routed: nothing changes and the existing requests come back.
    """
    improvement = _lock_improvement(session, improvement_id)  # two routers at once: one asks
    if improvement.status == Status.identified:
        raise IllegalTransition(improvement.reference, improvement.status, Status.awaiting_approval)
    if improvement.status != Status.submitted:
        return _requests(session, improvement_id)
    if not routes_for(session=session, improvement_id=improvement_id, levels=[1]):
        submitter = session.get(Colleague, improvement.submitter_id)
        move(
            session=session,
            improvement_id=improvement_id,
            to=Status.approved,
            actor=actor,
            channel=channel,
            reason=(
                "Approved within the submitter's own goodwill authority: "
                f"{submitter.name if submitter else 'the submitter'}'s goodwill limit covers "
                f"the estimated {money(improvement.estimated_cost)}"
            ),
        )
        return []
    requests = request_approvals(
        session=session, improvement_id=improvement_id, level=1, actor=actor, channel=channel
    )
    # A second router waited at the lock above and found it routed; should one get here anyway,
    # the conditional move fails and takes its requests and emails with it.
    move(
        session=session,
        improvement_id=improvement_id,
        to=Status.awaiting_approval,
        actor=actor,
        channel=channel,
        reason=_asked_sentence(session, requests, _levels(improvement, requests)),
    )
    return requests


def request_approvals(
    *, session: Session, improvement_id: int, level: int, actor: str, channel: Channel
) -> list[ApprovalRequest]:
    """Ask the approver for one level, with a link and the reason they were chosen.

    Idempotent per (improvement, level): once a level has been asked, the same requests return.
    Whoever decided another level is not asked again, so two levels mean two people.
    """
    improvement = _lock_improvement(session, improvement_id)
    existing = [r for r in _requests(session, improvement_id) if r.level == level]
    if existing:
        return existing
    routes = routes_for(
        session=session,
        improvement_id=improvement_id,
        levels=[level],
        exclude=_deciders(session, improvement_id, other_than_level=level),
    )
    now = utcnow()
    created = [_ask(session, improvement, route, now=now) for route in routes]
    if created and improvement.status == Status.awaiting_approval:
        _note(
            session,
            improvement_id,
            actor=actor,
            channel=channel,
            reason=_asked_sentence(session, created, _levels(improvement, created)),
        )
    return created


def _ask(
    session: Session,
    improvement: Improvement,
    route: Route,
    *,
    now: datetime,
    escalated_from_name: str | None = None,
) -> ApprovalRequest:
    """One approval request with a fresh token, and its email queued in the same transaction."""
    assert improvement.id is not None
    token, token_hash = links.new_token()
    request = ApprovalRequest(
        improvement_id=improvement.id,
        approver_id=route.approver_id,
        on_behalf_of_id=route.on_behalf_of_id,
        level=route.level,
        reason=route.reason[:1000],
        token_hash=token_hash,
        expires_at=now + timedelta(days=settings.approval_expiry_days),
        created_at=now,  # the sweep measures waiting from here, also when it runs with its own now
    )
    session.add(request)
    session.flush()
    _queue_request_email(
        session,
        improvement,
        request,
        token,
        key=f"approval:{request.id}:request",
        escalated_from_name=escalated_from_name,
    )
    return request


def _queue_request_email(
    session: Session,
    improvement: Improvement,
    request: ApprovalRequest,
    token: str,
    *,
    key: str,
    reminder: bool = False,
    escalated_from_name: str | None = None,
) -> None:
    assert request.id is not None
    approver = _colleague(session, request.approver_id)
    principal = session.get(Colleague, request.on_behalf_of_id) if request.on_behalf_of_id else None
    context: dict[str, Any] = {
        "approver_name": approver.name,
        "on_behalf_of_name": principal.name if principal else None,
        "reference": improvement.reference,
        "title": improvement.title,
        "description": improvement.description,
        "category": str(improvement.category),
        "submitter_name": _submitter_name(session, improvement),
        "estimated_cost": float(improvement.estimated_cost),
        "annual_saving": float(improvement.annual_saving),
        "kwh": float(improvement.kwh),
        "kg_co2e": float(improvement.kg_co2e),
        "kg_waste": float(improvement.kg_waste),
        "level": request.level,
        "levels": _levels(improvement, _requests(session, request.improvement_id)),
        "reason": request.reason,
        "expires_on": f"{request.expires_at:%Y-%m-%d}",
        "reminder": reminder,
        "escalated_from_name": escalated_from_name,
        # A reminder carries a new link and the earlier one stops working (see remind_and_escalate).
        "replaces_earlier_link": reminder,
    }
    queue_email(
        session=session,
        key=key,
        to=approver.email,
        template="approval_request",
        context=context,
        links={"url": links.approval_url(request.id, token)},
        improvement_id=improvement.id,
    )


# ---------------------------------------------------------------------------------------------
# Deciding


def record_decision(
    *,
    session: Session,
    approval_id: int,
    approve: bool,
    comment: str,
    channel: Channel,
    token: str | None = None,
) -> ApprovalRequest:
    """Record an approver's answer once (pending → approved or rejected), uncommitted.

    Two answers at the same instant (the same link twice, or two approvers at one level): exactly
    one is recorded and the other gets LinkRefused "used". A decision withdraws the other requests
    pending at its level. The history says who decided, for whom, and through which channel.
    A `token` (from an emailed link) must still be the request's live one when the decision is
    written: a reminder that replaced it a moment earlier wins. The caller commits, then emits
    APPROVAL_DECIDED.
    """
    comment = (comment or "").strip()
    if not approve and not comment:
        raise InvalidInput({"comment": REJECTION_NEEDS_A_REASON})
    approval = session.get(ApprovalRequest, approval_id)
    if approval is None:
        raise NotFound("approval request", approval_id)
    # Decisions on one improvement take turns. Taking the improvement first also keeps two
    # deciders from deadlocking on each other's request rows when each withdraws the other's.
    improvement = _lock_improvement(session, approval.improvement_id)
    if improvement.status != Status.awaiting_approval:
        raise LinkRefused(
            "used",
            f"{improvement.reference} is no longer waiting for approval: it is "
            f"{str(improvement.status).replace('_', ' ')}.",
            410,
        )
    now = utcnow()
    status = ApprovalStatus.approved if approve else ApprovalStatus.rejected
    live = [col(ApprovalRequest.token_hash) == links.hash_token(token)] if token is not None else []
    recorded = session.execute(
        update(ApprovalRequest)
        .where(
            col(ApprovalRequest.id) == approval_id,
            col(ApprovalRequest.status) == ApprovalStatus.pending,
            col(ApprovalRequest.expires_at) > now,
            *live,
        )
        .values(status=status, decided_at=now, comment=comment[:2000])
    )
    session.refresh(approval)
    if recorded.rowcount != 1:  # type: ignore[attr-defined]
        if token is not None and approval.token_hash != links.hash_token(token):
            raise links.refusal(session, links.hash_token(token))
        if approval.status == ApprovalStatus.pending:
            raise LinkRefused(
                "expired", f"This link expired on {approval.expires_at:%Y-%m-%d %H:%M} UTC.", 410
            )
        when = f" on {approval.decided_at:%Y-%m-%d %H:%M} UTC" if approval.decided_at else ""
        raise LinkRefused(
            "used",
            "This link has already been used or withdrawn: "
            f"the request is {approval.status}{when}.",
            410,
        )
    session.execute(
        update(ApprovalRequest)
        .where(
            col(ApprovalRequest.improvement_id) == approval.improvement_id,
            col(ApprovalRequest.level) == approval.level,
            col(ApprovalRequest.status) == ApprovalStatus.pending,
            col(ApprovalRequest.id) != approval_id,
        )
        .values(status=ApprovalStatus.superseded)
    )
    approver = _colleague(session, approval.approver_id)
    levels = _levels(improvement, _requests(session, improvement.id))  # type: ignore[arg-type]
    reason = f"{_decision_sentence(session, approval)} at level {approval.level} of {levels}"
    _note(
        session,
        approval.improvement_id,
        actor=approver.email,
        channel=channel,
        reason=f"{reason}: {comment}" if comment else reason,
    )
    return approval


def advance_after_decision(
    *, session: Session, improvement_id: int, actor: str, channel: Channel = Channel.flow
) -> str:
    """Move an improvement on after a decision: "next_level", "approved", "rejected", "waiting",
    or "nothing" when it is not awaiting approval (already advanced: a repeat changes nothing).

    The submitter hears the outcome by email; a rejection carries the approver's reason.
    """
    # The same event twice at once: the second waits here, then finds the work done.
    improvement = _lock_improvement(session, improvement_id)
    if improvement.status != Status.awaiting_approval:
        return "nothing"
    requests = _requests(session, improvement_id)
    step, level = _next_step(improvement, requests)
    if step == "next_level":
        request_approvals(
            session=session,
            improvement_id=improvement_id,
            level=level,
            actor=actor,
            channel=channel,
        )
    elif step == "rejected":
        rejection = [r for r in requests if r.status == ApprovalStatus.rejected][-1]
        move(
            session=session,
            improvement_id=improvement_id,
            to=Status.rejected,
            actor=actor,
            channel=channel,
            reason=f"Rejected: {_decision_sentence(session, rejection)} "
            f"at level {rejection.level}: {rejection.comment}",
        )
        _withdraw_pending(session, improvement_id)
        _queue_decision_email(session, improvement, rejection, approved=False)
    elif step == "approved":
        decisions = [r for r in requests if r.status == ApprovalStatus.approved]
        move(
            session=session,
            improvement_id=improvement_id,
            to=Status.approved,
            actor=actor,
            channel=channel,
            reason="Approved: "
            + "; ".join(f"{_decision_sentence(session, r)} at level {r.level}" for r in decisions),
        )
        _withdraw_pending(session, improvement_id)
        _queue_decision_email(session, improvement, decisions[-1], approved=True)
    return step


def undecided_improvements_needing_advance(
    *, session: Session, decided_before: datetime | None = None
) -> list[int]:
    """Improvements awaiting approval whose answers say they should have moved on (a lost event).

    `decided_before` leaves alone what was decided after it, so the sweep does not race the
    flow the decision's own event is starting right now.
    """
    candidates = session.exec(
        select(ApprovalRequest)
        .join(Improvement, col(Improvement.id) == col(ApprovalRequest.improvement_id))
        .where(col(Improvement.status) == Status.awaiting_approval)
        .order_by(col(ApprovalRequest.improvement_id), col(ApprovalRequest.id))
    ).all()
    by_improvement: dict[int, list[ApprovalRequest]] = {}
    for request in candidates:
        by_improvement.setdefault(request.improvement_id, []).append(request)
    due: list[int] = []
    for improvement_id, requests in by_improvement.items():
        decided = [r.decided_at for r in requests if r.status in DECIDED and r.decided_at]
        if not decided or (decided_before is not None and max(decided) > decided_before):
            continue
        improvement = _improvement(session, improvement_id)
        if _next_step(improvement, requests)[0] in ("next_level", "approved", "rejected"):
            due.append(improvement_id)
    return due


def _next_step(improvement: Improvement, requests: Sequence[ApprovalRequest]) -> tuple[str, int]:
    """What the answers so far call for, and the level it concerns (pure)."""
    rejected = [r for r in requests if r.status == ApprovalStatus.rejected]
    if rejected:
        return "rejected", rejected[-1].level
    approved = {r.level for r in requests if r.status == ApprovalStatus.approved}
    needed = _levels(improvement, requests)
    for level in range(1, needed + 1):
        if level in approved:
            continue
        asked = any(r.level == level for r in requests)
        if level > 1 and not asked:
            return "next_level", level
        return "waiting", level
    return "approved", needed


def _queue_decision_email(
    session: Session, improvement: Improvement, decision: ApprovalRequest, *, approved: bool
) -> None:
    if improvement.submitter_id is None:  # detected or triggered: nobody to tell
        return
    submitter = _colleague(session, improvement.submitter_id)
    approver = _colleague(session, decision.approver_id)
    principal = (
        session.get(Colleague, decision.on_behalf_of_id) if decision.on_behalf_of_id else None
    )
    if approved:
        next_steps = (
            "An action plan is being drawn up now. Each step's owner will get an email with what "
            "to do and by when, and you can follow the progress on the status page."
        )
    else:
        next_steps = (
            "Thank you for putting the idea forward: ideas that are not taken up now often shape "
            "the next one. If the comment points to something you can change, you are welcome to "
            "revise the idea and submit it again, or talk it over with "
            f"{approver.name.split()[0]}."
        )
    outcome = "approved" if approved else "rejected"
    queue_email(
        session=session,
        key=f"decision:{improvement.id}:{outcome}",
        to=submitter.email,
        template="decision",
        context={
            "submitter_name": submitter.name,
            "reference": improvement.reference,
            "title": improvement.title,
            "approved": approved,
            "approver_name": (
                f"{approver.name} (on behalf of {principal.name})" if principal else approver.name
            ),
            "comment": decision.comment,
            "next_steps": next_steps,
            "url_status": f"{settings.base_url}/improvements/{improvement.id}",
        },
        improvement_id=improvement.id,
    )


# ---------------------------------------------------------------------------------------------
# The sweep: reminders, escalations, expiry


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
        improvement = _lock_improvement(session, request.improvement_id)
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
                for r in _requests(session, request.improvement_id)
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
    _queue_request_email(
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
    approver = _colleague(session, request.approver_id)
    same_level = [r for r in _requests(session, improvement.id) if r.level == request.level]
    others = _deciders(session, improvement.id, other_than_level=request.level)
    common: dict[str, Any] = {
        "level": request.level,
        "category": improvement.category,
        "estimated_cost": improvement.estimated_cost,
        "submitter_id": improvement.submitter_id,
        "colleagues": session.exec(select(Colleague)).all(),
        "authorities": session.exec(
            select(Authority).where(Authority.category == improvement.category)
        ).all(),
        "fallback": load_fallback(session),
        "today": now.date(),
        "approver_id": request.approver_id,
        "on_behalf_of_id": request.on_behalf_of_id,
        "why": why,
    }
    route = choose_replacement(**common, asked={*others, *(r.approver_id for r in same_level)})
    if route is None and relax:
        route = choose_replacement(**common, asked=others)
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
        _note(
            session,
            improvement.id,
            actor=SWEEP,
            channel=Channel.sweep,
            reason=f"{approver.name} {why}; nobody else can be asked at level {request.level}",
        )
        return False
    new = _ask(session, improvement, route, now=now, escalated_from_name=approver.name)
    _note(
        session,
        improvement.id,
        actor=SWEEP,
        channel=Channel.sweep,
        reason=f"Escalated level {request.level}: " + _asked_sentence(session, [new], None),
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


def _withdraw_pending(session: Session, improvement_id: int) -> None:
    """The improvement is decided: links still out for it must no longer act."""
    session.execute(
        update(ApprovalRequest)
        .where(
            col(ApprovalRequest.improvement_id) == improvement_id,
            col(ApprovalRequest.status) == ApprovalStatus.pending,
        )
        .values(status=ApprovalStatus.superseded)
    )


# ---------------------------------------------------------------------------------------------
# Small helpers


def _lock_improvement(session: Session, improvement_id: int) -> Improvement:
    """Take the improvement's row for this transaction, so changes to its approvals take turns.

    A no-op UPDATE rather than SELECT ... FOR UPDATE because it works on both databases: a row
    lock on PostgreSQL, the write lock on SQLite (which otherwise lets two readers decide alike).
    """
    session.execute(
        update(Improvement)
        .where(col(Improvement.id) == improvement_id)
        .values(updated_at=Improvement.updated_at)
    )
    return _improvement(session, improvement_id)


def _improvement(session: Session, improvement_id: int) -> Improvement:
    improvement = session.get(Improvement, improvement_id, populate_existing=True)
    if improvement is None:
        raise ImprovementNotFound(improvement_id)
    return improvement


def _colleague(session: Session, colleague_id: int) -> Colleague:
    colleague = session.get(Colleague, colleague_id)
    if colleague is None:
        raise NotFound("colleague", colleague_id)
    return colleague


def _requests(session: Session, improvement_id: int) -> list[ApprovalRequest]:
    return list(
        session.exec(
            select(ApprovalRequest)
            .where(col(ApprovalRequest.improvement_id) == improvement_id)
            .order_by(col(ApprovalRequest.id))
            .execution_options(populate_existing=True)
        ).all()
    )


def _deciders(session: Session, improvement_id: int, *, other_than_level: int) -> set[int]:
    """Who approved another level (and whom they stood in for): not to be asked again."""
    ids: set[int] = set()
    for request in _requests(session, improvement_id):
        if request.level != other_than_level and request.status == ApprovalStatus.approved:
            ids.add(request.approver_id)
            if request.on_behalf_of_id is not None:
                ids.add(request.on_behalf_of_id)
    return ids


def _levels(improvement: Improvement, requests: Sequence[ApprovalRequest]) -> int:
    """Levels this improvement needs: by its cost now, and never fewer than already asked."""
    by_cost = levels_needed(improvement.estimated_cost, settings.two_level_threshold)
    return max([by_cost, *(r.level for r in requests)])


def _submitter_name(session: Session, improvement: Improvement) -> str:
    if improvement.submitter_id is None:
        return f"Improve ({improvement.source} improvement)"
    return _colleague(session, improvement.submitter_id).name


def _decision_sentence(session: Session, request: ApprovalRequest) -> str:
    """ "Priya Shah approved on behalf of Sam Lee": the words the audit trail keeps."""
    approver = _colleague(session, request.approver_id)
    sentence = f"{approver.name} {request.status}"
    if request.on_behalf_of_id is not None:
        sentence += f" on behalf of {_colleague(session, request.on_behalf_of_id).name}"
    return sentence


def _asked_sentence(
    session: Session, requests: Sequence[ApprovalRequest], levels: int | None
) -> str:
    parts = []
    for request in requests:
        approver = _colleague(session, request.approver_id)
        who = approver.name
        if request.on_behalf_of_id is not None:
            who += f" (on behalf of {_colleague(session, request.on_behalf_of_id).name})"
        of = f" of {levels}" if levels else ""
        parts.append(f"Asked {who} for level {request.level}{of} approval: {request.reason}")
    return "; ".join(parts)


def _note(
    session: Session, improvement_id: int, *, actor: str, channel: Channel, reason: str
) -> None:
    """A history row for something that happened while the status stayed awaiting_approval.

    lifecycle.move records changes of status; a decision at one of two levels, a second level
    asked, an escalation change none, yet the audit trail must show who did them and how.
    """
    session.add(
        Transition(
            improvement_id=improvement_id,
            from_status=Status.awaiting_approval,
            to_status=Status.awaiting_approval,
            actor=actor[:254],
            channel=channel,
            reason=reason[:2000],
        )
    )
