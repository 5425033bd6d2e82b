"""Escalation: the sweep reminds, escalates and expires, each once, at explicit moments."""

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from improve.errors import LinkRefused
from improve.settings import settings
from models import (
    ActionItem,
    ApprovalRequest,
    ApprovalStatus,
    Category,
    Channel,
    Improvement,
    OutboxEmail,
    Status,
)
from models.db import utcnow
from tasks import links
from tasks.decisions import advance_after_decision, record_decision
from tasks.escalation import ask_again, remind_and_escalate, stuck_improvements
from tests.tasks.helpers import Org, history, outbox, route, status_of, submit, token_of

NOTHING = {"reminded": 0, "escalated": 0, "expired": 0, "withdrawn": 0}


def sweep(session: Session, now) -> dict[str, int]:  # type: ignore[no-untyped-def]
    counts = remind_and_escalate(session=session, now=now)
    session.commit()
    return counts


def snapshot(session: Session) -> list[tuple]:
    """Everything the sweep may touch, to show a second run changed nothing."""
    requests = session.exec(
        select(ApprovalRequest)
        .order_by(ApprovalRequest.id)
        .execution_options(populate_existing=True)
    ).all()
    emails = session.exec(select(OutboxEmail.idempotency_key).order_by(OutboxEmail.id)).all()
    return [
        *(
            (r.id, r.approver_id, r.status, r.token_hash, r.reminded_at, r.escalated_at)
            for r in requests
        ),
        *emails,
    ]


def requests(session: Session) -> list[ApprovalRequest]:
    return list(
        session.exec(
            select(ApprovalRequest)
            .order_by(ApprovalRequest.id)
            .execution_options(populate_existing=True)
        ).all()
    )


def test_nothing_happens_before_the_reminder_is_due(session: Session, org: Org) -> None:
    [request] = route(session, org, submit(session, org))
    before = snapshot(session)

    assert sweep(session, request.created_at + timedelta(hours=47)) == NOTHING
    assert snapshot(session) == before


def test_a_reminder_goes_once_with_a_new_link_that_replaces_the_old(
    session: Session, org: Org
) -> None:
    [request] = route(session, org, submit(session, org))
    first_token = token_of(session, request.id)
    now = request.created_at + timedelta(hours=49)

    assert sweep(session, now) == NOTHING | {"reminded": 1}

    reminder = outbox(session)[-1]
    assert reminder.idempotency_key == f"approval:{request.id}:reminder"
    assert reminder.recipient == org.sam.email
    assert reminder.template == "approval_request"
    assert reminder.context["reminder"] is True
    assert reminder.context["replaces_earlier_link"] is True
    new_token = token_of(session, request.id, "reminder")
    assert new_token != first_token
    checked = links.check_approval_link(
        session=session, approval_id=request.id, token=new_token, now=now
    )
    assert checked.id == request.id and checked.reminded_at == now
    with pytest.raises(LinkRefused):  # only one live link per request
        links.check_approval_link(session=session, approval_id=request.id, token=first_token)

    before = snapshot(session)
    assert sweep(session, now) == NOTHING
    assert sweep(session, now + timedelta(hours=1)) == NOTHING
    assert snapshot(session) == before


