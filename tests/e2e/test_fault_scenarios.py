"""Faults on the running stack, one at a time: a relay that says "later" or "no such user", the
Prefect server down while people decide, one link posted twenty times at once, one event ten times.

Each scenario is driven as people drive it (the API, the links in the emails) and judged by what
is left: the database, the emails at the SMTP server counted by Message-ID, the flow runs.
"""

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import httpx
import pytest
from prefect.client.schemas.objects import StateType
from sqlalchemy import update
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from improve import events
from improve.cli import app
from improve.stack import Stack, Supervisor
from models import (
    ActionItem,
    ApprovalRequest,
    ApprovalStatus,
    Category,
    Channel,
    Improvement,
    OutboxEmail,
    OutboxStatus,
    Status,
    Transition,
)
from models.db import utcnow
from tasks.planning import steps_for
from tests.e2e.helpers import (
    DEADLINE,
    assert_none_failed,
    eventually,
    links,
    mail_to,
    of_flow,
    run_sweep,
    runs_for,
    wait_for_mail,
    wait_for_quiet,
    wait_for_runs,
)
from tests.e2e.test_lifecycle import (
    assert_each_email_once,
    decide,
    history,
    read,
    submit,
    wait_for_status,
)
from tests.factories import make_approver, make_colleague, make_customer, make_partner
from tests.smtpd import SmtpServer

pytestmark = pytest.mark.e2e


def outbox(session: Session, improvement_id: int, **where: object) -> list[OutboxEmail]:
    """The improvement's emails as the database has them now, oldest first."""
    session.expire_all()
    return list(
        session.exec(
            select(OutboxEmail)
            .filter_by(improvement_id=improvement_id, **where)
            .order_by(col(OutboxEmail.id))
        ).all()
    )


def transitions(session: Session, improvement_id: int) -> list[tuple[str | None, str, str]]:
    session.expire_all()
    rows = session.exec(
        select(Transition)
        .where(Transition.improvement_id == improvement_id)
        .order_by(col(Transition.id))
    ).all()
    return [(t.from_status, t.to_status, t.actor) for t in rows]


def delivered(smtp: SmtpServer, row: OutboxEmail) -> int:
    """How many times the SMTP server took this outbox row's email (by its Message-ID)."""
    return sum(1 for m in smtp.received if m.message_id == row.message_id)


# --- the relay -------------------------------------------------------------------------------


async def test_a_relay_that_says_try_later_twice_delivers_the_approval_request_once(
    session: Session, smtp: SmtpServer, web: httpx.Client, started: datetime
) -> None:
    sam = make_colleague(session, "Sam Submitter")
    alex = make_approver(session, "Alex Approver", category=Category.resource)
    smtp.refuse_next("421 4.3.2 Service shutting down", "451 4.3.0 Try again later")

    improvement_id = submit(web, sam)

    # The route flow asked Alex and tried to send at once: the relay said 421.
    await wait_for_runs(improvement_id, started, "route")
    (row,) = outbox(session, improvement_id)
    assert (row.template, row.status, row.attempts, row.last_error) == (
        "approval_request",
        OutboxStatus.queued,
        1,
        "421 4.3.2 Service shutting down",
    )
    assert mail_to(smtp, alex.email) == []

    # The next sweeps send what is due: 451 once more, then accepted.
    await run_sweep()
    (row,) = outbox(session, improvement_id)
    assert (row.status, row.attempts, row.last_error) == (
        OutboxStatus.queued,
        2,
        "451 4.3.0 Try again later",
    )
    await run_sweep()
    (row,) = outbox(session, improvement_id)
    assert (row.status, row.attempts, row.last_error) == (OutboxStatus.sent, 3, "")
    assert row.sent_at is not None

    (request,) = mail_to(smtp, alex.email)
    assert request.message_id == row.message_id
    assert smtp.handler.replies == []  # both refusals were given
    assert_each_email_once(smtp)
    # The email works as if it had gone first time: its link decides.
    decide(web, links(request, "approvals")[0], "approve")
    await wait_for_mail(smtp, sam.email, "Action for you", count=2)


