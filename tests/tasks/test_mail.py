"""Email rendering: every template in text and HTML, escaping, headers that cannot be forged."""

from typing import Any

import pytest
from sqlmodel import Session, select

from models import ContactFormat, OutboxEmail, OutboxStatus
from tasks.mail import build_message, queue_email, render
from tasks.outbox import send_due
from tests.factories import make_customer
from tests.smtpd import SmtpServer

APPROVAL: dict[str, Any] = {
    "approver_name": "Priya Shah",
    "on_behalf_of_name": None,
    "reference": "IMP-42",
    "title": "Paperless statements for account customers",
    "description": "Switch account customers to e-statements.\n\nSaves paper and postage.",
    "category": "resource",
    "submitter_name": "Asha Patel",
    "estimated_cost": 2500.0,
    "annual_saving": 1800.0,
    "kwh": 0.0,
    "kg_co2e": 120.0,
    "kg_waste": 35.0,
    "level": 2,
    "levels": 2,
    "reason": "Your resource authority covers up to £5,000 at level 2.",
    "url": "http://127.0.0.1:8000/approvals/7/s3cr3t-token",
    "expires_on": "2026-11-30",
    "reminder": False,
    "escalated_from_name": None,
}
DECISION: dict[str, Any] = {
    "submitter_name": "Asha Patel",
    "reference": "IMP-42",
    "title": "Paperless statements for account customers",
    "approved": True,
    "approver_name": "Priya Shah",
    "comment": "",
    "next_steps": "Sam Lee will switch the first 200 customers in May.",
    "url_status": "http://127.0.0.1:8000/improvements/42",
}
ACTION: dict[str, Any] = {
    "owner_name": "Sam Lee",
    "reference": "IMP-42",
    "title": "Paperless statements for account customers",
    "action_title": "Write to account customers about e-statements",
    "due_on": "2026-08-01",
    "url": "http://127.0.0.1:8000/actions/3/act-token",
    "improvement_title": "Paperless statements for account customers",
}
CUSTOMER: dict[str, Any] = {
    "customer_name": "Margaret Jones",
    "reference": "IMP-42",
    "title": "Paperless statements",
    "summary": "Your statements now arrive by email, on the same day each month.",
    "impact_lines": ["12,000 sheets of paper saved a year", "54 kg CO2e avoided a year"],
    "unsubscribe_url": "http://127.0.0.1:8000/unsubscribe/5/improvement_updates/sig",
}
PARTNER: dict[str, Any] = {
    "partner_name": "GreenPost Ltd",
    "contact_name": "Dana Okafor",
    "reference": "IMP-42",
    "title": "Paperless statements",
    "summary": "We now post 1,000 fewer letters a month through you.",
    "impact_lines": ["12,000 fewer letters posted a year"],
}


@pytest.mark.parametrize(
    ("template", "context", "subject", "in_both"),
    [
        (
            "approval_request",
            APPROVAL,
            "Approval needed: IMP-42 Paperless statements for account customers",
            [
                "Priya Shah",
                "Asha Patel",
                "£2,500",
                "£1,800",
                "120 kg",
                "level 2 of 2",
                "covers up to £5,000",
                APPROVAL["url"],
                "30 November 2026",
                "17 months",
            ],
        ),
        (
            "decision",
            DECISION,
            "Approved: IMP-42 Paperless statements for account customers",
            [
                "Asha Patel",
                "Priya Shah",
                "Good news",
                "Sam Lee will switch",
                DECISION["url_status"],
            ],
        ),
        (
            "action_assigned",
            ACTION,
            "Action for you: Write to account customers about e-statements (IMP-42)",
            ["Sam Lee", "1 August 2026", ACTION["url"], "Paperless statements for account"],
        ),
        (
            "customer_notice",
            CUSTOMER,
            "We have improved our service: Paperless statements",
            [
                "Margaret Jones",
                "arrive by email",
                "12,000 sheets",
                "54 kg",
                "IMP-42",
                CUSTOMER["unsubscribe_url"],
            ],
        ),
        (
            "partner_notice",
            PARTNER,
            "Service improvement completed with GreenPost Ltd: Paperless statements",
            ["Dana Okafor", "GreenPost Ltd", "1,000 fewer letters", "12,000 fewer letters"],
        ),
    ],
)
def test_each_template_renders_text_and_html_with_its_subject(
    template: str, context: dict[str, Any], subject: str, in_both: list[str]
) -> None:
    rendered = render(template, context)

    assert rendered.subject == subject
    for fragment in in_both:
        assert fragment in rendered.text, f"{fragment!r} missing from the text of {template}"
        assert fragment in rendered.html, f"{fragment!r} missing from the HTML of {template}"
    assert f"<title>{subject}</title>" in rendered.html
    assert "<style" not in rendered.html and 'style="' in rendered.html  # CSS inlined


