"""The outbox sender: claim each due row, send it over one SMTP connection, record the answer;
and send a failed email again."""

import logging
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

import aiosmtplib
from sqlalchemy import update
from sqlmodel import Session, col, select

from improve.errors import ImproveError, NotFound
from improve.settings import settings
from models import OutboxEmail, OutboxStatus
from models.db import get_engine, utcnow
from tasks.contact import Hold, Verdict, verdict
from tasks.mail import build_message, recipient_address, without_links

log = logging.getLogger(__name__)

# A sender that dies mid-send leaves its row in "sending"; this long after the claim, it is sent
# again. One send is a connection and a few commands, each bounded by smtp_timeout_seconds: a
# claim ten times that old (two minutes at least) belongs to a sender that is gone. Were it
# shorter than a live send, that email could go twice.
STALE_CLAIM = max(timedelta(minutes=2), 10 * timedelta(seconds=settings.smtp_timeout_seconds))
# While the SMTP server cannot be reached, the row that found it so waits this long; its attempts
# are kept for the server's answers about the email itself.
RELAY_WAIT = timedelta(seconds=60)

# --- sending ---------------------------------------------------------------------------------


class RelayUnavailable(Exception):
    """The SMTP server cannot be reached or will not take mail from us: no row is at fault."""


def _where() -> str:
    return f"{settings.smtp_host}:{settings.smtp_port}"


class _Relay:
    """One SMTP connection reused for a whole batch, opened again when the server dropped it."""

    def __init__(self) -> None:
        self.smtp: aiosmtplib.SMTP | None = None
        self.sender = parseaddr(settings.mail_from)[1]

    async def _open(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            timeout=settings.smtp_timeout_seconds,
            use_tls=settings.smtp_tls == "tls",
            start_tls=settings.smtp_tls == "starttls",
            username=settings.smtp_user or None,
            password=settings.smtp_password.get_secret_value() or None,
        )
        try:
            await smtp.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            # A 421 greeting or a refused login reads best as the server put it.
            said = (
                f"{exc.code} {exc.message}"
                if isinstance(exc, aiosmtplib.SMTPResponseException)
                else str(exc)
            )
            raise RelayUnavailable(f"cannot connect to {_where()}: {said}") from exc
        return smtp

    async def send(self, message: EmailMessage, recipient: str) -> None:
        if self.smtp is None or not self.smtp.is_connected:
            self.smtp = await self._open()
        try:
            await self.smtp.send_message(message, sender=self.sender, recipients=[recipient])
        except aiosmtplib.SMTPServerDisconnected:
            # Relays close idle or long-lived connections; one fresh try tells that apart from
            # a server that is down.
            self.smtp = await self._open()
            try:
                await self.smtp.send_message(message, sender=self.sender, recipients=[recipient])
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as exc:
                raise RelayUnavailable(f"{_where()} dropped the connection: {exc}") from exc
        except aiosmtplib.SMTPTimeoutError as exc:
            raise RelayUnavailable(f"{_where()} timed out: {exc}") from exc
        except aiosmtplib.SMTPSenderRefused as exc:
            # Refusing our own From address is a relay setting, not this email's fault: failing
            # each row on it would throw away the whole outbox.
            raise RelayUnavailable(
                f"{_where()} refused the sender: {exc.code} {exc.message}"
            ) from exc

    async def close(self) -> None:
        if self.smtp is not None and self.smtp.is_connected:
            try:
                await self.smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                self.smtp.close()
        self.smtp = None


def _release_stale_claims() -> None:
    # Judged by the clock, from the moment of each claim: a batch's `now` is only its due cut-off.
    with Session(get_engine()) as session:
        session.exec(
            update(OutboxEmail)
            .where(
                OutboxEmail.status == OutboxStatus.sending,  # type: ignore[arg-type]
                OutboxEmail.claimed_at < utcnow() - STALE_CLAIM,  # type: ignore[operator,arg-type]
            )
            .values(
                status=OutboxStatus.queued,
                claimed_at=None,
                last_error="the sender stopped while sending; sending again",
            )
        )
        session.commit()


