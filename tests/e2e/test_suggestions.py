"""A customer's suggestion on the running stack: from the public page to completion, with the
customer told at each turn, driven over HTTP and email as people drive it."""

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest
from sqlmodel import Session, select

from improve.settings import settings
from improve.stack import Stack
from models import Category, Improvement, Source, Suggestion
from tests.e2e.helpers import eventually, links, mail_to, wait_for_mail
from tests.e2e.test_lifecycle import assert_each_email_once, decide, history, wait_for_status
from tests.factories import make_approver
from tests.smtpd import SmtpServer

pytestmark = pytest.mark.e2e
RUTH = "ruth.ames@example.com"


@pytest.fixture
def person(stack: Stack) -> Iterator[httpx.Client]:
    """A member of the public's browser: nobody signed in."""
    with httpx.Client(base_url=stack.web_url, timeout=30.0) as client:
        yield client


async def test_a_suggestion_from_the_public_page_to_completion_with_the_customer_told(
    session: Session, smtp: SmtpServer, web: httpx.Client, stack: Stack, person: httpx.Client
) -> None:
    pat = make_approver(session, "Pat Process", category=Category.process, limit=5_000)

    # Ruth opens the form, takes her time writing (longer than the bots' time check), sends it.
    form = person.get("/suggest")
    assert form.status_code == 200
    stamp = re.search(r'name="shown" value="([^"]+)"', form.text)
    assert stamp is not None
    await asyncio.sleep(settings.suggestion_min_seconds + 0.5)
    sent = person.post(
        "/suggest",
        data={
            "name": "Ruth Ames",
            "email": RUTH,
            "title": "Tell me about planned works by email, not by letter",
            "description": "Three letters came about the same road works last month.",
            "category": "process",
            "website": "",
            "shown": stamp.group(1),
        },
    )
    assert sent.status_code == 200 and "Check your email" in sent.text, sent.text

    # Nothing happens until she confirms: just the email with the link.
    (confirmation,) = await wait_for_mail(smtp, RUTH, "Please confirm your suggestion")
    (link,) = re.findall(r"https?://\S+/suggest/confirm/\d+/\S+", confirmation.text)
    assert link.startswith(stack.web_url)
    assert session.exec(select(Improvement)).all() == []
    shown = person.get(link)  # her mail client's scanner, or Ruth: changes nothing
    assert shown.status_code == 200 and "Confirm my suggestion" in shown.text
    assert session.exec(select(Improvement)).all() == []
    confirmed = person.post(link)
    assert confirmed.status_code == 200, confirmed.text
    session.expire_all()
    suggestion = session.exec(select(Suggestion)).one()
    improvement_id = suggestion.improvement_id
    assert improvement_id is not None and f"IMP-{improvement_id}" in confirmed.text

    # Routed like any other: the approver's email, a page that shows, a button that decides.
    (request,) = await wait_for_mail(smtp, pat.email, f"IMP-{improvement_id}")
    (approve_link,) = links(request, "approvals")
    assert "Tell me about planned works" in web.get(approve_link).text
    decide(web, approve_link, "approve", "Yes: fewer letters, fewer complaints")

    # Planned, so Ruth hears it is going ahead and by when.
    (going_ahead,) = await wait_for_mail(smtp, RUTH, "Your suggestion is going ahead")
    assert "We plan to have it done by" in going_ahead.text
    assert "/suggest" in going_ahead.text  # every customer email invites the next idea
    assert going_ahead.message["List-Unsubscribe"]

    # Nobody submitted it as a colleague, so the approver owns the process playbook's steps.
    assignments = await wait_for_mail(smtp, pat.email, "Action for you", count=4)
    for step in sorted(link for m in assignments for link in links(m, "actions")):
        done = web.post(step, data={"note": "Done"})
        assert done.status_code == 200, done.text

    # Completed and announced: Ruth, the customer it came from, hears what changed.
    detail = await wait_for_status(web, improvement_id, "completed")
    (notice,) = await wait_for_mail(smtp, RUTH, "We have improved our service")
    assert "Tell me about planned works by email" in notice.text
    assert detail["source"] == Source.customer
    assert history(detail)[0] == (None, "submitted", RUTH, "web")
    assert history(detail)[-1][1] == "completed"
    await eventually(
        lambda: len(mail_to(smtp, RUTH)) == 3 or None,
        "Ruth's three emails",
        lambda: "\n".join(m.subject for m in mail_to(smtp, RUTH)),
    )
    assert [m.subject.strip().split(":")[0] for m in mail_to(smtp, RUTH)] == [
        "Please confirm your suggestion",
        "Your suggestion is going ahead",
        "We have improved our service",
    ]
    assert_each_email_once(smtp)
