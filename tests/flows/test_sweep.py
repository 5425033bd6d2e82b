"""sweep: whatever lost its event is moved on, and a second sweep changes nothing."""

from collections import Counter
from datetime import timedelta

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from sqlalchemy import update
from sqlmodel import Session, select

from flows.advance_improvement import advance_improvement
from flows.route_improvement import route_improvement
from flows.sweep import sweep
from improve.settings import settings
from models import (
    ActionItem,
    ApprovalRequest,
    ApprovalStatus,
    Case,
    CaseStatus,
    Category,
    Channel,
    Improvement,
    Status,
)
from models.db import utcnow
from tasks.alternatives import AlternativeIn, mark_cannot_meet
from tasks.cases import open_case
from tasks.decisions import advance_after_decision
from tests.factories import (
    make_approver,
    make_case,
    make_colleague,
    make_customer,
    make_improvement,
)
from tests.flows.helpers import decide, finish_open_people_steps, to
from tests.smtpd import SmtpServer


def backdate(session: Session, table: type, column: str, **where: int) -> None:
    """Make something look older than the sweep's grace for events in flight."""
    conditions = [getattr(table, k) == v for k, v in where.items()]
    session.execute(
        update(table).where(*conditions).values({column: utcnow() - timedelta(minutes=5)})
    )
    session.commit()


async def test_the_sweep_recovers_lost_events_and_a_second_sweep_changes_nothing(
    session: Session, smtp: SmtpServer
) -> None:
    submitter = make_colleague(session, "Sam Submitter")
    approver = make_approver(session, "Alex Approver", category=Category.resource)
    customer = make_customer(session, "Chris Customer")

    # Every action done by people, but ACTION_COMPLETED was lost.
    finished = make_improvement(session, submitter, title="Finished idea", customers=[customer])
    await route_improvement(finished.id)
    decide(session, finished.id, approve=True)
    await advance_improvement(finished.id)
    finish_open_people_steps(session, finished.id, measured_saving=250)
    # Decided by the approver, but APPROVAL_DECIDED was lost.
    decided = make_improvement(session, submitter, title="Decided idea")
    await route_improvement(decided.id)
    decide(session, decided.id, approve=True)
    backdate(session, ApprovalRequest, "decided_at", improvement_id=decided.id)
    # Submitted, but its SUBMITTED event never started route-improvement.
    unrouted = make_improvement(session, submitter, title="Unrouted idea")
    backdate(session, Improvement, "created_at", id=unrouted.id)
    smtp.clear()

    summary = await sweep()

    assert summary["routed"] == 1 and summary["advanced"] == 1
    assert summary["automatic_steps"] == 2 and summary["completed"] == 1
    assert summary["announced"] == 1
    session.expire_all()
    assert session.get(Improvement, unrouted.id).status == Status.awaiting_approval
    assert session.get(Improvement, decided.id).status == Status.in_progress
    assert session.get(Improvement, finished.id).status == Status.completed
    assert session.get(Improvement, finished.id).measured_saving == 2 * 250  # two people's steps
    assert len(to(smtp, approver.email)) == 1  # asked about the unrouted idea
    assert len(to(smtp, customer.email)) == 2  # told of the switch, then of the result

    received = len(smtp.received)
    again = await sweep()

    assert len(smtp.received) == received
    assert not any(again.get(k) for k in ("routed", "advanced", "completed", "announced", "sent"))
    assert max(Counter(m.message_id for m in smtp.received).values()) == 1
    assert (
        session.exec(select(ActionItem).where(ActionItem.improvement_id == unrouted.id)).all() == []
    )


async def test_an_approved_improvement_whose_plan_was_never_made_is_planned(
    session: Session, smtp: SmtpServer
) -> None:
    submitter = make_colleague(session, "Sam Submitter")
    make_approver(session, "Alex Approver", category=Category.resource)
    improvement = make_improvement(session, submitter, title="Approved, never planned")
    await route_improvement(improvement.id)
    decide(session, improvement.id, approve=True)
    # The decision was advanced (approved) but planning failed every retry.
    assert advance_after_decision(session=session, improvement_id=improvement.id, actor="t") == (
        "approved"
    )
    session.commit()
    backdate(session, Improvement, "updated_at", id=improvement.id)

    summary = await sweep()

    assert summary["planned"] == 1
    session.expire_all()
    assert session.get(Improvement, improvement.id).status == Status.in_progress
    assert session.exec(select(ActionItem).where(ActionItem.improvement_id == improvement.id)).all()
    assert (await sweep()).get("planned", 0) == 0


