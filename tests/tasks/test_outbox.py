"""The outbox against a real SMTP server: delivered once, retried on 4xx, failed on 5xx."""

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlmodel import Session, select, update

from improve.settings import settings
from models import OutboxEmail, OutboxStatus
from models.db import utcnow
from tasks.mail import queue_email, send_due, send_outbox
from tests.smtpd import RecordingHandler, SmtpServer, free_port

NOTICE = {
    "partner_name": "GreenPost Ltd",
    "contact_name": "Dana Okafor",
    "reference": "IMP-7",
    "title": "Fewer letters",
    "summary": "We post less.",
    "impact_lines": ["1,000 fewer letters a year"],
}


def queue(session: Session, n: int = 1, prefix: str = "notice") -> list[OutboxEmail]:
    rows = [
        queue_email(
            session=session,
            key=f"{prefix}:{i}",
            to=f"partner.{i}@example.net",
            template="partner_notice",
            context=NOTICE,
        )
        for i in range(n)
    ]
    session.commit()
    return rows


def reload(session: Session, row: OutboxEmail) -> OutboxEmail:
    session.commit()  # a fresh transaction: SQLite would otherwise keep showing an old snapshot
    fresh = session.get(OutboxEmail, row.id, populate_existing=True)
    assert fresh is not None
    return fresh


@pytest.fixture
def server_down(smtp: SmtpServer) -> Iterator[SmtpServer]:
    """The SMTP server stopped; started again after the test whatever happens."""
    smtp.stop()
    try:
        yield smtp
    finally:
        if smtp.controller is None:
            smtp.start()


async def test_delivered_with_the_rows_message_id(session: Session, smtp: SmtpServer) -> None:
    [row] = queue(session)

    assert await send_due() == {"sent": 1, "deferred": 0, "failed": 0}

    [received] = smtp.received
    assert received.message_id == row.message_id
    assert received.recipients == ["partner.0@example.net"]
    row = reload(session, row)
    assert row.status == OutboxStatus.sent
    assert row.sent_at is not None and row.attempts == 1 and row.claimed_at is None
    assert await send_due() == {"sent": 0, "deferred": 0, "failed": 0}  # nothing sent twice


def test_the_same_key_queued_twice_is_one_row(session: Session) -> None:
    first = queue_email(
        session=session, key="same", to="a@example.org", template="decision", context={}
    )
    second = queue_email(
        session=session, key="same", to="b@example.org", template="decision", context={}
    )
    session.commit()

    assert first.id == second.id
    assert len(session.exec(select(OutboxEmail)).all()) == 1


async def test_a_4xx_is_retried_and_then_delivered(session: Session, smtp: SmtpServer) -> None:
    [row] = queue(session)
    smtp.refuse_next("451 4.3.0 Try again later")

    assert await send_due() == {"sent": 0, "deferred": 1, "failed": 0}
    row = reload(session, row)
    assert row.status == OutboxStatus.queued and row.attempts == 1
    assert row.last_error == "451 4.3.0 Try again later"

    assert await send_due() == {"sent": 1, "deferred": 0, "failed": 0}
    assert [r.message_id for r in smtp.received] == [row.message_id]
    assert reload(session, row).status == OutboxStatus.sent


async def test_a_deferred_email_waits_for_its_backoff(
    session: Session, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "outbox_backoff_seconds", [30.0, 120.0])
    [row] = queue(session)
    smtp.refuse_next("451 4.3.0 Try again later", "421 4.7.0 Busy")
    now = utcnow()

    assert (await send_due(now=now))["deferred"] == 1
    assert reload(session, row).next_attempt_at == now + timedelta(seconds=30)
    assert await send_due(now=now + timedelta(seconds=29)) == {
        "sent": 0,
        "deferred": 0,
        "failed": 0,
    }

    later = now + timedelta(seconds=31)
    assert (await send_due(now=later))["deferred"] == 1
    assert reload(session, row).next_attempt_at == later + timedelta(seconds=120)

    latest = later + timedelta(seconds=121)
    assert (await send_due(now=latest))["sent"] == 1


