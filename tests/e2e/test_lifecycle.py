"""An improvement's life on the running stack, driven over HTTP and email as people drive it."""

from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from sqlalchemy import update
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from improve import events
from improve.cli import app
from improve.settings import settings
from improve.stack import Stack
from models import (
    ApprovalRequest,
    ApprovalStatus,
    Category,
    Channel,
    ContactFormat,
    OutboxEmail,
    OutboxStatus,
    Purpose,
)
from models.db import session_scope, utcnow
from tasks.access import create_api_token
from tasks.decisions import record_decision
from tests.e2e.helpers import (
    eventually,
    links,
    mail_to,
    of_flow,
    run_sweep,
    snapshot,
    wait_for_mail,
    wait_for_runs,
)
from tests.factories import make_approver, make_colleague, make_customer, make_partner
from tests.smtpd import SmtpServer

pytestmark = pytest.mark.e2e
DEADLINE_SECONDS = 120


def submit(web: httpx.Client, submitter: Any, **fields: Any) -> int:
    """Submit an improvement through the JSON API as `submitter`, with their own API token."""
    with session_scope() as session:
        _, token = create_api_token(session=session, email=submitter.email, name="e2e")
    body = {
        "title": "Paperless statements for account customers",
        "description": "Send statements by email to customers who agreed to hear from us.",
        "category": "resource",
        "estimated_cost": 1_200,
        "annual_saving": 4_000,
        "kg_co2e": 90,
        "sheets_paper": 24_000,
        **fields,
    }
    response = web.post(
        "/api/improvements", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def read(web: httpx.Client, improvement_id: int) -> dict[str, Any]:
    response = web.get(f"/api/improvements/{improvement_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def wait_for_status(web: httpx.Client, improvement_id: int, status: str) -> dict[str, Any]:
    return await eventually(
        lambda: found if (found := read(web, improvement_id))["status"] == status else None,
        f"IMP-{improvement_id} to be {status}",
        lambda: f"  status {read(web, improvement_id)['status']}",
    )


def outbox_to(session: Session, recipient: str) -> list[OutboxEmail]:
    session.expire_all()
    return list(
        session.exec(
            select(OutboxEmail)
            .where(OutboxEmail.recipient == recipient)
            .order_by(col(OutboxEmail.id))
        ).all()
    )


def history(detail: dict[str, Any]) -> list[tuple[str | None, str, str, str]]:
    return [(h["from_status"], h["to_status"], h["actor"], h["channel"]) for h in detail["history"]]


def decide(web: httpx.Client, link: str, decision: str, comment: str = "") -> httpx.Response:
    response = web.post(link, data={"decision": decision, "comment": comment})
    assert response.status_code == 200, response.text
    return response


def assert_each_email_once(smtp: SmtpServer) -> None:
    repeated = [mid for mid, n in Counter(m.message_id for m in smtp.received).items() if n > 1]
    assert repeated == [], f"sent more than once: {repeated}"


async def test_from_submission_to_measured_result(
    session: Session, smtp: SmtpServer, web: httpx.Client, stack: Stack, started: datetime
) -> None:
    sam = make_colleague(session, "Sam Submitter")
    alex = make_approver(session, "Alex Approver", category=Category.resource, limit=5_000)
    kim = make_customer(session, "Kim Keen")
    pat = make_customer(session, "Pat Plain", contact_format=ContactFormat.text)
    quinn = make_customer(session, "Quinn Quiet", consents=(Purpose.policy_news,))
    nia = make_customer(session, "Nia Nant", language="cy")
    # Wyn takes non-urgent email in an hour's window that opens six hours from now.
    local = datetime.now(ZoneInfo(settings.timezone))
    opens, shuts = ((local + timedelta(hours=h)).time().replace(second=0, microsecond=0)
                    for h in (6, 7))  # fmt: skip
    wyn = make_customer(session, "Wyn Window", contact_from=opens, contact_until=shuts)
    printer = make_partner(session, "Print & Post Ltd", contact_name="Jo Printer")

    improvement_id = submit(
        web, sam, customer_emails=[kim.email, pat.email, quinn.email, nia.email, wyn.email],
        partner_emails=[printer.email],
    )  # fmt: skip

    # The approver's email arrives; its link opens a page that changes nothing.
    (request,) = await wait_for_mail(smtp, alex.email, f"IMP-{improvement_id}")
    (approve_link,) = links(request, "approvals")
    assert approve_link.startswith(stack.web_url)
    before = snapshot(session, improvement_id)
    page = web.get(approve_link)
    assert page.status_code == 200 and "Paperless statements" in page.text
    assert web.head(approve_link).status_code == 200
    assert snapshot(session, improvement_id) == before

    decide(web, approve_link, "approve", "Good idea: go ahead")

    # The plan: the submitter owns two steps a person does, each with its own email and link.
    assignments = await wait_for_mail(smtp, sam.email, "Action for you", count=2)
    await wait_for_mail(smtp, sam.email, "Approved")
    action_links = sorted((link for m in assignments for link in links(m, "actions")), key=_id)
    assert len(action_links) == 2
    agree, measure = action_links
    before = snapshot(session, improvement_id)
    assert web.get(agree).status_code == 200
    assert snapshot(session, improvement_id) == before

    done = web.post(agree, data={"note": "Billing agreed the switch for the next cycle"})
    assert done.status_code == 200, done.text
    # The automatic steps now run: customers switched and told, partners told.
    await wait_for_mail(smtp, kim.email)
    await wait_for_mail(smtp, printer.email)
    assert web.get(measure).status_code == 200
    done = web.post(
        measure, data={"measured_saving": "3500", "measured_kg_co2e": "80", "note": "One cycle"}
    )
    assert done.status_code == 200, done.text

    # Completed, then announced: everyone it touched hears once more, with the result.
    detail = await wait_for_status(web, improvement_id, "completed")
    await wait_for_mail(smtp, kim.email, count=2)
    await wait_for_mail(smtp, pat.email, count=2)
    await wait_for_mail(smtp, nia.email, count=2)
    await wait_for_mail(smtp, printer.email, count=2)
    await wait_for_mail(smtp, sam.email, "complete")

    assert detail["measured_saving"] == 3500 and detail["measured_kg_co2e"] == 80
    assert history(detail) == [
        (None, "submitted", sam.email, "api"),
        ("submitted", "awaiting_approval", "route-improvement", "flow"),
        ("awaiting_approval", "awaiting_approval", alex.email, "email"),
        ("awaiting_approval", "approved", "advance-improvement", "flow"),
        ("approved", "in_progress", "advance-improvement", "flow"),
        ("in_progress", "completed", "advance-improvement", "flow"),
    ]
    assert {a["status"] for a in detail["actions"]} == {"done"}
    assert mail_to(smtp, quinn.email) == []  # no consent to improvement updates
    assert all(m.message.get_content_type() == "text/plain" for m in mail_to(smtp, pat.email))
    # The Welsh reader hears both times in Welsh, footer and all.
    for welsh in mail_to(smtp, nia.email):
        # (.strip(): a long subject may be folded whole onto the next line, which is legitimate)
        assert welsh.subject.strip().startswith("Rydym wedi gwella ein gwasanaeth: Paperless")
        assert "Annwyl Nia Nant" in welsh.text and "Gwasanaeth Cwsmeriaid" in welsh.text
        assert welsh.message["List-Unsubscribe"]
    assert all(m.message["List-Unsubscribe"] for m in mail_to(smtp, kim.email))
    assert not any(m.message["List-Unsubscribe"] for m in mail_to(smtp, alex.email))
    # Wyn's two notices wait for her window, using no attempt; opened now, the sweep sends them.
    assert mail_to(smtp, wyn.email) == []
    # A sender judges a batch of rows at once: a row is "sending" until its batch is recorded.
    held = await eventually(
        lambda: (
            rows
            if len(rows := outbox_to(session, wyn.email)) == 2
            and all(r.status != OutboxStatus.sending for r in rows)
            else None
        ),
        "Wyn's two notices to be judged",
        lambda: str([(r.status, r.last_error) for r in outbox_to(session, wyn.email)]),
    )
    assert [(r.status, r.attempts) for r in held] == [(OutboxStatus.queued, 0)] * 2
    assert all("held until" in r.last_error for r in held), [r.last_error for r in held]
    said = CliRunner().invoke(app, ["customer", "set", wyn.email, "--window", "any"])
    assert said.exit_code == 0, said.output
    await run_sweep()
    await wait_for_mail(smtp, wyn.email, count=2)
    assert_each_email_once(smtp)

    # Operations read the same story in the Prefect UI.
    runs = await wait_for_runs(improvement_id, started, "announce")
    title = "Paperless statements for account customers"
    assert {r.name for r in runs} == {
        f"{verb} · IMP-{improvement_id} {title}" for verb in ("route", "advance", "announce")
    }
    assert all({f"IMP-{improvement_id}", "resource"} <= set(r.tags) for r in runs)
    assert all(r.state_type == StateType.COMPLETED for r in runs), [r.state_name for r in runs]


def _id(link: str) -> int:
    return int(link.rsplit("/", 2)[-2])


async def test_a_rejection_tells_the_submitter_why_kindly(
    session: Session, smtp: SmtpServer, web: httpx.Client
) -> None:
    sam = make_colleague(session, "Sam Submitter")
    alex = make_approver(session, "Alex Approver", category=Category.resource)
    improvement_id = submit(web, sam)

    (request,) = await wait_for_mail(smtp, alex.email, f"IMP-{improvement_id}")
    (link,) = links(request, "approvals")
    refused = web.post(link, data={"decision": "reject", "comment": ""})
    assert refused.status_code == 422 and read(web, improvement_id)["status"] == "awaiting_approval"
    reason = "The billing system cannot send e-statements until the upgrade in spring"
    decide(web, link, "reject", reason)

    (decision,) = await wait_for_mail(smtp, sam.email, f"IMP-{improvement_id}")
    assert reason in decision.text and "Alex Approver" in decision.text
    detail = await wait_for_status(web, improvement_id, "rejected")
    assert history(detail)[-2:] == [
        ("awaiting_approval", "awaiting_approval", alex.email, "email"),
        ("awaiting_approval", "rejected", "advance-improvement", "flow"),
    ]
    assert reason in detail["history"][-1]["reason"]
    assert detail["actions"] == [] and mail_to(smtp, sam.email, "Action for you") == []
    assert web.get(link).status_code == 410  # the link is used up
    assert_each_email_once(smtp)


async def test_two_levels_ask_the_second_approver_only_after_the_first(
    session: Session, smtp: SmtpServer, web: httpx.Client, started: datetime
) -> None:
    sam = make_colleague(session, "Sam Submitter")
    lee = make_approver(session, "Lee Level-One", category=Category.resource, limit=20_000)
    dana = make_approver(
        session, "Dana Director", category=Category.resource, limit=100_000, level=2
    )
    cost = settings.two_level_threshold + 5_000
    improvement_id = submit(web, sam, estimated_cost=cost)

    (first,) = await wait_for_mail(smtp, lee.email, f"IMP-{improvement_id}")
    await wait_for_runs(improvement_id, started, "route")
    assert mail_to(smtp, dana.email) == []
    decide(web, links(first, "approvals")[0], "approve", "Worth it")

    (second,) = await wait_for_mail(smtp, dana.email, f"IMP-{improvement_id}")
    assert read(web, improvement_id)["status"] == "awaiting_approval"
    decide(web, links(second, "approvals")[0], "approve")

    await wait_for_mail(smtp, sam.email, "Action for you", count=2)
    detail = read(web, improvement_id)
    assert detail["status"] == "in_progress"
    assert [(a["level"], a["approver_name"], a["status"]) for a in detail["approvals"]] == [
        (1, "Lee Level-One", "approved"),
        (2, "Dana Director", "approved"),
    ]
    assert [(h["actor"], h["channel"]) for h in detail["history"][2:5]] == [
        (lee.email, "email"),
        ("advance-improvement", "flow"),  # the second level asked
        (dana.email, "email"),
    ]
    assert_each_email_once(smtp)


async def test_an_absent_approvers_deputy_decides_on_their_behalf(
    session: Session, smtp: SmtpServer, web: httpx.Client
) -> None:
    sam = make_colleague(session, "Sam Submitter")
    robin = make_colleague(session, "Robin Deputy")
    today = date.today()
    alex = make_approver(
        session, "Alex Approver", category=Category.resource, deputy_id=robin.id,
        absent_from=today - timedelta(days=1), absent_to=today + timedelta(days=7),
    )  # fmt: skip
    improvement_id = submit(web, sam)

    (request,) = await wait_for_mail(smtp, robin.email, f"IMP-{improvement_id}")
    assert "Alex Approver" in request.text  # the email says for whom
    decide(web, links(request, "approvals")[0], "approve", "Approving while Alex is away")

    await wait_for_mail(smtp, sam.email, "Action for you", count=2)
    detail = read(web, improvement_id)
    (approval,) = detail["approvals"]
    assert (approval["approver_name"], approval["on_behalf_of_name"]) == (
        "Robin Deputy",
        "Alex Approver",
    )
    decision = detail["history"][2]
    assert (decision["actor"], decision["channel"]) == (robin.email, "email")
    assert "Robin Deputy approved on behalf of Alex Approver" in decision["reason"]
    assert mail_to(smtp, alex.email) == []


async def test_a_lost_decision_event_is_recovered_by_the_sweep(
    session: Session, smtp: SmtpServer, web: httpx.Client, started: datetime
) -> None:
    sam = make_colleague(session, "Sam Submitter")
    alex = make_approver(session, "Alex Approver", category=Category.resource)
    improvement_id = submit(web, sam)
    await wait_for_mail(smtp, alex.email, f"IMP-{improvement_id}")

    # The decision is committed but its event never reaches Prefect, as if the web app had
    # crashed after the commit; a while later the sweep runs.
    (request,) = session.exec(select(ApprovalRequest)).all()
    record_decision(
        session=session, approval_id=request.id, approve=True, comment="", channel=Channel.email
    )
    session.commit()
    session.execute(update(ApprovalRequest).values(decided_at=utcnow() - timedelta(minutes=5)))
    session.commit()
    assert read(web, improvement_id)["status"] == "awaiting_approval"

    async with get_client() as client:  # run_deployment leaves a client of its own open
        sweep = await run_deployment("sweep/sweep", timeout=DEADLINE_SECONDS, client=client)

    assert sweep.state is not None and sweep.state.is_completed(), sweep.state
    await wait_for_mail(smtp, sam.email, "Action for you", count=2)
    detail = read(web, improvement_id)
    assert detail["status"] == "in_progress"
    assert detail["approvals"][0]["status"] == ApprovalStatus.approved
    advanced = await wait_for_runs(improvement_id, started, "advance")
    # advanced by the sweep, as a subflow
    assert any(r.parent_task_run_id is not None for r in of_flow(advanced, "advance"))


async def test_the_same_event_twice_sends_no_second_email(
    session: Session, smtp: SmtpServer, web: httpx.Client, started: datetime
) -> None:
    sam = make_colleague(session, "Sam Submitter")
    alex = make_approver(session, "Alex Approver", category=Category.resource)
    improvement_id = submit(web, sam)
    await wait_for_mail(smtp, alex.email, f"IMP-{improvement_id}")
    (request,) = session.exec(select(ApprovalRequest)).all()
    record_decision(
        session=session, approval_id=request.id, approve=True, comment="", channel=Channel.email
    )
    session.commit()

    for _ in range(2):  # at-least-once delivery: the same decision announced twice
        events.emit(events.APPROVAL_DECIDED, improvement_id=improvement_id)

    runs = await wait_for_runs(improvement_id, started, "advance", count=2)
    assert [r.state_type for r in runs if r.name.startswith("advance")] == [
        StateType.COMPLETED,
        StateType.COMPLETED,
    ]
    assert len(mail_to(smtp, sam.email, "Action for you")) == 2
    assert len(mail_to(smtp, sam.email, "Approved")) == 1
    assert_each_email_once(smtp)
    assert read(web, improvement_id)["status"] == "in_progress"


async def test_goodwill_within_own_limit_is_approved_at_once_and_above_it_is_routed(
    session: Session, smtp: SmtpServer, web: httpx.Client, stack: Stack
) -> None:
    gail = make_approver(session, "Gail Goodwill", category=Category.goodwill, limit=500)
    mei = make_approver(session, "Mei Manager", category=Category.goodwill, limit=5_000)
    gesture = {"category": "goodwill", "description": "Flowers for a long wait"}

    small = submit(web, gail, title="Flowers for Mrs Ames", estimated_cost=40, **gesture)
    detail = await wait_for_status(web, small, "in_progress")
    assert detail["approvals"] == []  # nobody asked: her own limit covers it
    (approved,) = [h for h in detail["history"] if h["to_status"] == "approved"]
    assert "within own authority" in approved["reason"].lower()
    await wait_for_mail(smtp, gail.email, "Action for you")

    large = submit(web, gail, title="A month's bill waived", estimated_cost=900, **gesture)
    (request,) = await wait_for_mail(smtp, mei.email, f"IMP-{large}")
    assert links(request, "approvals")
    assert read(web, large)["status"] == "awaiting_approval"
    assert mail_to(smtp, mei.email, f"IMP-{small}") == []
    assert_each_email_once(smtp)
