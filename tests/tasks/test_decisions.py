"""Decisions: recording one answer, moving the idea on, and telling the submitter."""

import threading
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from improve.errors import InvalidInput, LinkRefused
from improve.settings import settings
from models import ApprovalRequest, ApprovalStatus, Category, Channel, Improvement, Status
from models.db import get_engine
from tasks import links, mail
from tasks.decisions import (
    advance_after_decision,
    record_decision,
    undecided_improvements_needing_advance,
)
from tests.factories import link_in, make_authority
from tests.tasks.helpers import Org, at_once, history, outbox, route, status_of, submit, token_of

FLOW = "advance-improvement"


def test_approval_moves_it_to_approved_and_tells_the_submitter_once(
    session: Session, org: Org
) -> None:
    improvement = submit(session, org)
    [request] = route(session, org, improvement)

    decided = record_decision(
        session=session, approval_id=request.id, approve=True, comment="", channel=Channel.email
    )
    session.commit()
    assert decided.status == ApprovalStatus.approved
    assert decided.decided_at is not None
    assert undecided_improvements_needing_advance(session=session) == [improvement.id]

    assert advance_after_decision(session=session, improvement_id=improvement.id, actor=FLOW) == (
        "approved"
    )
    session.commit()

    assert status_of(session, improvement.id) == Status.approved
    [email] = outbox(session, "decision")
    assert email.idempotency_key == f"decision:{improvement.id}:approved"
    assert email.recipient == org.asha.email
    assert email.context == {
        "submitter_name": "Asha Patel",
        "reference": improvement.reference,
        "title": improvement.title,
        "approved": True,
        "approver_name": "Sam Lee",
        "comment": "",
        "next_steps": email.context["next_steps"],
        "url_status": f"{settings.base_url}/improvements/{improvement.id}",
    }
    assert "action plan" in email.context["next_steps"]
    decision_row, approved_row = history(session, improvement.id)[-2:]
    assert decision_row.reason == "Sam Lee approved at level 1 of 1"
    assert (decision_row.actor, decision_row.channel) == (org.sam.email, Channel.email)
    assert (approved_row.to_status, approved_row.actor) == (Status.approved, FLOW)
    assert approved_row.reason == "Approved: Sam Lee approved at level 1"

    # The same event delivered twice: nothing moves, nothing is sent twice.
    before = (len(outbox(session)), len(history(session, improvement.id)))
    again = advance_after_decision(session=session, improvement_id=improvement.id, actor=FLOW)
    session.commit()
    assert again == "nothing"
    assert (len(outbox(session)), len(history(session, improvement.id))) == before
    assert undecided_improvements_needing_advance(session=session) == []


@pytest.mark.parametrize("comment", ["", "   \n"], ids=["empty", "only-whitespace"])
def test_a_rejection_without_a_reason_is_refused(session: Session, org: Org, comment: str) -> None:
    improvement = submit(session, org)
    [request] = route(session, org, improvement)

    with pytest.raises(InvalidInput) as refused:
        record_decision(
            session=session,
            approval_id=request.id,
            approve=False,
            comment=comment,
            channel=Channel.web,
        )

    assert refused.value.errors == {"comment": "Please say why, so the submitter can learn from it"}
    session.rollback()
    session.refresh(request)
    assert request.status == ApprovalStatus.pending


def test_a_rejection_tells_the_submitter_why_kindly(session: Session, org: Org) -> None:
    improvement = submit(session, org)
    [request] = route(session, org, improvement)
    why = "The lease ends in March; let's fit LEDs in the new building instead."

    record_decision(
        session=session, approval_id=request.id, approve=False, comment=why, channel=Channel.web
    )
    session.commit()
    outcome = advance_after_decision(session=session, improvement_id=improvement.id, actor=FLOW)
    session.commit()

    assert outcome == "rejected"
    assert status_of(session, improvement.id) == Status.rejected
    [email] = outbox(session, "decision")
    assert email.idempotency_key == f"decision:{improvement.id}:rejected"
    assert email.recipient == org.asha.email
    assert email.context["approved"] is False
    assert email.context["comment"] == why
    assert email.context["approver_name"] == "Sam Lee"
    assert "Thank you" in email.context["next_steps"]
    assert "submit it again" in email.context["next_steps"]
    last = history(session, improvement.id)[-1]
    assert last.to_status == Status.rejected
    assert last.reason == f"Rejected: Sam Lee rejected at level 1: {why}"
    assert advance_after_decision(session=session, improvement_id=improvement.id, actor=FLOW) == (
        "nothing"
    )
    assert len(outbox(session, "decision")) == 1


