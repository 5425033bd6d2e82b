"""The outbox against a real SMTP server: delivered once, retried on 4xx, failed on 5xx."""

import asyncio
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlmodel import Session, select, update
from typer.testing import CliRunner

from flows.steps import send_outbox
from improve.cli import app
from improve.settings import settings
from models import OutboxEmail, OutboxStatus
from models.db import utcnow
from tasks import outbox
from tasks.mail import SEALED, queue_email
from tasks.outbox import RELAY_WAIT, STALE_CLAIM, outbox_progress, send_due
from tests.smtpd import RecordingHandler, SmtpServer, free_port
from tests.tasks.test_mail import APPROVAL

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


def outcome(sent: int = 0, deferred: int = 0, failed: int = 0, skipped: int = 0) -> dict[str, int]:
    """What send_due reports for one batch."""
    return {"sent": sent, "deferred": deferred, "failed": failed, "skipped": skipped}


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

    assert await send_due() == outcome(sent=1)

    [received] = smtp.received
    assert received.message_id == row.message_id
    assert received.recipients == ["partner.0@example.net"]
    row = reload(session, row)
    assert row.status == OutboxStatus.sent
    assert row.sent_at is not None and row.attempts == 1 and row.claimed_at is None
    assert await send_due() == outcome()  # nothing sent twice


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

    assert await send_due() == outcome(deferred=1)
    row = reload(session, row)
    assert row.status == OutboxStatus.queued and row.attempts == 1
    assert row.last_error == "451 4.3.0 Try again later"

    assert await send_due() == outcome(sent=1)
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
    assert await send_due(now=now + timedelta(seconds=29)) == outcome()

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
        assert await send_due() == outcome(deferred=1)
    assert await send_due() == outcome(failed=1)

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

    assert await send_due() == outcome(sent=1, failed=1)

    refused = reload(session, refused)
    assert refused.status == OutboxStatus.failed
    assert refused.last_error == "550 5.1.1 No such user here"
    assert [r.message_id for r in smtp.received] == [delivered.message_id]


async def test_server_down_one_email_waits_without_using_an_attempt_and_all_go_when_up(
    session: Session, server_down: SmtpServer
) -> None:
    rows = queue(session, 3)
    now = utcnow()

    assert await send_due(now=now) == outcome(deferred=1)

    first, *rest = [reload(session, r) for r in rows]
    assert first.status == OutboxStatus.queued and first.attempts == 0
    assert first.next_attempt_at == now + RELAY_WAIT
    assert first.last_error.startswith("SMTP relay unreachable since ")
    assert f"cannot connect to 127.0.0.1:{settings.smtp_port}" in first.last_error
    assert all(r.attempts == 0 and r.status == OutboxStatus.queued for r in rest)
    assert all(r.last_error == "" for r in rest)  # the batch stopped before them

    server_down.start()
    assert await send_due(now=now + RELAY_WAIT) == outcome(sent=3)
    assert sorted(r.message_id for r in server_down.received) == sorted(r.message_id for r in rows)
    assert all(reload(session, r).attempts == 1 for r in rows)


def since_of(row: OutboxEmail) -> datetime:
    match = re.match(r"SMTP relay unreachable since (\S+ \S+) UTC", row.last_error)
    assert match, row.last_error
    return datetime.fromisoformat(match[1]).replace(tzinfo=UTC)


