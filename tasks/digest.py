"""The weekly colleague digest: what was achieved and by whom, and what waits for whom."""

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from improve.settings import settings
from models import (
    ActionItem,
    ActionStatus,
    ApprovalRequest,
    ApprovalStatus,
    Category,
    Colleague,
    Improvement,
    OutboxEmail,
    Status,
)
from tasks.impact import impact_lines
from tasks.mail import queue_email
from tasks.report import MEASURES, completed_between, measured, week_of

TEMPLATE = "colleague_digest"


@dataclass
class Digest:
    """One ISO week: the improvements completed in it, and what waits for whom at its end."""

    period: str
    start: datetime
    end: datetime
    # {"reference", "title", "category", "completed_at", "by": [names], "results": [lines]}
    achieved: list[dict[str, Any]] = field(default_factory=list)
    # Each of MEASURES summed over `achieved`, and "improvements": how many.
    totals: dict[str, float] = field(default_factory=dict)
    # {"colleague_id", "name", "approvals": [...], "actions": [...]}, who has waited longest first
    waiting: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.achieved and not self.waiting

    def as_dict(self) -> dict[str, Any]:
        """JSON for an email's context, with the week's first and last day as people say them."""
        return {
            **asdict(self),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "first_day": self.start.astimezone(settings.zone).date().isoformat(),
            "last_day": (self.end.astimezone(settings.zone).date() - timedelta(days=1)).isoformat(),
        }


def _achievers(session: Session, improvement: Improvement) -> list[str]:
    """Who made it happen: the submitter, then the owners of its steps that are done."""
    owners = session.exec(
        select(ActionItem.owner_id)
        .where(
            ActionItem.improvement_id == improvement.id,
            ActionItem.status == ActionStatus.done,
            col(ActionItem.owner_id).is_not(None),
        )
        .order_by(col(ActionItem.position))
    ).all()
    ids = [improvement.submitter_id, *owners]
    names: list[str] = []
    for colleague_id in dict.fromkeys(i for i in ids if i is not None):  # each once, in order
        colleague = session.get(Colleague, colleague_id)
        if colleague is not None:
            names.append(colleague.name)
    return names


def _waiting(session: Session) -> list[dict[str, Any]]:
    """Open approval requests and open steps a person owns, per colleague, oldest first."""
    people: dict[int, dict[str, Any]] = {}

    def entry(colleague: Colleague) -> dict[str, Any]:
        assert colleague.id is not None
        return people.setdefault(
            colleague.id,
            {"colleague_id": colleague.id, "name": colleague.name, "approvals": [], "actions": []},
        )

    approvals = session.exec(
        select(ApprovalRequest, Improvement, Colleague)
        .join(Improvement, col(Improvement.id) == col(ApprovalRequest.improvement_id))
        .join(Colleague, col(Colleague.id) == col(ApprovalRequest.approver_id))
        .where(
            ApprovalRequest.status == ApprovalStatus.pending,
            Improvement.status == Status.awaiting_approval,
        )
        .order_by(col(ApprovalRequest.created_at), col(ApprovalRequest.id))
    ).all()
    for request, improvement, colleague in approvals:
        entry(colleague)["approvals"].append(
            {
                "reference": improvement.reference,
                "title": improvement.title,
                "since": request.created_at.isoformat(),
            }
        )
    actions = session.exec(
        select(ActionItem, Improvement, Colleague)
        .join(Improvement, col(Improvement.id) == col(ActionItem.improvement_id))
        .join(Colleague, col(Colleague.id) == col(ActionItem.owner_id))
        .where(
            ActionItem.status == ActionStatus.open,
            col(ActionItem.automatic_step).is_(None),  # a task's step waits for nobody
            Improvement.status == Status.in_progress,
        )
        .order_by(col(ActionItem.created_at), col(ActionItem.id))
    ).all()
    for item, improvement, colleague in actions:
        entry(colleague)["actions"].append(
            {
                "reference": improvement.reference,
                "title": improvement.title,
                "step": item.title,
                "due_on": item.due_on.isoformat(),
                "since": item.created_at.isoformat(),
            }
        )

    def oldest(person: dict[str, Any]) -> str:
        return min(item["since"] for item in person["approvals"] + person["actions"])

    return sorted(people.values(), key=lambda person: (oldest(person), person["name"]))


def colleague_digest(*, session: Session, week_ending: date) -> Digest:
    """The digest of the ISO week holding `week_ending`: improvements completed in it (in the
    organisation's time zone) with who achieved them and their measured results, the totals, and
    what waits now for whom."""
    period, start, end = week_of(week_ending)
    completed = completed_between(session=session, start=start, end=end)
    achieved = [
        {
            "reference": improvement.reference,
            "title": improvement.title,
            "category": Category(improvement.category).value,
            "completed_at": completed_at.isoformat(),
            "by": _achievers(session, improvement),
            "results": impact_lines(improvement),
        }
        for improvement, completed_at in completed
    ]
    totals: dict[str, float] = {m: sum(measured(i, m) for i, _ in completed) for m in MEASURES}
    totals["improvements"] = len(completed)
    return Digest(
        period=period,
        start=start,
        end=end,
        achieved=achieved,
        totals=totals,
        waiting=_waiting(session),
    )


def digest_key(period: str, colleague_id: int) -> str:
    return f"digest:{period}:colleague:{colleague_id}"


def queue_digests(*, session: Session, week_ending: date) -> dict[str, int]:
    """The digest of the week holding `week_ending` to each active colleague, once each per
    week; the caller commits. A week with nothing achieved and nothing waiting sends nothing.

    Returns {"colleagues": digests due, "queued": new rows}.
    """
    digest = colleague_digest(session=session, week_ending=week_ending)
    if digest.empty:
        return {"colleagues": 0, "queued": 0}
    colleagues = session.exec(
        select(Colleague).where(Colleague.active == True).order_by(col(Colleague.id))  # noqa: E712
    ).all()
    keys = {c.id: digest_key(digest.period, c.id) for c in colleagues if c.id is not None}
    sent = set(
        session.exec(
            select(OutboxEmail.idempotency_key).where(
                col(OutboxEmail.idempotency_key).in_(list(keys.values()))
            )
        ).all()
    )
    context = digest.as_dict()
    yours = {person["colleague_id"]: person for person in digest.waiting}
    counts = {"colleagues": len(keys), "queued": 0}
    for colleague in colleagues:
        assert colleague.id is not None
        if keys[colleague.id] in sent:
            continue
        queue_email(
            session=session,
            key=keys[colleague.id],
            to=colleague.email,
            template=TEMPLATE,
            context={
                **context,
                "colleague_name": colleague.name,
                "yours": yours.get(colleague.id),
                "impact_url": f"{settings.base_url}/impact",
            },
        )
        counts["queued"] += 1
    return counts