@pytest.mark.parametrize(
    ("setup", "to", "on_behalf", "reason_part"),
    [
        (
            "deputy",
            "priya",
            "sam",
            "Sam Lee has not answered in 5 days; Priya Shah is their deputy",
        ),
        ("no-deputy", "dana", None, "Sam Lee has not answered in 5 days; Energy authority"),
        (
            "no-deputy-nobody-else",
            "olu",
            None,
            "Sam Lee has not answered in 5 days; Nobody's authority covers energy at £1,200 at "
            "level 1 (Sam Lee was already asked; Dana Okafor is no longer active); sent to the "
            "operations fallback",
        ),
    ],
    ids=["to-the-deputy", "to-the-next-authority", "to-the-fallback"],
)
def test_escalation_after_the_longer_wait(
    session: Session, org: Org, setup: str, to: str, on_behalf: str | None, reason_part: str
) -> None:
    if setup != "deputy":
        org.sam.deputy_id = None
    if setup == "no-deputy-nobody-else":
        org.dana.active = False
    session.add_all([org.sam, org.dana])
    session.commit()
    improvement = submit(session, org)
    [first] = route(session, org, improvement)
    old_token = token_of(session, first.id)
    now = first.created_at + timedelta(hours=121)

    assert sweep(session, now) == NOTHING | {"escalated": 1}

    old, new = requests(session)
    assert (old.status, old.escalated_at) == (ApprovalStatus.superseded, now)
    expected = getattr(org, to)
    assert (new.approver_id, new.level, new.status) == (expected.id, 1, ApprovalStatus.pending)
    assert new.on_behalf_of_id == (getattr(org, on_behalf).id if on_behalf else None)
    assert reason_part in new.reason
    assert (new.created_at, new.expires_at) == (now, now + timedelta(days=14))
    email = outbox(session)[-1]
    assert (email.idempotency_key, email.recipient) == (
        f"approval:{new.id}:request",
        expected.email,
    )
    assert email.context["escalated_from_name"] == "Sam Lee"
    assert email.context["reminder"] is False
    note = history(session, improvement.id)[-1]
    assert (note.actor, note.channel) == ("sweep", Channel.sweep)
    assert note.reason.startswith("Escalated level 1: Asked ")
    with pytest.raises(LinkRefused) as withdrawn:
        links.check_approval_link(session=session, approval_id=first.id, token=old_token)
    assert withdrawn.value.kind == "used"

    before = snapshot(session)
    assert sweep(session, now) == NOTHING
    assert snapshot(session) == before

    # The one who took over decides, and the improvement moves on as usual.
    record_decision(
        session=session, approval_id=new.id, approve=True, comment="", channel=Channel.web
    )
    session.commit()
    assert advance_after_decision(session=session, improvement_id=improvement.id, actor="t") == (
        "approved"
    )


def test_an_escalated_request_is_reminded_and_escalated_in_its_turn(
    session: Session, org: Org
) -> None:
    [first] = route(session, org, submit(session, org))
    start = first.created_at
    sweep(session, start + timedelta(hours=49))  # Sam reminded
    sweep(session, start + timedelta(hours=121))  # to Priya, Sam's deputy

    counts = [
        sweep(session, start + timedelta(hours=121 + 49)),  # Priya reminded
        sweep(session, start + timedelta(hours=121 + 121)),  # Priya's turn is over: to Dana
    ]

    assert counts == [NOTHING | {"reminded": 1}, NOTHING | {"escalated": 1}]
    chain = [(r.approver_id, r.status) for r in requests(session)]
    assert chain == [
        (org.sam.id, ApprovalStatus.superseded),
        (org.priya.id, ApprovalStatus.superseded),
        (org.dana.id, ApprovalStatus.pending),
    ]


def test_an_expired_request_is_handed_on(session: Session, org: Org) -> None:
    improvement = submit(session, org)
    [first] = route(session, org, improvement)
    now = first.expires_at + timedelta(minutes=1)  # the sweep was down for two weeks

    assert sweep(session, now) == NOTHING | {"expired": 1, "escalated": 1}

    old, new = requests(session)
    assert old.status == ApprovalStatus.expired
    assert (new.approver_id, new.on_behalf_of_id) == (org.priya.id, org.sam.id)
    assert f"let the request expire on {first.expires_at:%Y-%m-%d}" in new.reason
    assert outbox(session)[-1].context["escalated_from_name"] == "Sam Lee"
    assert status_of(session, improvement.id) == Status.awaiting_approval

    before = snapshot(session)
    assert sweep(session, now) == NOTHING
    assert snapshot(session) == before


