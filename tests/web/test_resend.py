"""Sending a failed email again from the improvement page: operations and admins only, by a form
that carries the CSRF token; the outbox sends it, its link still working."""

import re
from urllib.parse import urlsplit

import httpx
import pytest
from sqlmodel import Session, select, update

from models import (
    Access,
    ApprovalRequest,
    ApprovalStatus,
    Category,
    Channel,
    Improvement,
    OutboxEmail,
    OutboxStatus,
)
from tasks.approvals import route_improvement
from tasks.mail import queue_email
from tasks.outbox import send_due
from tests.factories import make_approver, make_colleague, make_improvement
from tests.smtpd import SmtpServer
from tests.web.conftest import Events, sign_in
from tests.web.helpers import snapshot

APPROVE_LINK = re.compile(r"https?://\S+/approvals/\S+")
FORM = re.compile(
    r'<form method="post" action="(/improvements/\d+/emails/\d+/resend)">\s*'
    r'<input type="hidden" name="csrf_token" value="([^"]+)">'
)


def fresh(session: Session, row: OutboxEmail) -> OutboxEmail:
    session.commit()
    got = session.get(OutboxEmail, row.id, populate_existing=True)
    assert got is not None
    return got


def failed_email(session: Session, improvement: Improvement, key: str = "t:1") -> OutboxEmail:
    """An email about `improvement` that the server refused for good."""
    row = queue_email(
        session=session,
        key=key,
        to="bea.jones@example.org",
        template="decision",
        context={},
        improvement_id=improvement.id,
    )
    session.commit()
    session.exec(
        update(OutboxEmail)
        .where(OutboxEmail.id == row.id)  # type: ignore[arg-type]
        .values(status=OutboxStatus.failed, attempts=1, last_error="550 5.1.1 No such user here")
    )
    session.commit()
    return fresh(session, row)


def resend_path(improvement: Improvement, row: OutboxEmail) -> str:
    return f"/improvements/{improvement.id}/emails/{row.id}/resend"


async def test_a_failed_approval_request_is_sent_again_from_the_page_and_its_link_works(
    client: httpx.AsyncClient, session: Session, smtp: SmtpServer, events: Events
) -> None:
    bea = make_approver(session, "Bea Jones", category=Category.resource, limit=10_000)
    made = await client.post(
        "/api/improvements", json={"title": "Paperless bills", "category": "resource"}
    )
    improvement_id = made.json()["id"]
    route_improvement(
        session=session, improvement_id=improvement_id, actor="flow", channel=Channel.flow
    )
    session.commit()
    smtp.refuse_next("550 5.1.1 No such user here")
    assert (await send_due())["failed"] == 1
    row = session.exec(select(OutboxEmail)).one()

    page = (await client.get(f"/improvements/{improvement_id}")).text
    [(action, csrf_token)] = FORM.findall(page)
    assert action == f"/improvements/{improvement_id}/emails/{row.id}/resend"
    assert "Send again" in page

    # As the browser sends it: the token from the form's hidden field, no header.
    del client.headers["X-CSRF-Token"]
    answer = await client.post(action, data={"csrf_token": csrf_token})

    assert answer.status_code == 303
    assert answer.headers["location"] == f"/improvements/{improvement_id}#emails"
    row = fresh(session, row)
    assert (row.status, row.attempts) == (OutboxStatus.queued, 0)
    assert row.last_error.startswith("queued again by Olu Operations on ")
    after = (await client.get(answer.headers["location"])).text
    assert "queued again by Olu Operations" in after and not FORM.search(after)

    assert await send_due() == {"sent": 1, "deferred": 0, "failed": 0, "skipped": 0}
    [received] = smtp.received
    assert received.recipients == [bea.email]
    [url] = APPROVE_LINK.findall(received.text)
    parts = urlsplit(url)
    assert (await client.get(parts.path)).status_code == 200
    decided = await client.post(parts.path, data={"decision": "approve"})
    assert decided.status_code == 200, decided.text
    approval = session.exec(select(ApprovalRequest)).one()
    session.refresh(approval)
    assert approval.status == ApprovalStatus.approved


@pytest.mark.parametrize("access", [Access.operations, Access.admin])
async def test_operations_and_admins_may_send_again(
    anonymous: httpx.AsyncClient, session: Session, access: Access
) -> None:
    sign_in(anonymous, make_colleague(session, "Kim Lee", access=access))
    improvement = make_improvement(session, None)
    row = failed_email(session, improvement)

    answer = await anonymous.post(resend_path(improvement, row))

    assert answer.status_code == 303
    assert fresh(session, row).status == OutboxStatus.queued


async def test_a_colleague_sees_no_button_and_is_refused(
    anonymous: httpx.AsyncClient, session: Session
) -> None:
    sign_in(anonymous, make_colleague(session, "Lucy Evans", access=Access.colleague))
    improvement = make_improvement(session, None)
    row = failed_email(session, improvement)

    page = (await anonymous.get(f"/improvements/{improvement.id}")).text
    assert "550 5.1.1 No such user here" in page
    assert not FORM.search(page) and "Send again" not in page
    before = snapshot()
    refused = await anonymous.post(resend_path(improvement, row))

    assert refused.status_code == 403
    assert "This needs the operations role" in refused.text
    assert snapshot() == before


async def test_without_the_csrf_token_nothing_is_sent_again(
    client: httpx.AsyncClient, session: Session
) -> None:
    improvement = make_improvement(session, None)
    row = failed_email(session, improvement)
    del client.headers["X-CSRF-Token"]
    before = snapshot()

    refused = await client.post(resend_path(improvement, row), data={"csrf_token": "forged"})

    assert refused.status_code == 403 and "CSRF token" in refused.text
    assert snapshot() == before


async def test_only_a_failed_email_of_this_improvement_can_be_sent_again(
    client: httpx.AsyncClient, session: Session
) -> None:
    improvement = make_improvement(session, None)
    other = make_improvement(session, None, title="Duplex printing")
    theirs = failed_email(session, other, key="t:other")
    sent = failed_email(session, improvement, key="t:sent")
    skipped = failed_email(session, improvement, key="t:skipped")
    for row, status in ((sent, OutboxStatus.sent), (skipped, OutboxStatus.skipped)):
        session.exec(
            update(OutboxEmail)
            .where(OutboxEmail.id == row.id)  # type: ignore[arg-type]
            .values(status=status)
        )
    session.commit()
    page = (await client.get(f"/improvements/{improvement.id}")).text
    assert not FORM.search(page)  # neither a sent nor a skipped email offers it
    before = snapshot()

    foreign = await client.post(resend_path(improvement, theirs))
    unknown = await client.post(f"/improvements/{improvement.id}/emails/999999/resend")
    not_failed = [await client.post(resend_path(improvement, r)) for r in (sent, skipped)]

    assert foreign.status_code == 404 and f"email {theirs.id} not found" in foreign.text
    assert unknown.status_code == 404 and "email 999999 not found" in unknown.text
    for answer, row, status in zip(not_failed, (sent, skipped), ("sent", "skipped"), strict=True):
        assert answer.status_code == 409
        assert f"email {row.id} to bea.jones@example.org is {status}" in answer.text
        assert "only a failed email can be sent again" in answer.text
    assert snapshot() == before
