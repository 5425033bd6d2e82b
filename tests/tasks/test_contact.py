"""Writing to customers as they asked, against a real SMTP server and database: their language and
format, consent per purpose, their contact window and weekly limit; essential mail never waits."""

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from improve.settings import settings
from models import ContactFormat, Customer, OutboxEmail, OutboxStatus, Purpose
from models.db import utcnow
from tasks.consent import opt_out, queue_customer_email, unsubscribe_url
from tasks.contact import set_contact_preferences, window_opens
from tasks.mail import queue_email, translations
from tasks.outbox import send_due
from tests.factories import make_customer
from tests.smtpd import SmtpServer
from tests.tasks.test_mail import ACTION, DECISION

NOTICE: dict[str, Any] = {
    "reference": "IMP-42",
    "title": "Paperless statements",
    "summary": translations(
        en="Your statements now arrive by email.", cy="Mae eich datganiadau'n cyrraedd drwy e-bost."
    ),
    "impact_lines": translations(
        en=["About 12,000 sheets of paper a year"],
        cy=["Tua 12,000 o ddalennau papur bob blwyddyn"],
    ),
}
# A Saturday in November: London is on GMT, so local time is UTC.
WINTER_EVENING = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)
# When the test emails were queued: before any moment a test sends at, whatever today is.
QUEUED = datetime(2026, 1, 1, tzinfo=UTC)


def notice(session: Session, customer: Customer, n: int = 1) -> OutboxEmail:
    row = queue_customer_email(
        session=session,
        key=f"notice:{customer.id}:{n}",
        customer=customer,
        template="customer_notice",
        context=NOTICE,
        purpose=Purpose.improvement_updates,
    )
    row.next_attempt_at = QUEUED
    session.commit()
    return row


def decision(session: Session, customer: Customer) -> OutboxEmail:
    """An essential email to the customer: no purpose, no consent, never held."""
    row = queue_customer_email(
        session=session,
        key=f"decision:{customer.id}",
        customer=customer,
        template="decision",
        context={**DECISION, "submitter_name": customer.name},
        purpose=None,
    )
    row.next_attempt_at = QUEUED
    session.commit()
    return row


def fresh(session: Session, row: OutboxEmail) -> OutboxEmail:
    session.commit()
    got = session.get(OutboxEmail, row.id, populate_existing=True)
    assert got is not None
    return got


def outcome(sent: int = 0, deferred: int = 0, failed: int = 0, skipped: int = 0) -> dict[str, int]:
    return {"sent": sent, "deferred": deferred, "failed": failed, "skipped": skipped}


# --- language and format ---------------------------------------------------------------------


async def test_a_welsh_customer_gets_welsh_subject_body_and_footer(
    session: Session, smtp: SmtpServer
) -> None:
    nia = make_customer(session, "Nia Brown", language="cy")
    notice(session, nia)

    assert await send_due() == outcome(sent=1)

    [received] = smtp.received
    assert received.subject == "Rydym wedi gwella ein gwasanaeth: Paperless statements"
    link = unsubscribe_url(nia.id, Purpose.improvement_updates)
    for body in (received.text, received.html):
        assert "Annwyl Nia Brown" in body
        assert "Mae eich datganiadau'n cyrraedd drwy e-bost." in body
        assert "Tua 12,000 o ddalennau papur bob blwyddyn" in body
        assert "Gwasanaeth Cwsmeriaid" in body
        assert "i chi ofyn am gael clywed am welliannau i'n gwasanaeth" in body
        assert link in body
        assert "We have" not in body and "Dear" not in body and "About 12,000" not in body
    assert '<html lang="cy">' in received.html
    assert "Peidio â chael y negeseuon e-bost hyn" in received.html
    assert received.message["List-Unsubscribe"].strip() == f"<{link}>"
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize("language", ["fr", "", "xx-YY"])
async def test_a_language_we_do_not_write_in_gets_english(
    session: Session, smtp: SmtpServer, language: str
) -> None:
    notice(session, make_customer(session, "Ana Lopes", language=language))

    await send_due()

    [received] = smtp.received
    assert received.subject == "We have improved our service: Paperless statements"
    assert "Dear Ana Lopes" in received.text and "About 12,000 sheets" in received.text
    assert '<html lang="en-GB">' in received.html


async def test_a_template_not_yet_in_welsh_goes_in_english_to_a_welsh_customer(
    session: Session, smtp: SmtpServer
) -> None:
    nia = make_customer(session, "Nia Brown", language="CY")  # the record's case does not matter
    decision(session, nia)

    await send_due()

    [received] = smtp.received
    assert received.subject.startswith("Approved: IMP-42")