def test_an_expired_request_is_not_handed_on_while_another_is_pending(
    session: Session, org: Org
) -> None:
    improvement = submit(session, org)
    [first] = route(session, org, improvement)
    _, token_hash = links.new_token()
    session.add(
        ApprovalRequest(
            improvement_id=improvement.id,
            approver_id=org.dana.id,
            level=1,
            reason="also asked",
            token_hash=token_hash,
            created_at=first.expires_at - timedelta(hours=1),
            expires_at=first.expires_at + timedelta(days=14),
        )
    )
    session.commit()

    counts = sweep(session, first.expires_at + timedelta(minutes=1))

    assert counts == NOTHING | {"expired": 1}
    assert [r.status for r in requests(session)] == [ApprovalStatus.expired, ApprovalStatus.pending]


def test_requests_of_a_cancelled_improvement_are_withdrawn(session: Session, org: Org) -> None:
    improvement = submit(session, org)
    [first] = route(session, org, improvement)
    improvement.status = Status.cancelled  # an operator stopped it
    session.add(improvement)
    session.commit()

    assert sweep(session, first.created_at + timedelta(hours=1)) == NOTHING | {"withdrawn": 1}
    assert requests(session)[0].status == ApprovalStatus.superseded
    assert sweep(session, first.created_at + timedelta(hours=1)) == NOTHING


def test_a_decided_request_is_left_alone(session: Session, org: Org) -> None:
    [first] = route(session, org, submit(session, org))
    record_decision(
        session=session, approval_id=first.id, approve=True, comment="", channel=Channel.web
    )
    session.commit()
    before = snapshot(session)

    assert sweep(session, first.expires_at + timedelta(days=1)) == NOTHING
    assert snapshot(session) == before


