"""Decisions: record an approver's answer once, then move the improvement on and tell the submitter.

Asking is in tasks/approvals.py; reminding and escalating the unanswered in tasks/escalation.py.
"""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from improve.errors import InvalidInput, LinkRefused, NotFound
from improve.settings import settings
from models import ApprovalRequest, ApprovalStatus, Channel, Colleague, Improvement, Status
from models.db import utcnow
from tasks import links
from tasks.approvals import approval_requests, get_colleague, request_approvals
from tasks.lifecycle import get_improvement, lock_improvement, move, note
from tasks.mail import queue_email
from tasks.offers import awaits_customer
from tasks.routing import levels_for

REJECTION_NEEDS_A_REASON = "Please say why, so the submitter can learn from it"
DECIDED = (ApprovalStatus.approved, ApprovalStatus.rejected)


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
    improvement = lock_improvement(session=session, improvement_id=approval.improvement_id)
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
    approver = get_colleague(session, approval.approver_id)
    levels = levels_for(improvement, approval_requests(session, improvement.id))  # type: ignore[arg-type]
    reason = f"{_decision_sentence(session, approval)} at level {approval.level} of {levels}"
    note(
        session=session,
        improvement_id=approval.improvement_id,
        status=Status.awaiting_approval,
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
    improvement = lock_improvement(session=session, improvement_id=improvement_id)
    if improvement.status != Status.awaiting_approval:
        return "nothing"
    requests = approval_requests(session, improvement_id)
    step, level = next_step(improvement, requests)
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
        improvement = get_improvement(session=session, improvement_id=improvement_id)
        if next_step(improvement, requests)[0] in ("next_level", "approved", "rejected"):
            due.append(improvement_id)
    return due


def next_step(improvement: Improvement, requests: Sequence[ApprovalRequest]) -> tuple[str, int]:
    """What the answers so far call for, and the level it concerns (pure): "rejected",
    "approved", "next_level" (the next level is not asked yet) or "waiting"."""
    rejected = [r for r in requests if r.status == ApprovalStatus.rejected]
    if rejected:
        return "rejected", rejected[-1].level
    approved = {r.level for r in requests if r.status == ApprovalStatus.approved}
    needed = levels_for(improvement, requests)
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
    submitter = get_colleague(session, improvement.submitter_id)
    approver = get_colleague(session, decision.approver_id)
    principal = (
        session.get(Colleague, decision.on_behalf_of_id) if decision.on_behalf_of_id else None
    )
    if approved and awaits_customer(session=session, improvement_id=improvement.id):  # type: ignore[arg-type]
        next_steps = (
            "It is an alternative for a customer whose need cannot be met: they are offered it "
            "next, with any other approved alternatives, and it is planned only if they choose it."
        )
    elif approved:
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


def _decision_sentence(session: Session, request: ApprovalRequest) -> str:
    """ "Priya Shah approved on behalf of Sam Lee": the words the audit trail keeps."""
    approver = get_colleague(session, request.approver_id)
    sentence = f"{approver.name} {request.status}"
    if request.on_behalf_of_id is not None:
        sentence += f" on behalf of {get_colleague(session, request.on_behalf_of_id).name}"
    return sentence