def test_a_decided_link_is_refused_as_used(session: Session, org: Org) -> None:
    improvement = submit(session, org)
    [request] = route(session, org, improvement)
    token = token_of(session, request.id)
    record_decision(
        session=session, approval_id=request.id, approve=True, comment="", channel=Channel.web
    )
    session.commit()

    with pytest.raises(LinkRefused) as used:
        links.check_approval_link(session=session, approval_id=request.id, token=token)
    assert used.value.kind == "used"
    with pytest.raises(LinkRefused) as again:
        record_decision(
            session=session,
            approval_id=request.id,
            approve=False,
            comment="no",
            channel=Channel.web,
        )
    assert again.value.kind == "used"


def _second_request_at_level_one(session: Session, org: Org, improvement: Improvement) -> int:
    """Another approver asked at the same level (as when a request was handed to two people)."""
    _, token_hash = links.new_token()
    first = session.exec(select(ApprovalRequest)).one()
    other = ApprovalRequest(
        improvement_id=improvement.id,
        approver_id=org.dana.id,
        level=1,
        reason="also asked",
        token_hash=token_hash,
        expires_at=first.expires_at,
    )
    session.add(other)
    session.commit()
    assert other.id is not None
    return other.id


def _decideat_once(decisions: list[tuple[int, bool, str]]) -> list[str]:
    """Each decision in its own thread and session, released at the same instant."""
    barrier = threading.Barrier(len(decisions))
    outcomes: list[str] = []

    def decide(approval_id: int, approve: bool, comment: str) -> None:
        with Session(get_engine(), expire_on_commit=False) as own:
            barrier.wait()
            try:
                record_decision(
                    session=own,
                    approval_id=approval_id,
                    approve=approve,
                    comment=comment,
                    channel=Channel.web,
                )
                own.commit()
                outcomes.append("recorded")
            except LinkRefused as refused:
                own.rollback()
                outcomes.append(refused.kind)

    threads = [threading.Thread(target=decide, args=d) for d in decisions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(outcomes)


def test_two_approvers_deciding_at_once_record_one_decision(session: Session, org: Org) -> None:
    improvement = submit(session, org)
    [sams] = route(session, org, improvement)
    danas = _second_request_at_level_one(session, org, improvement)

    outcomes = _decideat_once([(sams.id, True, ""), (danas, False, "Not this year, sorry.")])

    assert outcomes == ["recorded", "used"]
    statuses = sorted(
        str(r.status)
        for r in session.exec(
            select(ApprovalRequest).execution_options(populate_existing=True)
        ).all()
    )
    assert statuses in (["approved", "superseded"], ["rejected", "superseded"])
    decisions = [t for t in history(session, improvement.id) if "at level 1 of 1" in t.reason]
    assert len(decisions) == 1


def test_the_same_link_posted_twice_at_once_records_one_decision(
    session: Session, org: Org
) -> None:
    improvement = submit(session, org)
    [request] = route(session, org, improvement)

    outcomes = _decideat_once([(request.id, True, ""), (request.id, True, "")])

    assert outcomes == ["recorded", "used"]


def test_one_decision_withdraws_the_others_at_its_level(session: Session, org: Org) -> None:
    improvement = submit(session, org)
    [sams] = route(session, org, improvement)
    danas = _second_request_at_level_one(session, org, improvement)

    record_decision(
        session=session, approval_id=sams.id, approve=True, comment="", channel=Channel.web
    )
    session.commit()

    other = session.get(ApprovalRequest, danas, populate_existing=True)
    assert other is not None and other.status == ApprovalStatus.superseded


def test_two_levels_ask_two_people_one_after_the_other(session: Session, org: Org) -> None:
    improvement = submit(session, org, cost=12_000)
    [first] = route(session, org, improvement)
    assert (first.approver_id, first.level) == (org.dana.id, 1)
    assert outbox(session)[0].context["levels"] == 2

    record_decision(
        session=session, approval_id=first.id, approve=True, comment="", channel=Channel.web
    )
    session.commit()
    assert undecided_improvements_needing_advance(session=session) == [improvement.id]
    assert advance_after_decision(session=session, improvement_id=improvement.id, actor=FLOW) == (
        "next_level"
    )
    session.commit()

    assert status_of(session, improvement.id) == Status.awaiting_approval
    second = session.exec(select(ApprovalRequest).where(ApprovalRequest.level == 2)).one()
    assert second.approver_id == org.kofi.id
    email = outbox(session)[-1]
    assert (email.idempotency_key, email.recipient) == (
        f"approval:{second.id}:request",
        org.kofi.email,
    )
    assert (email.context["level"], email.context["levels"]) == (2, 2)
    assert history(session, improvement.id)[-1].reason.startswith(
        "Asked Kofi Mensah for level 2 of 2 approval"
    )
    assert advance_after_decision(session=session, improvement_id=improvement.id, actor=FLOW) == (
        "waiting"
    )
    assert undecided_improvements_needing_advance(session=session) == []
    assert len(outbox(session)) == 2

    record_decision(
        session=session, approval_id=second.id, approve=True, comment="Good", channel=Channel.email
    )
    session.commit()
    assert advance_after_decision(session=session, improvement_id=improvement.id, actor=FLOW) == (
        "approved"
    )
    session.commit()

    assert status_of(session, improvement.id) == Status.approved
    assert history(session, improvement.id)[-1].reason == (
        "Approved: Dana Okafor approved at level 1; Kofi Mensah approved at level 2"
    )
    assert outbox(session, "decision")[0].context["approver_name"] == "Kofi Mensah"


def test_a_second_level_never_goes_to_whoever_approved_the_first(
    session: Session, org: Org
) -> None:
    make_authority(session, org.dana, Category.energy, 50_000, level=2)  # Dana now holds both
    improvement = submit(session, org, cost=12_000)
    [first] = route(session, org, improvement)
    assert first.approver_id == org.dana.id
    record_decision(
        session=session, approval_id=first.id, approve=True, comment="", channel=Channel.web
    )
    advance_after_decision(session=session, improvement_id=improvement.id, actor=FLOW)
    session.commit()

    second = session.exec(select(ApprovalRequest).where(ApprovalRequest.level == 2)).one()
    assert second.approver_id == org.kofi.id


def test_a_deputy_decides_on_behalf_and_the_audit_trail_says_so(session: Session, org: Org) -> None:
    org.sam.absent_from = date.today() - timedelta(days=1)
    org.sam.absent_to = date.today() + timedelta(days=6)
    session.add(org.sam)
    session.commit()
    improvement = submit(session, org)

    [request] = route(session, org, improvement)

    assert (request.approver_id, request.on_behalf_of_id) == (org.priya.id, org.sam.id)
    assert "Sam Lee is absent until" in request.reason
    assert "Priya Shah is their deputy" in request.reason
    [email] = outbox(session)
    assert email.recipient == org.priya.email
    assert (email.context["approver_name"], email.context["on_behalf_of_name"]) == (
        "Priya Shah",
        "Sam Lee",
    )
    assert "Asked Priya Shah (on behalf of Sam Lee)" in history(session, improvement.id)[-1].reason

    record_decision(
        session=session, approval_id=request.id, approve=True, comment="", channel=Channel.email
    )
    session.commit()
    advance_after_decision(session=session, improvement_id=improvement.id, actor=FLOW)
    session.commit()

    decision_row, approved_row = history(session, improvement.id)[-2:]
    assert decision_row.reason == "Priya Shah approved on behalf of Sam Lee at level 1 of 1"
    assert (decision_row.actor, decision_row.channel) == (org.priya.email, Channel.email)
    assert approved_row.reason == "Approved: Priya Shah approved on behalf of Sam Lee at level 1"
    decision = outbox(session, "decision")[0]
    assert decision.context["approver_name"] == "Priya Shah (on behalf of Sam Lee)"


def test_a_lost_decision_event_is_found(session: Session, org: Org) -> None:
    decided = submit(session, org)
    waiting = submit(session, org)
    [request] = route(session, org, decided)
    route(session, org, waiting)
    record_decision(
        session=session, approval_id=request.id, approve=False, comment="No", channel=Channel.web
    )
    session.commit()

    assert undecided_improvements_needing_advance(session=session) == [decided.id]
    assert (
        undecided_improvements_needing_advance(
            session=session, decided_before=request.decided_at - timedelta(seconds=1)
        )
        == []
    )


def test_a_decision_on_a_cancelled_improvement_is_refused(session: Session, org: Org) -> None:
    improvement = submit(session, org)
    [request] = route(session, org, improvement)
    improvement.status = Status.cancelled  # as if cancelled by an operator
    session.add(improvement)
    session.commit()

    with pytest.raises(LinkRefused) as refused:
        record_decision(
            session=session, approval_id=request.id, approve=True, comment="", channel=Channel.web
        )
    assert refused.value.kind == "used"
    assert "no longer waiting for approval" in str(refused.value)


def test_queued_approval_emails_render_with_the_link(session: Session, org: Org) -> None:
    templates = Path(__file__).parents[2] / "templates" / "email"
    if not hasattr(mail, "render") or not (templates / "approval_request.txt").exists():
        pytest.skip("the email renderer and templates are not in this tree yet")
    improvement = submit(session, org, cost=12_000)
    [request] = route(session, org, improvement)
    record_decision(
        session=session,
        approval_id=request.id,
        approve=False,
        comment="Not now",
        channel=Channel.web,
    )
    advance_after_decision(session=session, improvement_id=improvement.id, actor=FLOW)
    session.commit()

    for row in outbox(session):
        rendered = mail.render(row.template, mail.context_of(row))
        assert improvement.reference in rendered.subject + rendered.text
        if row.template == "approval_request":
            assert link_in(row) in rendered.text
            assert link_in(row) in rendered.html
        else:
            assert "Not now" in rendered.text


def test_the_decided_event_twice_at_once_advances_once(session: Session, org: Org) -> None:
    improvement = submit(session, org, cost=12_000)
    [first] = route(session, org, improvement)
    record_decision(
        session=session, approval_id=first.id, approve=True, comment="", channel=Channel.web
    )
    session.commit()

    outcomes = at_once(
        2,
        lambda own: advance_after_decision(session=own, improvement_id=improvement.id, actor=FLOW),
    )

    assert outcomes == ["next_level", "waiting"]
    assert len(session.exec(select(ApprovalRequest).where(ApprovalRequest.level == 2)).all()) == 1
    assert len(outbox(session)) == 2


def test_a_decision_after_expiry_is_refused_even_before_the_sweep_ran(
    session: Session, org: Org
) -> None:
    improvement = submit(session, org)
    [request] = route(session, org, improvement)
    request.expires_at = request.created_at - timedelta(seconds=1)
    session.add(request)
    session.commit()

    with pytest.raises(LinkRefused) as refused:
        record_decision(
            session=session, approval_id=request.id, approve=True, comment="", channel=Channel.web
        )
    assert refused.value.kind == "expired"
    session.rollback()
    assert session.get(ApprovalRequest, request.id, populate_existing=True).status == "pending"