async def test_a_plain_text_customer_gets_no_html_part_whatever_the_template(
    session: Session, smtp: SmtpServer
) -> None:
    ken = make_customer(session, "Ken Ito", contact_format=ContactFormat.text, language="cy")
    notice(session, ken)
    decision(session, ken)

    assert await send_due() == outcome(sent=2)

    for received in smtp.received:
        assert not received.message.is_multipart()
        assert received.message.get_content_type() == "text/plain"
    notice_text = next(r for r in smtp.received if "Rydym" in r.subject).text
    assert unsubscribe_url(ken.id, Purpose.improvement_updates) in notice_text


async def test_a_preference_changed_while_the_email_waits_is_the_one_followed(
    session: Session, smtp: SmtpServer
) -> None:
    ruth = make_customer(session, "Ruth Ames")
    notice(session, ruth)
    ruth.language, ruth.contact_format = "cy", ContactFormat.text
    session.add(ruth)
    session.commit()

    await send_due()

    [received] = smtp.received
    assert received.subject.startswith("Rydym wedi gwella")
    assert received.message.get_content_type() == "text/plain"


# --- consent per purpose ---------------------------------------------------------------------


async def test_an_opted_out_customer_gets_nothing_non_essential_but_still_essential_mail(
    session: Session, smtp: SmtpServer
) -> None:
    ruth = make_customer(session, "Ruth Ames")
    opt_out(
        session=session,
        customer_id=ruth.id,
        purpose=Purpose.improvement_updates,
        token=unsubscribe_url(ruth.id, Purpose.improvement_updates).rsplit("/", 1)[1],
    )
    session.commit()
    row = notice(session, ruth)
    essential = decision(session, ruth)

    assert await send_due() == outcome(sent=1, skipped=1)

    [received] = smtp.received
    assert received.subject.startswith("Approved")
    assert received.message["List-Unsubscribe"] is None
    skipped = fresh(session, row)
    assert skipped.status == OutboxStatus.skipped and skipped.attempts == 0
    assert skipped.last_error == (
        f"skipped: Ruth Ames withdrew consent to improvement updates on {utcnow():%Y-%m-%d}"
    )
    assert fresh(session, essential).status == OutboxStatus.sent


async def test_consent_to_one_purpose_is_not_consent_to_another(
    session: Session, smtp: SmtpServer
) -> None:
    ruth = make_customer(session, "Ruth Ames", consents=(Purpose.improvement_updates,))
    row = queue_customer_email(
        session=session,
        key="news:1",
        customer=ruth,
        template="customer_notice",
        context=NOTICE,
        purpose=Purpose.policy_news,
    )
    session.commit()

    assert await send_due() == outcome(skipped=1)
    # The factory records a "no" to every purpose not given.
    assert fresh(session, row).last_error.startswith(
        "skipped: Ruth Ames withdrew consent to policy news"
    )


async def test_a_non_essential_email_to_a_customer_without_a_purpose_is_not_sent(
    session: Session, smtp: SmtpServer
) -> None:
    ruth = make_customer(session, "Ruth Ames")
    row = queue_email(
        session=session,
        key="raw:1",
        to=ruth.email,
        template="partner_notice",
        context={"partner_name": "x", "contact_name": "y", "reference": "IMP-1", "title": "t"},
    )
    session.commit()

    assert await send_due() == outcome(skipped=1)
    assert smtp.received == []
    assert "queue_customer_email" in fresh(session, row).last_error


def test_the_helper_refuses_a_non_essential_email_without_a_purpose(session: Session) -> None:
    ruth = make_customer(session, "Ruth Ames")
    with pytest.raises(ValueError, match="needs the purpose"):
        queue_customer_email(
            session=session,
            key="k",
            customer=ruth,
            template="customer_notice",
            context=NOTICE,
            purpose=None,
        )
    with pytest.raises(ValueError, match="is essential"):
        queue_customer_email(
            session=session,
            key="k",
            customer=ruth,
            template="decision",
            context=DECISION,
            purpose=Purpose.improvement_updates,
        )


async def test_a_customer_template_without_the_unsubscribe_footer_is_not_sent(
    session: Session, smtp: SmtpServer
) -> None:
    # action_reminder does not extend _customer.html, so it has no way out in its body.
    ruth = make_customer(session, "Ruth Ames")
    row = queue_customer_email(
        session=session,
        key="not-for-customers:1",
        customer=ruth,
        template="action_reminder",
        context={**ACTION, "kind": "reminder", "expires_on": "2026-12-01"},
        purpose=Purpose.improvement_updates,
    )
    session.commit()

    assert await send_due() == outcome(failed=1)
    assert smtp.received == []
    assert "no unsubscribe link" in fresh(session, row).last_error


# --- the contact window ----------------------------------------------------------------------