async def test_a_mailbox_refused_with_550_fails_alone_and_is_sent_again_from_the_page(
    session: Session, smtp: SmtpServer, web: httpx.Client
) -> None:
    sam = make_colleague(session, "Sam Submitter")
    alex = make_approver(session, "Alex Approver", category=Category.resource)
    kim = make_customer(session, "Kim Keen")
    pat = make_customer(session, "Pat Gone")
    printer = make_partner(session, "Print & Post Ltd", contact_name="Jo Printer")
    smtp.refuse_recipient(pat.email, "550 5.1.1 No such user here")

    improvement_id = submit(
        web, sam, customer_emails=[kim.email, pat.email], partner_emails=[printer.email]
    )
    (request,) = await wait_for_mail(smtp, alex.email, f"IMP-{improvement_id}")
    decide(web, links(request, "approvals")[0], "approve")
    assignments = await wait_for_mail(smtp, sam.email, "Action for you", count=2)
    agree = min((link for m in assignments for link in links(m, "actions")), key=_id)
    done = web.post(agree, data={"note": "Billing agreed the switch for the next cycle"})
    assert done.status_code == 200, done.text

    # The automatic steps tell the customers and the partner, in one batch: Pat's mailbox is
    # gone (550), and the batch goes on without her.
    await wait_for_mail(smtp, kim.email)
    await wait_for_mail(smtp, printer.email)
    (refused,) = await eventually(
        lambda: [r for r in outbox(session, improvement_id, recipient=pat.email)
                 if r.status == OutboxStatus.failed] or None,
        f"the email to {pat.email} to fail",
        lambda: "\n".join(f"  {r.recipient}: {r.status} {r.last_error}"
                          for r in outbox(session, improvement_id)),
    )  # fmt: skip
    assert (refused.attempts, refused.last_error) == (1, "550 5.1.1 No such user here")
    assert mail_to(smtp, pat.email) == []
    others = [r for r in outbox(session, improvement_id) if r.id != refused.id]
    assert {(r.recipient, r.status) for r in others if r.status != OutboxStatus.sent} == set()
    assert [delivered(smtp, r) for r in others] == [1] * len(others)

    # Operations see the refusal on the improvement's page, with a button to send it again.
    page = web.get(f"/improvements/{improvement_id}")
    assert page.status_code == 200
    assert "550 5.1.1 No such user here" in page.text
    assert f"/emails/{refused.id}/resend" in page.text

    # Her address works again; the button queues it, the next sweep sends it, once.
    smtp.accept_recipient(pat.email)
    again = web.post(f"/improvements/{improvement_id}/emails/{refused.id}/resend")
    assert again.status_code == 303, again.text
    (row,) = outbox(session, improvement_id, id=refused.id)
    assert (row.status, row.attempts) == (OutboxStatus.queued, 0)
    assert "550 5.1.1" in row.last_error and "Olu Operations" in row.last_error
    await run_sweep()

    (row,) = outbox(session, improvement_id, id=refused.id)
    assert (row.status, row.attempts, row.last_error) == (OutboxStatus.sent, 1, "")
    (notice,) = mail_to(smtp, pat.email)
    assert notice.message_id == refused.message_id
    assert [delivered(smtp, r) for r in outbox(session, improvement_id)] == [1] * (len(others) + 1)
    assert_each_email_once(smtp)
    # Sent once, it cannot be queued again: not from the page, nor with `improve outbox resend`.
    assert web.post(f"/improvements/{improvement_id}/emails/{refused.id}/resend").status_code == 409
    cli = CliRunner().invoke(app, ["outbox", "resend", str(refused.id)])
    said = " ".join(cli.output.split())  # the console wraps long lines
    assert cli.exit_code == 2 and "is sent: only a failed email can be sent again" in said, said
    assert outbox(session, improvement_id, id=refused.id)[0].status == OutboxStatus.sent


def _id(link: str) -> int:
    return int(link.rsplit("/", 2)[-2])


# --- the Prefect server ----------------------------------------------------------------------