def _due_ids(now: datetime, limit: int, only: list[int] | None) -> list[int]:
    chosen = [col(OutboxEmail.id).in_(only)] if only is not None else []
    with Session(get_engine()) as session:
        ids = session.exec(
            select(OutboxEmail.id)
            .where(
                OutboxEmail.status == OutboxStatus.queued,
                OutboxEmail.next_attempt_at <= now,
                *chosen,
            )
            .order_by(OutboxEmail.next_attempt_at, OutboxEmail.id)  # type: ignore[arg-type]
            .limit(limit)
        ).all()
    return [i for i in ids if i is not None]


def _claim(row_id: int, now: datetime) -> OutboxEmail | None:
    """Take the row for this sender, or None when another sender took it first."""
    with Session(get_engine(), expire_on_commit=False) as session:
        result = session.exec(
            update(OutboxEmail)
            .where(
                OutboxEmail.id == row_id,  # type: ignore[arg-type]
                OutboxEmail.status == OutboxStatus.queued,  # type: ignore[arg-type]
                OutboxEmail.next_attempt_at <= now,  # type: ignore[arg-type]
            )
            # The time of this claim, not of the batch: a row claimed late in a long batch must
            # not look abandoned to the next sender.
            .values(status=OutboxStatus.sending, claimed_at=utcnow())
        )
        row = session.get(OutboxEmail, row_id) if result.rowcount == 1 else None
        session.commit()
        return row


def _record(row: OutboxEmail, *, attempted: bool = True, **values: Any) -> None:
    """Settle a claimed row; `attempted` is whether the server was asked to take this email."""
    if "last_error" in values:
        values["last_error"] = values["last_error"][:2000]
    if attempted:
        values["attempts"] = row.attempts + 1
    with Session(get_engine()) as session:
        session.exec(
            update(OutboxEmail)
            .where(
                OutboxEmail.id == row.id,  # type: ignore[arg-type]
                OutboxEmail.status == OutboxStatus.sending,  # type: ignore[arg-type]
            )
            .values(claimed_at=None, **values)
        )
        session.commit()


def _retry_later(row: OutboxEmail, now: datetime, error: str) -> str:
    attempts = row.attempts + 1
    if attempts >= settings.outbox_max_attempts:
        _record(
            row,
            status=OutboxStatus.failed,
            last_error=f"gave up after {attempts} attempts: {error}",
        )
        return "failed"
    delays = settings.outbox_backoff_seconds or [60.0]
    delay = delays[min(attempts, len(delays)) - 1]
    _record(
        row,
        status=OutboxStatus.queued,
        next_attempt_at=now + timedelta(seconds=delay),
        last_error=error,
    )
    return "deferred"