async def test_mail_outside_the_window_is_held_and_goes_when_it_opens(
    session: Session, smtp: SmtpServer
) -> None:
    ruth = make_customer(session, "Ruth Ames", contact_from=time(9, 0), contact_until=time(17, 0))
    row = notice(session, ruth)
    essential = decision(session, ruth)

    assert await send_due(now=WINTER_EVENING) == outcome(sent=1, deferred=1)

    [received] = smtp.received  # the essential one: never held
    assert received.subject.startswith("Approved")
    held = fresh(session, row)
    opens = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
    assert (held.status, held.attempts, held.next_attempt_at) == (OutboxStatus.queued, 0, opens)
    assert held.last_error == (
        "held until 2026-11-29 09:00 GMT, no attempt used: "
        "Ruth Ames takes non-urgent email 09:00–17:00 Europe/London"
    )
    assert fresh(session, essential).status == OutboxStatus.sent

    # Nothing more before it opens, however often the sender runs.
    assert await send_due(now=opens - timedelta(minutes=1)) == outcome()
    assert await send_due(now=opens) == outcome(sent=1)
    assert fresh(session, row).status == OutboxStatus.sent
    assert fresh(session, row).attempts == 1
    assert len(smtp.handler.to(ruth.email)) == 2


async def test_a_window_that_spans_midnight_holds_the_daytime_and_sends_at_night(
    session: Session, smtp: SmtpServer
) -> None:
    owl = make_customer(session, "Night Owl", contact_from=time(22, 0), contact_until=time(6, 0))
    row = notice(session, owl)
    noon = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

    assert await send_due(now=noon) == outcome(deferred=1)
    assert fresh(session, row).next_attempt_at == datetime(2026, 11, 28, 22, 0, tzinfo=UTC)

    assert await send_due(now=datetime(2026, 11, 28, 22, 0, tzinfo=UTC)) == outcome(sent=1)


@pytest.mark.parametrize(
    ("window", "at", "opens"),
    [
        # 09:00–17:00 in London in July is 08:00–16:00 UTC (British Summer Time)
        ((time(9), time(17)), datetime(2026, 7, 1, 8, 30), datetime(2026, 7, 1, 8, 30)),
        ((time(9), time(17)), datetime(2026, 7, 1, 7, 30), datetime(2026, 7, 1, 8, 0)),
        ((time(9), time(17)), datetime(2026, 7, 1, 16, 0), datetime(2026, 7, 2, 8, 0)),
        # and in November 09:00–17:00 GMT
        ((time(9), time(17)), datetime(2026, 11, 2, 8, 59), datetime(2026, 11, 2, 9, 0)),
        ((time(9), time(17)), datetime(2026, 11, 2, 17, 0), datetime(2026, 11, 3, 9, 0)),
        # across midnight: open late and early, closed in between
        ((time(22), time(6)), datetime(2026, 11, 2, 23, 30), datetime(2026, 11, 2, 23, 30)),
        ((time(22), time(6)), datetime(2026, 11, 3, 3, 0), datetime(2026, 11, 3, 3, 0)),
        ((time(22), time(6)), datetime(2026, 11, 3, 6, 0), datetime(2026, 11, 3, 22, 0)),
        # the evening the clocks go back (25 October 2026): 22:00 is GMT again
        ((time(22), time(6)), datetime(2026, 10, 25, 12, 0), datetime(2026, 10, 25, 22, 0)),
        # the morning the clocks go forward (29 March 2026): 09:00 BST is 08:00 UTC
        ((time(9), time(17)), datetime(2026, 3, 29, 0, 30), datetime(2026, 3, 29, 8, 0)),
        # only a start, only an end, or no window at all
        ((time(18), None), datetime(2026, 11, 2, 12, 0), datetime(2026, 11, 2, 18, 0)),
        ((None, time(8)), datetime(2026, 11, 2, 12, 0), datetime(2026, 11, 3, 0, 0)),
        ((None, None), datetime(2026, 11, 2, 3, 0), datetime(2026, 11, 2, 3, 0)),
        ((time(9), time(9)), datetime(2026, 11, 2, 3, 0), datetime(2026, 11, 2, 3, 0)),
    ],
)
def test_when_the_window_next_opens(
    window: tuple[time | None, time | None], at: datetime, opens: datetime
) -> None:
    customer = Customer(
        name="c", email="c@example.com", contact_from=window[0], contact_until=window[1]
    )
    assert window_opens(customer, at.replace(tzinfo=UTC)) == opens.replace(tzinfo=UTC)


def test_the_window_is_in_the_organisations_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "timezone", "America/New_York")
    customer = Customer(
        name="c", email="c@example.com", contact_from=time(9), contact_until=time(17)
    )
    at = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # 07:00 in New York
    assert window_opens(customer, at) == datetime(2026, 11, 2, 14, 0, tzinfo=UTC)


# --- the weekly limit ------------------------------------------------------------------------