async def test_decisions_taken_while_the_prefect_server_is_down_are_kept_and_acted_on(
    session: Session, smtp: SmtpServer, web: httpx.Client, stack: Stack, started: datetime
) -> None:
    sam = make_colleague(session, "Sam Submitter")
    alex = make_approver(session, "Alex Approver", category=Category.resource)
    ids = [submit(web, sam, title=f"Paperless statements, part {n}") for n in (1, 2)]
    requests = {i: (await wait_for_mail(smtp, alex.email, f"IMP-{i}"))[0] for i in ids}
    await wait_for_quiet()  # nothing in flight: the outage is the only fault

    with prefect_server_down(stack) as said:
        # Alex decides both by email meanwhile: the web app answers and keeps each decision.
        for n, (improvement_id, request) in enumerate(requests.items(), start=1):
            (link,) = links(request, "approvals")
            assert web.get(link).status_code == 200
            answer = decide(web, link, "approve", f"Yes, part {n}")
            assert "approved" in answer.text.lower()
            (approval,) = _approvals(session, improvement_id)
            assert (approval.status, approval.comment) == ("approved", f"Yes, part {n}")
        assert all(read(web, i)["status"] == "awaiting_approval" for i in ids)
        # Sam submits another idea meanwhile: taken, though nothing can route it yet.
        late = submit(web, sam, title="Paperless statements, part 3")
        assert read(web, late)["status"] == "submitted"
    # Started again as `improve up` does it: the server, then a new runner.
    assert "prefect-server restarted" in said, said
    assert any(line.startswith("flows restarted") for line in said), said

    # A minute on, the sweep finds whatever lost its event, and moves it on.
    a_while_ago = utcnow() - timedelta(minutes=5)
    session.execute(
        update(ApprovalRequest)
        .where(col(ApprovalRequest.improvement_id).in_(ids))
        .values(decided_at=a_while_ago)
    )
    session.execute(
        update(Improvement).where(col(Improvement.id) == late).values(created_at=a_while_ago)
    )
    session.commit()
    await run_sweep()

    for improvement_id in ids:
        detail = await wait_for_status(web, improvement_id, "in_progress")
        assert [a["status"] for a in detail["approvals"]] == ["approved"]
        # The web app's Prefect client sends again the events the lost server never confirmed
        # (its checkpoint is every 30 s), and the new server has forgotten which it saw: the
        # submission comes back too, and its route run may be the one that plans. Either way,
        # once.
        (asked, approved, planned) = history(detail)[2:5]
        assert asked == ("awaiting_approval", "awaiting_approval", alex.email, "email")
        assert approved == ("awaiting_approval", "approved", "advance-improvement", "flow")
        assert planned in {
            ("approved", "in_progress", "advance-improvement", "flow"),
            ("approved", "in_progress", "route-improvement", "flow"),
        }
        assert len(detail["history"]) == 5
    await wait_for_mail(smtp, sam.email, "Action for you", count=4)
    await wait_for_mail(smtp, alex.email, f"IMP-{late}")
    assert read(web, late)["status"] == "awaiting_approval"
    await wait_for_quiet()
    assert len(mail_to(smtp, sam.email, "Approved")) == 2
    assert len(mail_to(smtp, sam.email, "Action for you")) == 4
    assert len(mail_to(smtp, alex.email)) == 3
    assert_each_email_once(smtp)
    for improvement_id in ids:
        assert [r.status for r in outbox(session, improvement_id)] == [OutboxStatus.sent] * 4
    assert [r.status for r in outbox(session, late)] == [OutboxStatus.sent]
    # Every flow run for them ended well: none was left crashed by the lost server.
    for improvement_id in [*ids, late]:
        assert_none_failed(await runs_for(improvement_id, started))


@contextmanager
def prefect_server_down(stack: Stack) -> Iterator[list[str]]:
    """The Prefect server killed; on leaving, started again by `improve up`'s supervisor, which
    then starts a new runner too. Gives the lines the supervisor said."""
    said: list[str] = []
    supervisor = Supervisor(stack, say=said.append)
    server = stack.child("prefect-server")
    os.killpg(server.process.pid, signal.SIGKILL)  # its own process group: all of it
    server.process.wait(timeout=10)
    try:
        yield said
    finally:
        # Also after a failure: the tests after this one need the stack whole.
        deadline = time.monotonic() + DEADLINE
        while supervisor.due or "prefect-server restarted" not in said:
            assert time.monotonic() < deadline, f"not restarted in {DEADLINE:.0f} s: {said}"
            supervisor.check()
            time.sleep(0.2)
        stack.wait_until_served()
        stack.check_alive()


def _approvals(session: Session, improvement_id: int) -> list[ApprovalRequest]:
    session.expire_all()
    return list(
        session.exec(
            select(ApprovalRequest).where(ApprovalRequest.improvement_id == improvement_id)
        ).all()
    )


# --- races -----------------------------------------------------------------------------------


async def test_one_approval_link_posted_twenty_times_at_once_decides_once(
    session: Session, smtp: SmtpServer, web: httpx.Client, started: datetime
) -> None:
    # One live request per level (tasks/routing.py asks one approver a level, and a reminder or
    # an escalation replaces the link), so "decided at once" is one link posted many times:
    # a double click, two devices, a mail scanner that follows forms.
    sam = make_colleague(session, "Sam Submitter")
    alex = make_approver(session, "Alex Approver", category=Category.resource)
    improvement_id = submit(web, sam)
    (request,) = await wait_for_mail(smtp, alex.email, f"IMP-{improvement_id}")
    (link,) = links(request, "approvals")
    await wait_for_runs(improvement_id, started, "route")

    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        answers = await asyncio.gather(
            *(
                client.post(link, data={"decision": "approve", "comment": f"Yes ({n})"})
                for n in range(20)
            )
        )

    assert Counter(a.status_code for a in answers) == {200: 1, 410: 19}, [
        (a.status_code, a.text[:200]) for a in answers if a.status_code not in (200, 410)
    ]
    (won,) = [n for n, a in enumerate(answers) if a.status_code == 200]
    for lost in (a for a in answers if a.status_code == 410):
        assert "already been used" in lost.text, lost.text
    (approval,) = _approvals(session, improvement_id)
    assert (approval.status, approval.comment) == (ApprovalStatus.approved, f"Yes ({won})")

    await wait_for_mail(smtp, sam.email, "Action for you", count=2)
    await wait_for_quiet()
    runs = await wait_for_runs(improvement_id, started, "advance")
    assert len(of_flow(runs, "advance")) == 1
    assert transitions(session, improvement_id) == [
        (None, Status.submitted, sam.email),
        (Status.submitted, Status.awaiting_approval, "route-improvement"),
        (Status.awaiting_approval, Status.awaiting_approval, alex.email),
        (Status.awaiting_approval, Status.approved, "advance-improvement"),
        (Status.approved, Status.in_progress, "advance-improvement"),
    ]
    assert len(mail_to(smtp, sam.email, "Action for you")) == 2
    assert len(mail_to(smtp, sam.email, "Approved")) == 1
    assert_each_email_once(smtp)