async def test_a_4xx_that_never_clears_fails_after_the_last_attempt(
    session: Session, smtp: SmtpServer
) -> None:
    [row] = queue(session)
    smtp.refuse_next(*["452 4.2.2 Mailbox full"] * settings.outbox_max_attempts)

    for _ in range(settings.outbox_max_attempts - 1):
        assert await send_due() == {"sent": 0, "deferred": 1, "failed": 0}
    assert await send_due() == {"sent": 0, "deferred": 0, "failed": 1}

    row = reload(session, row)
    assert row.status == OutboxStatus.failed
    assert row.attempts == settings.outbox_max_attempts
    assert "452 4.2.2 Mailbox full" in row.last_error
    assert smtp.received == []


async def test_a_5xx_fails_with_the_servers_reply_and_the_batch_goes_on(
    session: Session, smtp: SmtpServer
) -> None:
    refused, delivered = queue(session, 2)
    smtp.refuse_next("550 5.1.1 No such user here")

    assert await send_due() == {"sent": 1, "deferred": 0, "failed": 1}

    refused = reload(session, refused)
    assert refused.status == OutboxStatus.failed
    assert refused.last_error == "550 5.1.1 No such user here"
    assert [r.message_id for r in smtp.received] == [delivered.message_id]


async def test_server_down_defers_one_email_and_stops_then_delivers_when_up(
    session: Session, server_down: SmtpServer
) -> None:
    rows = queue(session, 3)

    assert await send_due() == {"sent": 0, "deferred": 1, "failed": 0}

    first, *rest = [reload(session, r) for r in rows]
    assert first.status == OutboxStatus.queued and first.attempts == 1
    assert "unreachable" in first.last_error and str(settings.smtp_port) in first.last_error
    assert all(r.attempts == 0 and r.status == OutboxStatus.queued for r in rest)

    server_down.start()
    assert await send_due() == {"sent": 3, "deferred": 0, "failed": 0}
    assert sorted(r.message_id for r in server_down.received) == sorted(r.message_id for r in rows)


async def test_two_senders_at_once_send_each_email_once(session: Session, smtp: SmtpServer) -> None:
    rows = queue(session, 20)

    results = await asyncio.gather(send_due(), send_due())

    assert all(r["sent"] > 0 for r in results), "both senders took part"
    assert sum(r["sent"] for r in results) == 20
    assert Counter(r.message_id for r in smtp.received) == Counter(r.message_id for r in rows)


def test_two_sender_threads_send_each_email_once(session: Session, smtp: SmtpServer) -> None:
    rows = queue(session, 20)
    start = threading.Barrier(2)
    results: list[dict[str, int]] = []

    def sender() -> None:
        start.wait()
        results.append(asyncio.run(send_due()))

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sum(r["sent"] for r in results) == 20
    assert Counter(r.message_id for r in smtp.received) == Counter(r.message_id for r in rows)


async def test_a_row_left_sending_by_a_crashed_sender_is_sent_again(
    session: Session, smtp: SmtpServer
) -> None:
    stale, busy = queue(session, 2)
    now = utcnow()
    for row, claimed in ((stale, now - timedelta(minutes=11)), (busy, now - timedelta(minutes=1))):
        session.exec(
            update(OutboxEmail)
            .where(OutboxEmail.id == row.id)  # type: ignore[arg-type]
            .values(status=OutboxStatus.sending, claimed_at=claimed)
        )
    session.commit()

    assert await send_due(now=now) == {"sent": 1, "deferred": 0, "failed": 0}

    assert [r.message_id for r in smtp.received] == [stale.message_id]
    assert reload(session, stale).status == OutboxStatus.sent
    assert reload(session, busy).status == OutboxStatus.sending  # its sender may still be at it


async def test_a_row_whose_template_is_missing_fails_and_says_why(
    session: Session, smtp: SmtpServer
) -> None:
    row = queue_email(
        session=session, key="broken", to="a@example.org", template="no_such_email", context={}
    )
    session.commit()

    assert await send_due() == {"sent": 0, "deferred": 0, "failed": 1}

    row = reload(session, row)
    assert row.status == OutboxStatus.failed and "no_such_email" in row.last_error


async def test_the_prefect_task_sends_the_outbox(session: Session, smtp: SmtpServer) -> None:
    queue(session, 2)

    assert await send_outbox.fn() == {"sent": 2, "deferred": 0, "failed": 0}
    assert len(smtp.received) == 2