async def test_an_outage_longer_than_every_backoff_throws_no_email_away(
    session: Session, server_down: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The production backoff: retries used to run out after about 1.7 hours of outage.
    monkeypatch.setattr(settings, "outbox_backoff_seconds", [30.0, 120.0, 600.0, 1800.0, 3600.0])
    [row] = queue(session)
    start = utcnow()

    # A day of batches, one an hour, each finding the server gone.
    for hour in range(24):
        assert await send_due(now=start + timedelta(hours=hour)) == outcome(deferred=1)
        row = reload(session, row)
        assert row.status == OutboxStatus.queued and row.attempts == 0
        assert row.next_attempt_at == start + timedelta(hours=hour) + RELAY_WAIT

    # It still says when it first found the server gone, however often it has looked since.
    assert start.replace(microsecond=0) <= since_of(row) <= utcnow()
    assert "waiting, no attempt used" in row.last_error

    server_down.start()
    assert await send_due(now=start + timedelta(hours=24)) == outcome(sent=1)
    [received] = server_down.received
    assert received.message_id == row.message_id
    row = reload(session, row)
    assert (row.status, row.attempts, row.last_error) == (OutboxStatus.sent, 1, "")


@asynccontextmanager
async def greeting_server(greeting: bytes | None) -> AsyncIterator[int]:
    """A TCP server on a free port that answers every connection with `greeting` and hangs up,
    or with silence when it is None; yields its port."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if greeting is None:
            await reader.read()  # never greets; the client gives up first
        else:
            writer.write(greeting)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("nothing listening", "cannot connect to"),
        ("421 at connect", "421 4.3.2 Service not available"),
        ("no greeting before the timeout", "cannot connect to"),
        ("STARTTLS not offered", "STARTTLS extension not supported"),
        ("AUTH not offered", "AUTH extension is not supported"),
    ],
)
async def test_a_relay_that_will_not_take_mail_uses_no_attempt_however_it_fails(
    session: Session, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch, case: str, expected: str
) -> None:
    first, second = queue(session, 2)
    start = utcnow()
    async with AsyncExitStack() as stack:
        if case == "nothing listening":
            monkeypatch.setattr(settings, "smtp_port", free_port())
        elif case == "421 at connect":
            port = await stack.enter_async_context(
                greeting_server(b"421 4.3.2 Service not available\r\n")
            )
            monkeypatch.setattr(settings, "smtp_port", port)
        elif case == "no greeting before the timeout":
            port = await stack.enter_async_context(greeting_server(None))
            monkeypatch.setattr(settings, "smtp_port", port)
            monkeypatch.setattr(settings, "smtp_timeout_seconds", 0.2)
        elif case == "STARTTLS not offered":
            monkeypatch.setattr(settings, "smtp_tls", "starttls")
        else:
            monkeypatch.setattr(settings, "smtp_user", "improve")

        # Each batch tries the row that waited longest: the two take turns, each more often than
        # its attempts would have allowed.
        for batch in range(2 * settings.outbox_max_attempts):
            assert await send_due(now=start + batch * RELAY_WAIT) == outcome(deferred=1)

    first, second = reload(session, first), reload(session, second)
    assert (first.status, second.status) == (OutboxStatus.queued, OutboxStatus.queued)
    assert first.attempts == 0 and second.attempts == 0
    assert expected in first.last_error and expected in second.last_error
    assert smtp.received == []

    monkeypatch.undo()  # the relay is back as it should be
    back = start + 2 * settings.outbox_max_attempts * RELAY_WAIT
    assert await send_due(now=back) == outcome(sent=2)
    assert sorted(r.message_id for r in smtp.received) == sorted(
        [first.message_id, second.message_id]
    )


async def test_two_senders_at_once_send_each_email_once(
    session: Session, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Claims of five, so that a hundred rows are many claims and the two senders take turns.
    monkeypatch.setattr(outbox, "CLAIM_SIZE", 5)
    rows = queue(session, 100)

    results = await asyncio.gather(send_due(), send_due())

    assert all(r["sent"] > 0 for r in results), f"both senders took part: {results}"
    assert sum(r["sent"] for r in results) == 100
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
    claims = ((stale, now - STALE_CLAIM - timedelta(seconds=1)), (busy, now - timedelta(minutes=1)))
    for row, claimed in claims:
        session.exec(
            update(OutboxEmail)
            .where(OutboxEmail.id == row.id)  # type: ignore[arg-type]
            .values(status=OutboxStatus.sending, claimed_at=claimed)
        )
    session.commit()

    assert await send_due(now=now) == outcome(sent=1)

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

    assert await send_due() == outcome(failed=1)

    row = reload(session, row)
    assert row.status == OutboxStatus.failed and "no_such_email" in row.last_error


async def test_the_prefect_task_sends_the_outbox(session: Session, smtp: SmtpServer) -> None:
    queue(session, 2)

    assert await send_outbox.fn() == outcome(sent=2)
    assert len(smtp.received) == 2


@dataclass
class CountingHandler(RecordingHandler):
    """Also counts SMTP sessions, and can hang up after a reply as a relay does when it restarts."""

    sessions: int = 0
    hang_up_next: bool = False
    mails: int = 0
    silent_hang_up_on_mail: int = 0  # the nth MAIL FROM finds the connection gone, unanswered
    refuse_mail: str = ""
    refuse_rcpt: list[str] = field(default_factory=list)  # answered to RCPT TO, one each
    datas: int = 0
    hold_data: int = 0  # the nth DATA waits for `release` before it is answered
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

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

    async def handle_RCPT(
        self, server: SMTP, session: SmtpSession, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.refuse_rcpt:
            return self.refuse_rcpt.pop(0)
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        self.datas += 1
        if self.datas == self.hold_data:
            self.holding.set()
            while not self.release.is_set():  # the server's loop goes on serving others meanwhile
                await asyncio.sleep(0.01)
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

    assert await send_due() == outcome(sent=5)

    assert len(server.received) == 5
    assert handler.sessions == 1


async def test_the_batch_reconnects_after_the_server_hangs_up(
    session: Session, relay: tuple[SmtpServer, CountingHandler]
) -> None:
    server, handler = relay
    rows = queue(session, 3)
    handler.hang_up_next = True

    assert await send_due() == outcome(sent=3)

    assert sorted(r.message_id for r in server.received) == sorted(r.message_id for r in rows)
    assert handler.sessions == 2


async def test_a_connection_dropped_between_emails_is_opened_again_for_the_same_email(
    session: Session, relay: tuple[SmtpServer, CountingHandler]
) -> None:
    server, handler = relay
    rows = queue(session, 3)
    handler.silent_hang_up_on_mail = 2

    assert await send_due() == outcome(sent=3)

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

    assert await send_due() == outcome(sent=2, deferred=1)

    assert sorted(r.message_id for r in server.received) == sorted(r.message_id for r in others)
    assert handler.sessions == 2
    closed = reload(session, closed)
    assert closed.status == OutboxStatus.queued
    assert closed.last_error.startswith("421 4.3.2")


async def test_a_relay_refusing_our_sender_fails_no_email_uses_no_attempt_and_stops_the_batch(
    session: Session, relay: tuple[SmtpServer, CountingHandler]
) -> None:
    # Refusing our own From address is the relay's setting, not an answer about one email.
    server, handler = relay
    first, *rest = queue(session, 3)
    handler.refuse_mail = "530 5.7.0 Authentication required"
    now = utcnow()

    assert await send_due(now=now) == outcome(deferred=1)

    first = reload(session, first)
    assert first.status == OutboxStatus.queued and first.attempts == 0
    assert "refused the sender: 530 5.7.0 Authentication required" in first.last_error
    assert all(reload(session, r).attempts == 0 for r in rest)

    handler.refuse_mail = ""
    assert await send_due(now=now + RELAY_WAIT) == outcome(sent=3)


async def test_a_reply_to_rcpt_about_this_email_counts_as_an_attempt(
    session: Session, relay: tuple[SmtpServer, CountingHandler]
) -> None:
    server, handler = relay
    busy, unknown, fine = queue(session, 3)
    handler.refuse_rcpt = ["452 4.2.2 Mailbox full", "550 5.1.1 No such user here"]

    assert await send_due() == outcome(sent=1, deferred=1, failed=1)

    busy, unknown = reload(session, busy), reload(session, unknown)
    assert (busy.status, busy.attempts, busy.last_error) == (
        OutboxStatus.queued,
        1,
        "452 4.2.2 Mailbox full",
    )
    assert (unknown.status, unknown.attempts) == (OutboxStatus.failed, 1)
    assert unknown.last_error == "550 5.1.1 No such user here"
    assert [r.message_id for r in server.received] == [fine.message_id]


async def test_a_row_claimed_late_in_a_long_batch_is_not_taken_by_the_next_sender(
    session: Session, relay: tuple[SmtpServer, CountingHandler]
) -> None:
    server, handler = relay
    rows = queue(session, 2)
    session.exec(update(OutboxEmail).values(next_attempt_at=utcnow() - timedelta(minutes=15)))
    session.commit()
    handler.hold_data = 2

    # A batch that began eleven minutes ago (its `now`) is only now sending its second email.
    long_batch = asyncio.create_task(send_due(now=utcnow() - timedelta(minutes=11)))
    assert await asyncio.to_thread(handler.holding.wait, 10)
    claimed = reload(session, rows[1])
    assert claimed.status == OutboxStatus.sending
    assert claimed.claimed_at is not None and utcnow() - claimed.claimed_at < timedelta(minutes=1)

    # The next sender sees a claim seconds old, not eleven minutes: it leaves the row alone.
    assert await send_due() == outcome()
    handler.release.set()

    assert await long_batch == outcome(sent=2)
    assert Counter(r.message_id for r in server.received) == Counter(r.message_id for r in rows)


# --- sending a failed email again ------------------------------------------------------------

runner = CliRunner()
APPROVE_URL = "http://127.0.0.1:8000/approvals/7/s3cr3t-token-for-bea"


def approval_request(session: Session, key: str = "ask:7") -> OutboxEmail:
    """An approval request in the outbox, its link sealed in the row as routing leaves it."""
    row = queue_email(
        session=session,
        key=key,
        to="bea.jones@example.org",
        template="approval_request",
        context={name: value for name, value in APPROVAL.items() if name != "url"},
        links={"url": APPROVE_URL},
    )
    session.commit()
    return row


def failed_approval_request(session: Session, key: str) -> OutboxEmail:
    """An approval request the server refused for good."""
    row = approval_request(session, key)
    session.exec(
        update(OutboxEmail)
        .where(OutboxEmail.id == row.id)  # type: ignore[arg-type]
        .values(status=OutboxStatus.failed, attempts=1, last_error="550 5.1.1 No such user here")
    )
    session.commit()
    return reload(session, row)


async def test_a_failed_email_sent_again_from_the_cli_goes_out_with_its_link_working(
    session: Session, smtp: SmtpServer
) -> None:
    row = approval_request(session)
    smtp.refuse_next("550 5.1.1 No such user here")
    assert await send_due() == outcome(failed=1)
    assert SEALED in reload(session, row).context  # a failed row keeps its link, sealed

    result = runner.invoke(app, ["outbox", "resend", str(row.id)])

    assert result.exit_code == 0, result.output
    assert f"Email {row.id} (approval_request to bea.jones@example.org) is queued again" in (
        " ".join(result.output.split())
    )
    row = reload(session, row)
    assert (row.status, row.attempts, row.claimed_at) == (OutboxStatus.queued, 0, None)
    assert row.last_error.startswith("queued again by improve outbox resend on ")
    assert row.last_error.endswith("it had failed: 550 5.1.1 No such user here")

    assert await send_due() == outcome(sent=1)
    [received] = smtp.received
    assert APPROVE_URL in received.text  # the link works as the first email's would have
    assert received.message_id == row.message_id  # and it is recognisably the same email
    row = reload(session, row)
    assert (row.status, row.attempts, row.last_error) == (OutboxStatus.sent, 1, "")
    assert SEALED not in row.context


async def test_only_a_failed_email_can_be_sent_again_and_the_cli_says_why(
    session: Session, smtp: SmtpServer
) -> None:
    [sent] = queue(session)
    assert await send_due() == outcome(sent=1)

    again = runner.invoke(app, ["outbox", "resend", str(sent.id)])
    unknown = runner.invoke(app, ["outbox", "resend", "999999"])
    neither = runner.invoke(app, ["outbox", "resend"])
    both = runner.invoke(app, ["outbox", "resend", str(sent.id), "--all-failed"])

    assert again.exit_code == 2
    assert f"email {sent.id} to partner.0@example.net is sent: only a failed email can be sent" in (
        " ".join(again.output.split())
    )
    assert unknown.exit_code == 2 and "email 999999 not found" in unknown.output
    assert neither.exit_code == 2 and "--all-failed" in neither.output
    assert both.exit_code == 2 and "not both" in both.output
    assert reload(session, sent).status == OutboxStatus.sent
    assert len(smtp.received) == 1


async def test_resend_all_failed_queues_the_failed_and_leaves_skipped_and_sent_alone(
    session: Session, smtp: SmtpServer
) -> None:
    first = failed_approval_request(session, "ask:1")
    second = failed_approval_request(session, "ask:2")
    skipped, sent = queue(session, 2)
    for row, status in ((skipped, OutboxStatus.skipped), (sent, OutboxStatus.sent)):
        session.exec(
            update(OutboxEmail)
            .where(OutboxEmail.id == row.id)  # type: ignore[arg-type]
            .values(status=status)
        )
    session.commit()

    result = runner.invoke(app, ["outbox", "resend", "--all-failed"])

    assert result.exit_code == 0, result.output
    assert f"Email {first.id} " in result.output and f"Email {second.id} " in result.output
    assert f"Email {skipped.id} " not in result.output
    statuses = {
        r.id: r.status for r in (reload(session, r) for r in (first, second, skipped, sent))
    }
    assert statuses == {
        first.id: OutboxStatus.queued,
        second.id: OutboxStatus.queued,
        skipped.id: OutboxStatus.skipped,
        sent.id: OutboxStatus.sent,
    }
    nothing_left = runner.invoke(app, ["outbox", "resend", "--all-failed"])
    assert nothing_left.exit_code == 0 and "No failed email to send again" in nothing_left.output

    assert await send_due() == outcome(sent=2)
    assert sorted(r.message_id for r in smtp.received) == sorted(
        [first.message_id, second.message_id]
    )


# --- batches over the pool -------------------------------------------------------------------


async def test_a_big_batch_goes_over_the_pool_and_records_each_answer_right(
    session: Session, relay: tuple[SmtpServer, CountingHandler]
) -> None:
    server, handler = relay
    rows = queue(session, 120)
    full, unknown = rows[7], rows[63]
    server.refuse_recipient(full.recipient, "452 4.2.2 Mailbox full")
    server.refuse_recipient(unknown.recipient, "550 5.1.1 No such user here")

    assert await send_due() == outcome(sent=118, deferred=1, failed=1)

    assert handler.sessions == settings.smtp_pool_size  # a batch this big uses every connection
    good = [r for r in rows if r.id not in (full.id, unknown.id)]
    assert Counter(r.message_id for r in server.received) == Counter(r.message_id for r in good)
    full, unknown = reload(session, full), reload(session, unknown)
    assert (full.status, full.attempts, full.last_error) == (
        OutboxStatus.queued,
        1,
        "452 4.2.2 Mailbox full",
    )
    assert (unknown.status, unknown.attempts, unknown.last_error) == (
        OutboxStatus.failed,
        1,
        "550 5.1.1 No such user here",
    )
    assert all(reload(session, r).status == OutboxStatus.sent for r in good)
    session.expire_all()
    claimed = session.exec(select(OutboxEmail).where(OutboxEmail.claimed_at != None)).all()  # noqa: E711
    assert claimed == []  # every claim settled

    server.accept_recipient(full.recipient)
    assert await send_due() == outcome(sent=1)  # the 4xx retried; the 5xx left failed


async def test_a_claim_takes_no_more_rows_than_its_size(
    session: Session, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a plain IN (subquery ... LIMIT), PostgreSQL once claimed every due row at once.
    monkeypatch.setattr(outbox, "CLAIM_SIZE", 5)
    queue(session, 30)
    claims: list[int] = []
    claim = outbox._claim

    def counted(*args: Any) -> Any:
        rows, stamp = claim(*args)
        claims.append(len(rows))
        return rows, stamp

    monkeypatch.setattr(outbox, "_claim", counted)

    assert await send_due() == outcome(sent=30)
    assert claims == [5, 5, 5, 5, 5, 5, 0]


async def test_a_send_stops_at_its_limit_and_the_next_sends_the_rest(
    session: Session, smtp: SmtpServer
) -> None:
    rows = queue(session, 250)

    assert await send_due(limit=150) == outcome(sent=150)
    assert await send_due(limit=150) == outcome(sent=100)
    assert Counter(r.message_id for r in smtp.received) == Counter(r.message_id for r in rows)


async def test_the_prefect_task_sends_at_most_the_batch_limit_a_run(
    session: Session, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "outbox_batch_limit", 3)
    queue(session, 5)

    assert await send_outbox.fn() == outcome(sent=3)
    assert await send_outbox.fn() == outcome(sent=2)


# --- progress of a big send ------------------------------------------------------------------


async def test_progress_counts_the_rows_of_one_send_by_state(
    session: Session, smtp: SmtpServer
) -> None:
    rows = queue(session, 6, prefix="policy:7:")
    queue(session, 2, prefix="policy:70:")  # another version: a prefix is matched as given
    queue(session, 1, prefix="policy_7_")  # _ is no wildcard
    smtp.refuse_recipient(rows[1].recipient, "550 5.1.1 No such user here")
    smtp.refuse_recipient(rows[2].recipient, "451 4.3.0 Try again later")
    states = {rows[3].id: OutboxStatus.skipped, rows[4].id: OutboxStatus.sending}
    for row_id, status in states.items():
        session.exec(
            update(OutboxEmail)
            .where(OutboxEmail.id == row_id)  # type: ignore[arg-type]
            .values(status=status, claimed_at=utcnow())
        )
    session.commit()
    assert outbox_progress(session=session, key_prefix="policy:7:") == {
        "queued": 4, "held": 0, "sending": 1, "sent": 0, "failed": 0, "skipped": 1,
    }  # fmt: skip

    await send_due(only=[rows[0].id, rows[1].id, rows[2].id], now=utcnow())
    session.exec(
        update(OutboxEmail)
        .where(OutboxEmail.id == rows[2].id)  # type: ignore[arg-type]
        .values(next_attempt_at=utcnow() + timedelta(minutes=5))  # its backoff
    )
    session.commit()

    assert outbox_progress(session=session, key_prefix="policy:7:") == {
        "queued": 1, "held": 1, "sending": 1, "sent": 1, "failed": 1, "skipped": 1,
    }  # fmt: skip
    assert outbox_progress(session=session, key_prefix="policy:7") == {
        "queued": 3, "held": 1, "sending": 1, "sent": 1, "failed": 1, "skipped": 1,
    }  # fmt: skip
    assert sum(outbox_progress(session=session, key_prefix="policy:8:").values()) == 0


def test_progress_of_everything_is_refused(session: Session) -> None:
    with pytest.raises(ValueError, match="key_prefix must not be empty"):
        outbox_progress(session=session, key_prefix="")
