"""The mail sink pages: the Maildir the local SMTP sink writes, listed newest first."""

import mailbox
import shutil
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

import httpx
import pytest

from improve.settings import settings
from models import OutboxEmail
from tasks.mail import build_message


@pytest.fixture
def maildir():
    path = settings.data_dir / "mailsink"
    shutil.rmtree(path, ignore_errors=True)
    box = mailbox.Maildir(path, create=True)
    yield box
    shutil.rmtree(path, ignore_errors=True)


def _message(subject: str, day: int, text: str, html: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Improve <improve@example.org>"
    message["To"] = "bea.jones@example.org"
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime(2026, 11, day, 9, 30, tzinfo=UTC))
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


async def test_no_maildir_yet_is_an_empty_list(client: httpx.AsyncClient) -> None:
    shutil.rmtree(settings.data_dir / "mailsink", ignore_errors=True)

    assert (await client.get("/api/mail")).json() == []
    page = await client.get("/mail")
    assert page.status_code == 200
    assert "No email yet" in page.text


async def test_messages_are_listed_newest_first_with_their_links(
    client: httpx.AsyncClient, maildir: mailbox.Maildir
) -> None:
    maildir.add(_message("Older", 2, "Nothing to click."))
    maildir.add(
        _message(
            "Please decide IMP-7",
            20,
            "Open http://127.0.0.1:8000/approvals/7/abc-DEF_123 to decide.\n"
            "(Or see <https://example.org/help>.)",
        )
    )
    maildir.add(_message("Middle", 10, "Hi"))

    api = (await client.get("/api/mail")).json()

    assert [m["subject"] for m in api] == ["Please decide IMP-7", "Middle", "Older"]
    newest = api[0]
    assert newest["from"] == "Improve <improve@example.org>"
    assert newest["to"] == ["bea.jones@example.org"]
    assert newest["date"].startswith("2026-11-20T09:30:00")
    assert "to decide." in newest["text"]
    assert newest["links"] == [
        "http://127.0.0.1:8000/approvals/7/abc-DEF_123",
        "https://example.org/help",
    ]
    page = await client.get("/mail")
    assert page.text.index("Please decide IMP-7") < page.text.index("Older")
    assert '<a href="http://127.0.0.1:8000/approvals/7/abc-DEF_123">' in page.text


async def test_a_message_page_shows_the_text_and_the_html_in_a_sandbox(
    client: httpx.AsyncClient, maildir: mailbox.Maildir
) -> None:
    key = maildir.add(
        _message(
            "Hello",
            5,
            "Plain <b>words</b>",
            html='<p>Rich</p><script>alert("x")</script><img src=x onerror=alert(1)>',
        )
    )

    response = await client.get(f"/mail/{key}")

    assert response.status_code == 200
    page = response.text
    assert "Plain &lt;b&gt;words&lt;/b&gt;" in page
    assert '<iframe class="mail" title="HTML version of the email" sandbox srcdoc=' in page
    assert "<script>" not in page  # the mail's markup only lives, escaped, inside srcdoc
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert (await client.get("/mail/no-such-key")).status_code == 404


async def test_a_real_outbox_email_reads_well(
    client: httpx.AsyncClient, maildir: mailbox.Maildir
) -> None:
    row = OutboxEmail(
        idempotency_key="approval:1:1",
        recipient="bea.jones@example.org",
        template="approval_request",
        message_id="<x@example.org>",
        context={
            "approver_name": "Bea Jones",
            "on_behalf_of_name": None,
            "reference": "IMP-1",
            "title": "Paperless statements",
            "description": "Offer e-statements.",
            "category": "resource",
            "submitter_name": "Asha Patel",
            "estimated_cost": 2000,
            "annual_saving": 4800,
            "kwh": 0,
            "kg_co2e": 0,
            "kg_waste": 0,
            "level": 1,
            "levels": 1,
            "reason": "Your authority covers it.",
            "url": "http://127.0.0.1:8000/approvals/1/tok",
            "expires_on": "2026-12-11",
            "reminder": False,
            "escalated_from_name": None,
        },
    )
    maildir.add(build_message(row))

    [listed] = (await client.get("/api/mail")).json()

    assert "IMP-1" in listed["subject"]
    assert "http://127.0.0.1:8000/approvals/1/tok" in listed["links"]
    page = await client.get(f"/mail/{listed['key']}")
    assert page.status_code == 200 and "sandbox srcdoc" in page.text