def test_a_reminder_and_an_escalation_say_so_in_subject_and_body() -> None:
    reminder = render(
        "approval_request",
        {**APPROVAL, "reminder": True, "replaces_earlier_link": True, "on_behalf_of_name": "Tom"},
    )
    assert reminder.subject.startswith("Reminder: IMP-42")
    assert "still waiting for your decision" in reminder.text
    assert "the one in the earlier email no longer works" in reminder.html
    assert "deputy for Tom" in reminder.text

    escalated = render("approval_request", {**APPROVAL, "escalated_from_name": "Tom Reed"})
    assert escalated.subject.startswith("Passed to you for a decision: IMP-42")
    assert "Tom Reed was asked to decide" in escalated.text
    assert "Tom Reed was asked to decide" in escalated.html


def test_a_rejection_is_kind_gives_the_reason_and_what_to_do_next() -> None:
    rendered = render(
        "decision",
        {
            **DECISION,
            "approved": False,
            "comment": "This year's budget is committed; the saving needs a supplier quote.",
            "next_steps": "",
        },
    )
    assert rendered.subject == (
        "Your suggestion IMP-42 Paperless statements for account customers: not approved this time"
    )
    for part in (rendered.text, rendered.html):
        assert "Thank you for suggesting" in part
        assert "needs a supplier quote" in part
        assert "submit it again" in part
        assert "talk it through with Priya Shah" in part


def test_optional_keys_may_be_missing() -> None:
    bare = {k: APPROVAL[k] for k in ("approver_name", "reference", "title", "url")}
    rendered = render("approval_request", bare)
    assert rendered.subject == "Approval needed: IMP-42 Paperless statements for account customers"
    assert "A colleague has suggested" in rendered.text

    notice = render("customer_notice", {"customer_name": "Ann", "reference": "IMP-1", "title": "T"})
    assert "To stop these emails" not in notice.text


def test_html_in_an_idea_is_shown_in_the_html_part_never_run() -> None:
    attack = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    rendered = render("approval_request", {**APPROVAL, "title": attack, "description": attack})

    assert "<script>" not in rendered.html and "<img" not in rendered.html
    assert "&lt;script&gt;alert(" in rendered.html
    assert attack in rendered.text  # the plain part shows exactly what was typed
    assert "&lt;" not in rendered.text


def test_an_ampersand_reads_as_itself_in_the_text_part() -> None:
    rendered = render("partner_notice", {**PARTNER, "title": "Bins & boxes"})
    assert "Bins & boxes" in rendered.subject and "Bins & boxes" in rendered.text
    assert "Bins &amp; boxes" in rendered.html


def _row(session: Session, template: str, context: dict[str, Any], **kw: Any) -> OutboxEmail:
    purpose = kw.pop("purpose", None)
    row = queue_email(
        session=session,
        key=kw.pop("key", f"test:{template}"),
        to=kw.pop("to", "reader@example.org"),
        template=template,
        context={**context, "purpose": purpose} if purpose else context,
    )
    session.commit()
    return row


def test_the_message_has_date_message_id_and_both_parts_text_first(session: Session) -> None:
    row = _row(session, "decision", DECISION)
    message = build_message(row)

    assert message["Message-ID"] == row.message_id
    assert message["Date"] and message["From"] and message["To"] == "reader@example.org"
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]