async def test_the_weekly_limit_holds_the_extra_one_until_the_oldest_is_a_week_old(
    session: Session, smtp: SmtpServer
) -> None:
    ruth = make_customer(session, "Ruth Ames", weekly_limit=2)
    rows = [notice(session, ruth, n) for n in range(3)]
    essential = decision(session, ruth)

    assert await send_due() == outcome(sent=3, deferred=1)

    sent = sorted(fresh(session, r).sent_at for r in rows if fresh(session, r).sent_at)
    [extra] = [fresh(session, r) for r in rows if fresh(session, r).status == OutboxStatus.queued]
    assert fresh(session, essential).status == OutboxStatus.sent  # not counted, never held
    assert extra.attempts == 0
    assert extra.next_attempt_at == sent[0] + timedelta(days=7)
    assert extra.last_error.startswith("held until ")
    assert extra.last_error.endswith(
        "no attempt used: Ruth Ames has had their 2 non-essential email(s) in the last seven days"
    )

    assert await send_due(now=extra.next_attempt_at - timedelta(seconds=1)) == outcome()
    assert await send_due(now=extra.next_attempt_at) == outcome(sent=1)
    assert len(smtp.handler.to(ruth.email)) == 4


async def test_the_weekly_limit_and_the_window_together_wait_for_both(
    session: Session, smtp: SmtpServer
) -> None:
    ruth = make_customer(
        session, "Ruth Ames", weekly_limit=1, contact_from=time(9), contact_until=time(17)
    )
    first, second = notice(session, ruth, 1), notice(session, ruth, 2)
    # The first went on a Monday at 16:30 (sent by a colleague's override, say).
    first.status, first.sent_at = OutboxStatus.sent, datetime(2026, 11, 2, 16, 30, tzinfo=UTC)
    session.add(first)
    session.commit()

    assert await send_due(now=datetime(2026, 11, 3, 10, 0, tzinfo=UTC)) == outcome(deferred=1)

    # A week on is 16:30 the next Monday, inside the window: that is when it goes.
    held = fresh(session, second)
    assert held.next_attempt_at == datetime(2026, 11, 9, 16, 30, tzinfo=UTC)

    # Had the first gone at 18:30, a week on the window is shut: it waits for 09:00 the next day.
    first.sent_at = datetime(2026, 11, 2, 18, 30, tzinfo=UTC)
    session.add(first)
    session.commit()
    await send_due(now=datetime(2026, 11, 9, 16, 30, tzinfo=UTC))
    held = fresh(session, second)
    assert held.next_attempt_at == datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
    assert held.last_error == (
        "held until 2026-11-10 09:00 GMT, no attempt used: Ruth Ames has had their 1 "
        "non-essential email(s) in the last seven days; "
        "Ruth Ames takes non-urgent email 09:00–17:00 Europe/London"
    )

    assert await send_due(now=datetime(2026, 11, 10, 9, 0, tzinfo=UTC)) == outcome(sent=1)
    [received] = smtp.received
    assert received.subject.startswith("We have improved")


async def test_a_weekly_limit_of_nought_means_no_non_essential_email(
    session: Session, smtp: SmtpServer
) -> None:
    ruth = make_customer(session, "Ruth Ames", weekly_limit=0)
    row = notice(session, ruth)
    decision(session, ruth)

    assert await send_due() == outcome(sent=1, skipped=1)
    assert fresh(session, row).last_error == (
        "skipped: Ruth Ames takes no non-essential email (weekly limit 0)"
    )


async def test_a_held_email_is_skipped_when_the_customer_opts_out_while_it_waits(
    session: Session, smtp: SmtpServer
) -> None:
    ruth = make_customer(session, "Ruth Ames", contact_from=time(9), contact_until=time(17))
    row = notice(session, ruth)
    assert await send_due(now=WINTER_EVENING) == outcome(deferred=1)

    opt_out(
        session=session,
        customer_id=ruth.id,
        purpose=Purpose.improvement_updates,
        token=unsubscribe_url(ruth.id, Purpose.improvement_updates).rsplit("/", 1)[1],
    )
    session.commit()

    assert fresh(session, row).status == OutboxStatus.skipped
    assert await send_due(now=WINTER_EVENING + timedelta(days=1)) == outcome()
    assert smtp.received == []
    assert session.exec(select(OutboxEmail)).all()  # kept, with why


async def test_a_held_email_goes_at_once_when_the_customer_takes_the_window_away(
    session: Session, smtp: SmtpServer
) -> None:
    ruth = make_customer(session, "Ruth Ames", contact_from=time(9, 0), contact_until=time(17, 0))
    row = notice(session, ruth)
    assert await send_due(now=WINTER_EVENING) == outcome(deferred=1)

    assert ruth.id is not None
    set_contact_preferences(session=session, customer_id=ruth.id, window="any")
    session.commit()

    assert await send_due() == outcome(sent=1)
    assert fresh(session, row).status == OutboxStatus.sent