@dataclass
class CountingHandler(RecordingHandler):
    """Also counts SMTP sessions, and can hang up after a reply as a relay does when it restarts."""

    sessions: int = 0
    hang_up_next: bool = False
    mails: int = 0
    silent_hang_up_on_mail: int = 0  # the nth MAIL FROM finds the connection gone, unanswered
    refuse_mail: str = ""

    async def handle_EHLO(
        self, server: SMTP, session: SmtpSession, envelope: Envelope, hostname: str, responses: Any
    ) -> Any:
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: SmtpSession, envelope: Envelope, address: str, options: Any
    ) -> str:
        self.mails += 1
        if self.mails == self.silent_hang_up_on_mail:
            assert server.transport is not None
            server.transport.close()
            return "421 4.4.2 Idle connection closed"  # dropped: the transport is already closed
        if self.refuse_mail:
            return self.refuse_mail
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if self.hang_up_next:
            self.hang_up_next = False
            assert server.transport is not None
            asyncio.get_running_loop().call_soon(server.transport.close)
        return reply


@pytest.fixture
def relay(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SmtpServer, CountingHandler]]:
    """A second real SMTP server that counts connections; the sender is pointed at it."""
    server = SmtpServer(free_port())
    handler = server.handler = CountingHandler()
    server.start()
    monkeypatch.setattr(settings, "smtp_port", server.port)
    try:
        yield server, handler
    finally:
        server.stop()


async def test_one_connection_carries_the_whole_batch(
    session: Session, relay: tuple[SmtpServer, CountingHandler]
) -> None:
    server, handler = relay
    queue(session, 5)

    assert await send_due() == {"sent": 5, "deferred": 0, "failed": 0}

    assert len(server.received) == 5
    assert handler.sessions == 1


async def test_the_batch_reconnects_after_the_server_hangs_up(
    session: Session, relay: tuple[SmtpServer, CountingHandler]
) -> None:
    server, handler = relay
    rows = queue(session, 3)
    handler.hang_up_next = True

    assert await send_due() == {"sent": 3, "deferred": 0, "failed": 0}

    assert sorted(r.message_id for r in server.received) == sorted(r.message_id for r in rows)
    assert handler.sessions == 2


async def test_a_connection_dropped_between_emails_is_opened_again_for_the_same_email(
    session: Session, relay: tuple[SmtpServer, CountingHandler]
) -> None:
    server, handler = relay
    rows = queue(session, 3)
    handler.silent_hang_up_on_mail = 2

    assert await send_due() == {"sent": 3, "deferred": 0, "failed": 0}

    assert sorted(r.message_id for r in server.received) == sorted(r.message_id for r in rows)
    assert handler.sessions == 2
    assert all(reload(session, r).attempts == 1 for r in rows)


async def test_a_421_and_hang_up_defers_that_email_and_the_batch_goes_on(
    session: Session, relay: tuple[SmtpServer, CountingHandler]
) -> None:
    server, handler = relay
    closed, *others = queue(session, 3)
    server.refuse_next("421 4.3.2 Service shutting down, closing channel")
    handler.hang_up_next = True

    assert await send_due() == {"sent": 2, "deferred": 1, "failed": 0}

    assert sorted(r.message_id for r in server.received) == sorted(r.message_id for r in others)
    assert handler.sessions == 2
    closed = reload(session, closed)
    assert closed.status == OutboxStatus.queued
    assert closed.last_error.startswith("421 4.3.2")


async def test_a_relay_refusing_our_sender_fails_no_email_and_stops_the_batch(
    session: Session, relay: tuple[SmtpServer, CountingHandler]
) -> None:
    server, handler = relay
    first, *rest = queue(session, 3)
    handler.refuse_mail = "530 5.7.0 Authentication required"

    assert await send_due() == {"sent": 0, "deferred": 1, "failed": 0}

    first = reload(session, first)
    assert first.status == OutboxStatus.queued and first.attempts == 1
    assert "refused the sender: 530 5.7.0 Authentication required" in first.last_error
    assert all(reload(session, r).attempts == 0 for r in rest)

    handler.refuse_mail = ""
    assert await send_due() == {"sent": 3, "deferred": 0, "failed": 0}
