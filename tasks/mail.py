"""Email: queue a templated message in the caller's transaction; render and send the outbox."""

import hashlib
import logging
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any, NamedTuple

import aiosmtplib
import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
from prefect import task
from sqlalchemy import update
from sqlmodel import Session, col, select

from improve.errors import ImproveError, NotFound
from improve.formatting import FILTERS, payback_months
from improve.settings import settings
from models import OutboxEmail, OutboxStatus
from models.db import get_engine, utcnow
from tasks.consent import consent_withheld
from tasks.links import seal, unseal

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "email"

# The context key under which a row keeps its sealed links until it is sent.
SEALED = "sealed_links"
# Emails a person needs in order to do their job: they never offer an unsubscribe header.
ESSENTIAL = frozenset({"approval_request", "decision", "action_assigned", "sign_in"})

# A sender that dies mid-send leaves its row in "sending"; this long after the claim, it is sent
# again.
STALE_CLAIM = timedelta(minutes=10)
# While the SMTP server cannot be reached, the row that found it so waits this long; its attempts
# are kept for the server's answers about the email itself.
RELAY_WAIT = timedelta(seconds=60)

_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"\\]+@[^@\s<>()\[\],;:\"\\]+")


def message_id_for(key: str) -> str:
    """A stable Message-ID, so a resend of the same row is recognisably the same email."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    domain = settings.mail_from.rsplit("@", 1)[-1].strip("> ") or "improve.local"
    return f"<{digest}@{domain}>"


def queue_email(
    *,
    session: Session,
    key: str,
    to: str,
    template: str,
    context: dict[str, Any],
    links: dict[str, str] | None = None,
    improvement_id: int | None = None,
) -> OutboxEmail:
    """Add an email to the outbox unless one with this idempotency key is already there.

    Nothing is committed here: the row lands with the caller's change or not at all.
    `context` must be JSON-serialisable; it is rendered when the email is sent. `links` are the
    URLs that act (approve, complete, unsubscribe, sign in): they are stored sealed, join the
    context only while the email is built, and are forgotten once it is sent.
    """
    existing = session.exec(select(OutboxEmail).where(OutboxEmail.idempotency_key == key)).first()
    if existing is not None:
        return existing
    row = OutboxEmail(
        idempotency_key=key,
        recipient=to,
        template=template,
        context={**context, SEALED: {name: seal(url) for name, url in links.items()}}
        if links
        else context,
        improvement_id=improvement_id,
        message_id=message_id_for(key),
    )
    session.add(row)
    session.flush()
    return row


def without_links(context: dict[str, Any] | None) -> dict[str, Any]:
    """What an outbox row keeps once sent: its links lived only in the email."""
    return {name: value for name, value in (context or {}).items() if name != SEALED}


# --- rendering -------------------------------------------------------------------------------


def one_line(value: Any) -> str:
    """Collapse every kind of line break and control character, so a value stays one header."""
    return " ".join(_CONTROL.sub(" ", str(value)).split())


def paragraphs(value: Any) -> Markup:
    """Plain text as HTML paragraphs: escaped first, so markup in an idea is shown, never run."""
    blocks = re.split(r"\n\s*\n", str(value or "").strip())
    return Markup("\n").join(
        Markup("<p>{}</p>").format(Markup("<br>\n").join(escape(line) for line in b.splitlines()))
        for b in blocks
        if b.strip()
    )


# .html is autoescaped; .txt is not, or a title with "&" would read "&amp;" in the plain part.
_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(FILTERS, paragraphs=paragraphs)
_env.globals["payback_months"] = payback_months
_inliner = css_inline.CSSInliner(load_remote_stylesheets=False)


class Rendered(NamedTuple):
    subject: str
    text: str
    html: str


def render(template: str, context: dict[str, Any]) -> Rendered:
    """Render `template`.txt (which sets the subject) and `template`.html with inlined CSS."""
    module = _env.get_template(f"{template}.txt").make_module(context)
    subject = one_line(getattr(module, "subject", ""))
    text = re.sub(r"\n{3,}", "\n\n", str(module)).strip() + "\n"
    html = _env.get_template(f"{template}.html").render({**context, "subject": subject})
    return Rendered(subject, text, _inliner.inline(html))


def recipient_address(value: str) -> str:
    """The one bare address an email goes to; anything more is refused, not guessed at."""
    if not _ADDRESS.fullmatch(value.strip()):
        raise ValueError(f"recipient {value!r} is not a single email address")
    return value.strip()


def _unsubscribe_url(template: str, context: dict[str, Any]) -> str | None:
    url = "".join(_CONTROL.sub("", str(context.get("unsubscribe_url") or "")).split())
    if template in ESSENTIAL or not url.startswith(("https://", "http://")) or "<" in url:
        return None
    return url.replace(">", "")


def context_of(row: OutboxEmail) -> dict[str, Any]:
    """What an outbox row's templates are rendered with: its context and its unsealed links."""
    context = dict(row.context or {})
    for name, sealed in context.pop(SEALED, {}).items():
        context[name] = unseal(sealed)
    return context


def build_message(row: OutboxEmail) -> EmailMessage:
    """The email for an outbox row: multipart/alternative, or plain text for those who ask."""
    context = context_of(row)
    rendered = render(row.template, context)
    message = EmailMessage()
    message["From"] = one_line(settings.mail_from)
    message["To"] = recipient_address(row.recipient)
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = one_line(row.message_id)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: out-of-office replies stay quiet
    message["X-Improve-Key"] = one_line(row.idempotency_key)
    unsubscribe = _unsubscribe_url(row.template, context)
    if unsubscribe:
        message["List-Unsubscribe"] = f"<{unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(rendered.text)
    if not context.get("text_only"):
        message.add_alternative(rendered.html, subtype="html")
    return message


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


def _withheld(row: OutboxEmail) -> str | None:
    """Why this row must not be sent after all (consent withdrawn since it was queued), or None."""
    with Session(get_engine()) as session:
        return consent_withheld(session=session, recipient=row.recipient, template=row.template)


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
            reason = _withheld(row)
            if reason is not None:
                _record(row, attempted=False, status=OutboxStatus.skipped, last_error=reason)
                counts["skipped"] += 1
                continue
            try:
                message = build_message(row)
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


@task(name="send-outbox", retries=3, retry_delay_seconds=[2, 10, 60])
async def send_outbox(limit: int = 200) -> dict[str, int]:
    """Send the due emails in the outbox; how many were sent, deferred, failed and skipped."""
    return await send_due(limit=limit)