def test_with_nobody_else_to_ask_the_approver_keeps_it_and_is_reminded(
    session: Session, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    org.sam.deputy_id = None
    org.dana.active = False
    session.add_all([org.sam, org.dana])
    session.commit()
    monkeypatch.setattr(settings, "fallback_approver", org.sam.email)  # Sam is the fallback too
    improvement = submit(session, org)
    [first] = route(session, org, improvement)
    now = first.created_at + timedelta(hours=121)

    assert sweep(session, now) == NOTHING | {"reminded": 1}

    [request] = requests(session)
    assert (request.status, request.escalated_at, request.reminded_at) == (
        ApprovalStatus.pending,
        now,
        now,
    )
    assert "nobody else can be asked at level 1" in history(session, improvement.id)[-1].reason
    before = snapshot(session)
    assert sweep(session, now) == NOTHING
    assert snapshot(session) == before


# --- Stranded approvals: an improvement awaiting approval always has a live request -----------


def to_the_fallback(session: Session, org: Org) -> tuple[Improvement, ApprovalRequest]:
    """Nobody holds process authority: the request goes to Olu, the operations fallback."""
    improvement = submit(session, org, category=Category.process)
    [request] = route(session, org, improvement)
    assert request.approver_id == org.olu.id
    return improvement, request


def test_when_the_fallback_lets_it_expire_the_fallback_is_asked_again(
    session: Session, org: Org
) -> None:
    improvement, first = to_the_fallback(session, org)
    now = first.expires_at + timedelta(minutes=1)

    assert sweep(session, now) == NOTHING | {"expired": 1, "escalated": 1}

    old, new = requests(session)
    assert old.status == ApprovalStatus.expired
    assert (new.approver_id, new.status, new.expires_at) == (
        org.olu.id,
        ApprovalStatus.pending,
        now + timedelta(days=14),
    )
    assert "nobody new can be asked at level 1" in new.reason
    email = outbox(session)[-1]
    assert (email.idempotency_key, email.recipient) == (f"approval:{new.id}:request", org.olu.email)
    fresh = token_of(session, new.id)
    assert links.check_approval_link(session=session, approval_id=new.id, token=fresh, now=now)
    note = history(session, improvement.id)[-1]
    assert note.reason.startswith("Asked again at level 1: Asked Olu Ade")
    assert f"let the request expire on {first.expires_at:%Y-%m-%d}" in note.reason
    assert stuck_improvements(session=session, now=now + timedelta(hours=1)) == []

    before = snapshot(session)
    assert sweep(session, now) == NOTHING
    assert snapshot(session) == before


def test_with_nobody_at_all_to_ask_it_is_listed_as_stuck_with_the_reason(
    session: Session, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    improvement, first = to_the_fallback(session, org)
    org.olu.active = False  # Olu left, and nobody took over as fallback
    session.add(org.olu)
    session.commit()
    monkeypatch.setattr(settings, "fallback_approver", "")
    now = first.expires_at + timedelta(minutes=1)

    assert sweep(session, now) == NOTHING | {"expired": 1}

    assert history(session, improvement.id)[-1].reason.endswith(
        "nobody else can be asked at level 1; it waits for operations on the dashboard's stuck list"
    )
    [stuck] = stuck_improvements(session=session, now=now)
    assert stuck.improvement.id == improvement.id and stuck.ask_again
    assert stuck.reason == (
        "awaiting approval, but no request is open: the last one, to Olu Ade at level 1, "
        f"expired on {first.expires_at:%Y-%m-%d}"
    )
    assert stuck.since == first.expires_at

    # Operations names a fallback again: the sweep's next look asks them.
    monkeypatch.setattr(settings, "fallback_approver", org.kofi.email)
    assert ask_again(session=session, improvement_id=improvement.id, now=now) is True
    session.commit()
    assert requests(session)[-1].approver_id == org.kofi.id
    assert stuck_improvements(session=session, now=now) == []
    assert ask_again(session=session, improvement_id=improvement.id, now=now) is False


def test_an_improvement_stranded_before_this_fix_is_found_and_asked_again(
    session: Session, org: Org
) -> None:
    improvement, first = to_the_fallback(session, org)
    # What the old sweep left behind: the fallback's request expired and nobody was asked.
    first.status = ApprovalStatus.expired
    session.add(first)
    session.commit()
    now = first.expires_at + timedelta(days=3)

    [stuck] = stuck_improvements(session=session, now=now)
    assert "the last one, to Olu Ade at level 1, expired on" in stuck.reason

    assert ask_again(session=session, improvement_id=improvement.id, now=now) is True
    session.commit()

    assert [(r.approver_id, r.status) for r in requests(session)] == [
        (org.olu.id, ApprovalStatus.expired),
        (org.olu.id, ApprovalStatus.pending),
    ]
    assert stuck_improvements(session=session, now=now) == []


def test_stuck_improvements_name_why_and_leave_alone_what_is_moving(
    session: Session, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = utcnow()
    long_ago = now - timedelta(hours=2)
    unroutable = submit(session, org, category=Category.process, created_at=long_ago)
    submit(session, org)  # just submitted: its own flow is routing it
    unplanned = submit(session, org, status=Status.approved, updated_at=long_ago)
    planless = submit(session, org, status=Status.in_progress, updated_at=long_ago)
    working = submit(session, org, status=Status.in_progress, updated_at=long_ago)
    session.add(
        ActionItem(improvement_id=working.id, position=1, title="Fit the lamps", due_on=now.date())
    )
    waiting = submit(session, org)
    route(session, org, waiting)  # a live request: not stuck
    session.commit()
    monkeypatch.setattr(settings, "fallback_approver", "")  # process ideas: nobody to ask

    stuck = {s.improvement.id: s.reason for s in stuck_improvements(session=session, now=now)}

    assert set(stuck) == {unroutable.id, unplanned.id, planless.id}
    assert stuck[unroutable.id].startswith(
        f"submitted on {long_ago:%Y-%m-%d %H:%M} and never routed: Nobody can approve process"
    )
    assert stuck[unplanned.id] == (
        f"approved on {long_ago:%Y-%m-%d %H:%M}, but no action plan was made"
    )
    assert stuck[planless.id] == "in progress, but it has no action plan"