async def test_a_failing_step_is_reported_and_every_other_step_still_runs(
    session: Session, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    submitter = make_colleague(session, "Sam Submitter")
    alex = make_approver(session, "Alex Approver", category=Category.resource)
    olu = make_colleague(session, "Olu Operations")
    monkeypatch.setattr(settings, "fallback_approver", olu.email)
    # Stranded by an earlier sweep: Alex's request expired and nobody was asked after it.
    stranded = make_improvement(session, submitter, title="Stranded idea")
    await route_improvement(stranded.id)
    session.execute(
        update(ApprovalRequest)
        .where(ApprovalRequest.improvement_id == stranded.id)
        .values(status=ApprovalStatus.expired, expires_at=utcnow() - timedelta(days=1))
    )
    # A plan whose automatic step names a task that does not exist: running it raises.
    broken = make_improvement(session, submitter, title="Broken plan", status=Status.in_progress)
    session.add(
        ActionItem(
            improvement_id=broken.id,
            position=1,
            title="Do the impossible",
            due_on=utcnow().date(),
            automatic_step="no_such_step",
        )
    )
    session.commit()
    smtp.clear()

    state = await sweep(return_state=True)

    # Every step ran: the stranded one was asked again and the outbox was sent after the failure.
    assert state.is_failed()
    assert "Sweep steps failed: automatic_steps; every other step ran" in (state.message or "")
    assert "'automatic_steps_failed': 1" in state.message and "'asked_again': 1" in state.message
    session.expire_all()
    [*_, request] = session.exec(
        select(ApprovalRequest)
        .where(ApprovalRequest.improvement_id == stranded.id)
        .order_by(ApprovalRequest.id)  # type: ignore[arg-type]
    ).all()
    assert (request.approver_id, request.status) == (olu.id, ApprovalStatus.pending)
    assert len(to(smtp, olu.email)) == 1
    assert not to(smtp, alex.email)
    assert session.get(Improvement, broken.id).status == Status.in_progress

    async with get_client() as client:
        [artifact] = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["sweep-report"])),
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            ),
        )
    report = str(artifact.data)
    assert "| ask_again | lapsed approvals asked again | asked_again 1 | — |" in report
    assert "| automatic_steps | automatic steps carried out | automatic_steps_failed 1 |" in report
    assert "no_such_step" in report
    assert "| send_outbox | emails sent, deferred, failed | " in report and "sent 1" in report

    # The broken step is still there for operations; nothing else is left to do.
    again = await sweep(return_state=True)
    assert again.is_failed() and "asked_again" not in (again.message or "")


async def test_an_overdue_case_update_is_raised_once_however_often_the_sweep_runs(
    session: Session, smtp: SmtpServer
) -> None:
    owner = make_colleague(session, "Asha Owner")
    customer = make_customer(session, "Ruth Customer")
    case = open_case(
        session=session, by=owner, channel="web", customer_email=customer.email,
        subject="New water meter",
    )  # fmt: skip
    case.status = CaseStatus.delayed
    case.next_update_due = utcnow() - timedelta(minutes=1)  # fell due a minute ago
    session.commit()

    summaries = [await sweep() for _ in range(3)]

    assert [s.get("overdue_raised", 0) for s in summaries] == [1, 0, 0]
    [raised] = session.exec(select(Improvement)).all()
    assert raised.category == Category.customer_update
    session.expire_all()
    assert session.get(Case, case.id).overdue_improvement_id == raised.id

    # What the event starts: the owner approves it as theirs and gets one step, by email.
    await route_improvement(raised.id)
    session.expire_all()
    assert session.get(Improvement, raised.id).status == Status.in_progress
    [assigned] = to(smtp, owner.email)
    assert f"/cases/{case.id}/update" in assigned.text
    assert (await sweep()).get("overdue_raised", 0) == 0


async def test_the_sweep_offers_alternatives_whose_approval_event_was_lost(
    session: Session, smtp: SmtpServer
) -> None:
    owner = make_colleague(session, "Dana Owner")
    make_approver(session, "Alex Approver", category=Category.alternative_solution)
    customer = make_customer(session, "Mrs Ames", email="ames@example.com")
    case = make_case(session, owner, customer)
    marked = mark_cannot_meet(
        session=session,
        case_id=case.id,
        reason="The heater model is no longer made.",
        alternatives=[AlternativeIn("Fit a new heater", "", 900, "a modern heater", 10)],
        actor=owner.email,
        channel=Channel.web,
    )
    session.commit()
    [improvement_id] = marked.submitted
    await route_improvement(improvement_id)
    decide(session, improvement_id, approve=True)
    # The decision's flow approved it, then died before settling the case.
    advance_after_decision(session=session, improvement_id=improvement_id, actor="advance")
    session.commit()
    backdate(session, Case, "updated_at", id=case.id)
    smtp.clear()

    first = await sweep()
    second = await sweep()

    assert first["settled"] == 1 and second.get("settled", 0) == 0
    [offer] = to(smtp, customer.email)
    assert "Other ways we can help: CASE-" in offer.subject
    session.expire_all()
    assert session.get(Case, case.id).status == CaseStatus.awaiting_customer  # type: ignore[union-attr]
    # Approved, but not planned: that waits for the customer's choice.
    assert session.get(Improvement, improvement_id).status == Status.approved  # type: ignore[union-attr]