_WAITING = "SMTP relay unreachable since "
_WAITING_SINCE = re.compile(re.escape(_WAITING) + r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC")


def _wait_for_relay(row: OutboxEmail, now: datetime, error: RelayUnavailable) -> None:
    """Put the row back a little later, its attempts untouched: the server, not it, is at fault."""
    # A row that waits through several batches keeps the moment it first found the server gone.
    earlier = _WAITING_SINCE.match(row.last_error)
    since = datetime.fromisoformat(earlier[1]).replace(tzinfo=UTC) if earlier else utcnow()
    _record(
        row,
        attempted=False,
        status=OutboxStatus.queued,
        next_attempt_at=now + RELAY_WAIT,
        last_error=f"{_WAITING}{since:%Y-%m-%d %H:%M:%S} UTC; waiting, no attempt used: {error}",
    )


def _verdict(row: OutboxEmail, now: datetime) -> Verdict:
    """Whether, when and how this row goes: consent, the reader's window and weekly limit, their
    language and format (tasks/contact.py), asked as it is sent, not only when it was queued."""
    with Session(get_engine()) as session:
        return verdict(session=session, row=row, now=now)


def _hold(row: OutboxEmail, hold: Hold) -> None:
    """Put the row back until its reader will take it: not a failure, so no attempt is used."""
    _record(
        row,
        attempted=False,
        status=OutboxStatus.queued,
        next_attempt_at=hold.until,
        last_error=hold.reason,
    )


async def send_due(
    *, limit: int = 200, now: datetime | None = None, only: list[int] | None = None
) -> dict[str, int]:
    """Send the outbox rows that are due (or just those in `only`), each claimed first so no
    two senders send one row."""
    now = now or utcnow()
    counts = {"sent": 0, "deferred": 0, "failed": 0, "skipped": 0}
    _release_stale_claims()
    relay = _Relay()
    try:
        for row_id in _due_ids(now, limit, only):
            row = _claim(row_id, now)
            if row is None:
                continue
            decided = _verdict(row, now)
            if decided.skip is not None:
                _record(row, attempted=False, status=OutboxStatus.skipped, last_error=decided.skip)
                counts["skipped"] += 1
                continue
            if decided.hold is not None:
                _hold(row, decided.hold)
                counts["deferred"] += 1
                continue
            try:
                message = build_message(row, decided.reader)
            except Exception as exc:  # a broken template or address: retrying cannot mend it
                _record(row, status=OutboxStatus.failed, last_error=f"cannot build: {exc!r}")
                counts["failed"] += 1
                continue
            try:
                await relay.send(message, recipient_address(row.recipient))
            except RelayUnavailable as exc:
                # Hammering a server that is down helps nobody: this row waits, the rest stay due,
                # and none of them loses an attempt, however long the outage lasts.
                log.warning("%s; %s waits and the batch stopped", exc, row.idempotency_key)
                _wait_for_relay(row, now, exc)
                counts["deferred"] += 1
                break
            except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused) as exc:
                refusal = (
                    exc.recipients[0] if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) else exc
                )
                reply = f"{refusal.code} {refusal.message}"
                if refusal.code >= 500:
                    _record(row, status=OutboxStatus.failed, last_error=reply)
                    counts["failed"] += 1
                else:
                    counts[_retry_later(row, now, reply)] += 1
            except (aiosmtplib.SMTPNotSupported, ValueError) as exc:
                _record(row, status=OutboxStatus.failed, last_error=f"cannot send: {exc}")
                counts["failed"] += 1
            else:
                # Marked after the server accepted it: a crash in between sends it again, with
                # the same Message-ID, which is better than losing it.
                _record(
                    row,
                    status=OutboxStatus.sent,
                    sent_at=utcnow(),
                    last_error="",
                    context=without_links(row.context),
                )
                counts["sent"] += 1
    finally:
        await relay.close()
    return counts


# --- sending again ---------------------------------------------------------------------------


class EmailNotFound(NotFound):
    def __init__(self, email_id: int) -> None:
        super().__init__("email", email_id)


class NotResendable(ImproveError):
    status_code = 409


def resend(
    *, session: Session, email_id: int, by: str, improvement_id: int | None = None
) -> OutboxEmail:
    """Put a failed email back in the queue with its attempts reset; the caller commits.

    Only a failed row: a sent one went out, a skipped one must not. Its links are still sealed in
    it (a row forgets them only once sent), so the email that goes out works as the first would
    have; it keeps its Message-ID. `improvement_id`, when given, must be the email's.
    """
    row = session.get(OutboxEmail, email_id)
    if row is None or (improvement_id is not None and row.improvement_id != improvement_id):
        raise EmailNotFound(email_id)
    previous = row.last_error
    # Conditional, so two people pressing "Send again" at once queue it once and one is told.
    result = session.exec(
        update(OutboxEmail)
        .where(
            col(OutboxEmail.id) == email_id,
            col(OutboxEmail.status) == OutboxStatus.failed,
        )
        .values(
            status=OutboxStatus.queued,
            attempts=0,
            next_attempt_at=utcnow(),
            claimed_at=None,
            last_error=f"queued again by {by} on {utcnow():%Y-%m-%d %H:%M} UTC; "
            f"it had failed: {previous}"[:2000],
        )
    )
    session.refresh(row)
    if result.rowcount != 1:
        raise NotResendable(
            f"email {email_id} to {row.recipient} is {row.status}: "
            "only a failed email can be sent again"
        )
    return row