async def test_the_submitted_event_delivered_ten_times_routes_the_improvement_once(
    session: Session, smtp: SmtpServer, web: httpx.Client, started: datetime
) -> None:
    sam = make_colleague(session, "Sam Submitter")
    alex = make_approver(session, "Alex Approver", category=Category.resource)
    improvement_id = submit(web, sam)  # the web app announces it: the first delivery
    for _ in range(9):  # at-least-once delivery: the same announcement nine times more
        events.emit_submitted(
            improvement_id=improvement_id, submitter_id=sam.id, channel=Channel.api
        )

    await wait_for_runs(improvement_id, started, "route", count=10)
    await wait_for_quiet()
    runs = await wait_for_runs(improvement_id, started, "route", count=10)

    assert [r.state_type for r in of_flow(runs, "route")] == [StateType.COMPLETED] * 10, [
        (r.name, r.state_name) for r in runs
    ]
    assert_none_failed(runs)
    (approval,) = _approvals(session, improvement_id)
    assert (approval.approver_id, approval.status) == (alex.id, ApprovalStatus.pending)
    (row,) = outbox(session, improvement_id)
    assert (row.template, row.status, row.attempts) == ("approval_request", OutboxStatus.sent, 1)
    (request,) = mail_to(smtp, alex.email)
    assert request.message_id == row.message_id
    assert transitions(session, improvement_id) == [
        (None, Status.submitted, sam.email),
        (Status.submitted, Status.awaiting_approval, "route-improvement"),
    ]
    assert_each_email_once(smtp)


async def test_the_decided_event_delivered_ten_times_plans_the_improvement_once(
    session: Session, smtp: SmtpServer, web: httpx.Client, started: datetime
) -> None:
    sam = make_colleague(session, "Sam Submitter")
    alex = make_approver(session, "Alex Approver", category=Category.resource)
    improvement_id = submit(web, sam)
    (request,) = await wait_for_mail(smtp, alex.email, f"IMP-{improvement_id}")
    await wait_for_runs(improvement_id, started, "route")

    decide(web, links(request, "approvals")[0], "approve")  # the web app announces it once
    (approval,) = _approvals(session, improvement_id)
    for _ in range(9):  # and it is delivered nine times more
        events.emit(
            events.APPROVAL_DECIDED,
            improvement_id=improvement_id,
            related=[("approver", f"improve.colleague.{alex.id}")],
            payload={"approval_id": approval.id, "decision": "approved", "level": 1},
        )

    await wait_for_runs(improvement_id, started, "advance", count=10)
    await wait_for_quiet()
    runs = await wait_for_runs(improvement_id, started, "advance", count=10)

    assert [r.state_type for r in of_flow(runs, "advance")] == [StateType.COMPLETED] * 10, [
        (r.name, r.state_name) for r in runs
    ]
    assert_none_failed(runs)
    session.expire_all()
    actions = session.exec(select(ActionItem).filter_by(improvement_id=improvement_id)).all()
    assert len(actions) == len(steps_for(Category.resource, has_partners=False))
    assert transitions(session, improvement_id) == [
        (None, Status.submitted, sam.email),
        (Status.submitted, Status.awaiting_approval, "route-improvement"),
        (Status.awaiting_approval, Status.awaiting_approval, alex.email),
        (Status.awaiting_approval, Status.approved, "advance-improvement"),
        (Status.approved, Status.in_progress, "advance-improvement"),
    ]
    assert len(mail_to(smtp, sam.email, "Approved")) == 1
    assert len(mail_to(smtp, sam.email, "Action for you")) == 2
    assert [delivered(smtp, r) for r in outbox(session, improvement_id)] == [1] * 4
    assert_each_email_once(smtp)