async def test_a_header_injection_in_the_title_stays_one_subject_line(
    session: Session, smtp: SmtpServer
) -> None:
    title = "Paperless\r\nBcc: victim@example.com\nX-Evil: 1\u2028Cc: also@example.com"
    _row(session, "approval_request", {**APPROVAL, "title": title})

    assert await send_due() == {"sent": 1, "deferred": 0, "failed": 0, "skipped": 0}

    [received] = smtp.received
    assert received.recipients == ["reader@example.org"]
    for header in ("Bcc", "Cc", "X-Evil"):
        assert received.message[header] is None
    assert "\n" not in received.subject and "\r" not in received.subject
    assert received.subject == (
        "Approval needed: IMP-42 Paperless Bcc: victim@example.com X-Evil: 1 Cc: also@example.com"
    )


async def test_a_title_beyond_ascii_arrives_as_written(session: Session, smtp: SmtpServer) -> None:
    title = "Café bins – save £5 a week, ünïcode"
    _row(session, "decision", {**DECISION, "title": title})

    await send_due()

    [received] = smtp.received
    assert received.subject == f"Approved: IMP-42 {title}"
    assert title in received.text and title in received.html


async def test_a_recipient_with_a_line_break_is_refused_not_guessed_at(
    session: Session, smtp: SmtpServer
) -> None:
    _row(session, "decision", DECISION, to="reader@example.org\r\nBcc: victim@example.com")

    assert await send_due() == {"sent": 0, "deferred": 0, "failed": 1, "skipped": 0}

    assert smtp.received == []
    session.commit()
    [row] = session.exec(select(OutboxEmail)).all()
    session.refresh(row)
    assert row.status == OutboxStatus.failed
    assert "is not a single email address" in row.last_error


async def test_a_plain_text_customer_gets_a_single_text_part(
    session: Session, smtp: SmtpServer
) -> None:
    plain = make_customer(session, "Ken Ito", contact_format=ContactFormat.text)
    _row(session, "customer_notice", CUSTOMER, to=plain.email, purpose="improvement_updates")

    await send_due()

    [received] = smtp.received
    assert not received.message.is_multipart()
    assert received.message.get_content_type() == "text/plain"
    assert "12,000 sheets of paper saved a year" in received.text


async def test_customer_notices_offer_one_click_unsubscribe_approval_requests_never(
    session: Session, smtp: SmtpServer
) -> None:
    _row(session, "customer_notice", CUSTOMER, to="customer@example.com")
    _row(session, "approval_request", {**APPROVAL, "unsubscribe_url": CUSTOMER["unsubscribe_url"]})

    await send_due()

    [notice] = smtp.handler.to("customer@example.com")
    # A long URL is folded onto the next line, which is legitimate; the value is the same.
    assert notice.message["List-Unsubscribe"].strip() == f"<{CUSTOMER['unsubscribe_url']}>"
    assert notice.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    [request] = smtp.handler.to("reader@example.org")
    assert request.message["List-Unsubscribe"] is None
    assert request.message["List-Unsubscribe-Post"] is None
    assert "unsubscribe" not in request.text.lower()


def test_every_customer_email_is_written_in_welsh_too() -> None:
    """A customer email is one built on _customer.*; each has its Welsh pair on _customer.cy.*,
    so a template added later without its translation fails here, not in a Welsh inbox."""
    from tasks.mail import TEMPLATES, template_names

    customer_emails = sorted(
        path.name.removesuffix(".html")
        for path in TEMPLATES.glob("*.html")
        if path.name.count(".") == 1 and '{% extends "_customer.html" %}' in path.read_text()
    )
    assert "customer_notice" in customer_emails
    for name in customer_emails:
        assert template_names(name, "cy") == (f"{name}.cy.txt", f"{name}.cy.html"), name
        for ext in ("txt", "html"):
            assert f'{{% extends "_customer.cy.{ext}" %}}' in (
                (TEMPLATES / f"{name}.cy.{ext}").read_text()
            ), name
        assert '{% extends "_customer.txt" %}' in (TEMPLATES / f"{name}.txt").read_text()


def test_the_customer_emails_about_their_own_case_are_in_welsh_too() -> None:
    """Updates, offers and done notices stand on the plain layout (no consent footer), so the
    rule above cannot find them: they are named here."""
    from tasks.mail import _env, template_names

    for name in ("case_update", "alternatives_offer", "alternative_done"):
        assert template_names(name, "cy") == (f"{name}.cy.txt", f"{name}.cy.html"), name
        for file in template_names(name, "cy"):
            _env.get_template(file)  # it parses
