"""A customer case on the running stack: its update falls due, the sweep raises it once, the
owner follows the email to the send-update page, edits and sends, and the customer hears once."""

import re
from datetime import datetime, timedelta

import httpx
import pytest
from sqlmodel import Session, select

from improve.stack import Stack
from models import ActionItem, ActionStatus, Case, CaseUpdate, Category, Improvement, Status
from models.db import utcnow
from tests.e2e.helpers import browser_of, eventually, run_sweep, wait_for_mail, wait_for_runs
from tests.factories import make_colleague, make_customer
from tests.smtpd import SmtpServer
from tests.web.helpers import snapshot

pytestmark = pytest.mark.e2e


def customer_updates(session: Session) -> list[Improvement]:
    session.expire_all()
    return list(
        session.exec(
            select(Improvement).where(Improvement.category == Category.customer_update)
        ).all()
    )


async def test_a_delayed_case_whose_update_falls_due_gets_one_update_from_its_owner(
    session: Session, smtp: SmtpServer, web: httpx.Client, stack: Stack, started: datetime
) -> None:
    mo = make_colleague(session, "Mo Manager", role="Team Leader")
    asha = make_colleague(session, "Asha Owner", manager_id=mo.id)
    ruth = make_customer(session, "Ruth Evans")

    # Opened through the API for Asha, then delayed: her next update is due in two seconds.
    opened = web.post(
        "/api/cases",
        json={"customer_email": ruth.email, "subject": "New water meter",
              "owner_email": asha.email},
    )  # fmt: skip
    assert opened.status_code == 201, opened.text
    case_id = opened.json()["id"]
    due = utcnow() + timedelta(seconds=2)
    delayed = web.patch(
        f"/api/cases/{case_id}",
        json={"delay": {"reason": "The meter is on back order",
                        "next_update_due": due.isoformat()}},
    )  # fmt: skip
    assert delayed.status_code == 200, delayed.text
    await eventually(lambda: utcnow() > due, "the update to fall due", lambda: "not yet")

    # The sweep raises exactly one customer_update improvement and announces it.
    await run_sweep()
    [raised] = customer_updates(session)
    assert raised.submitter_id == asha.id and raised.title.startswith("Update overdue: CASE-")
    await wait_for_runs(raised.id, started, "route")

    # Asha's email leads to the case's send-update page.
    [assigned] = await wait_for_mail(smtp, asha.email, f"CASE-{case_id}")
    [link] = re.findall(rf"https?://\S+/cases/{case_id}/update", assigned.text)
    assert link.startswith(stack.web_url)
    with browser_of(stack, asha.id) as browser:
        before = snapshot()
        form = browser.get(link)
        assert form.status_code == 200, form.text
        assert snapshot() == before  # GET changes nothing
        assert "Dear Ruth Evans," in form.text and "back order" in form.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        key = re.search(r'name="key" value="([^"]+)"', form.text)
        assert csrf and key

        sent = browser.post(
            link,
            data={"csrf_token": csrf.group(1), "key": key.group(1), "next_update_due": "",
                  "subject": "Your new water meter",
                  "body": "Dear Ruth,\n\nThe meter arrives on Tuesday; we will fit it then."},
        )  # fmt: skip
        assert sent.status_code == 303, sent.text

    # Ruth gets the update, once; the improvement completes.
    [update] = await wait_for_mail(smtp, ruth.email, "Your new water meter")
    assert "arrives on Tuesday" in update.text
    await eventually(
        lambda: [i for i in customer_updates(session) if i.status == Status.completed],
        f"{raised.reference} to complete",
        lambda: str([(i.reference, i.status) for i in customer_updates(session)]),
    )
    session.expire_all()
    [item] = session.exec(select(ActionItem).where(ActionItem.improvement_id == raised.id)).all()
    assert item.status == ActionStatus.done and item.completed_by == asha.email
    case = session.get(Case, case_id)
    assert case is not None and case.overdue_improvement_id is None
    assert len(session.exec(select(CaseUpdate)).all()) == 1

    # Another sweep raises nothing new, and nobody hears twice.
    await run_sweep()
    assert len(customer_updates(session)) == 1
    assert len([m for m in smtp.received if ruth.email in m.recipients]) == 1
    assert not [m for m in smtp.received if mo.email in m.recipients]  # it did not sit
