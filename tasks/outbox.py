"""The outbox sender: claim due rows in batches, ask each its send-time verdict, render off the
event loop, send over a small pool of SMTP connections, record each batch's answers at once;
and send a failed email again; and how far a big send has got."""

import asyncio
import logging
import math
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosmtplib
import sqlalchemy as sa
from sqlalchemy import func, update
from sqlmodel import Session, col, select

from improve.errors import ImproveError, NotFound
from improve.settings import settings
from models import OutboxEmail, OutboxStatus
from models.db import get_engine, utcnow
from tasks.contact import Verdict, verdicts
from tasks.mail import encode_message, once_sent, recipient_address
from tasks.smtp_pool import Connection, Pool, RelayUnavailable

log = logging.getLogger(__name__)

# A sender that dies mid-send leaves its rows in "sending"; this long after the claim, they are
# sent again. One send is a connection and a few commands, each bounded by smtp_timeout_seconds:
# a claim ten times that old (two minutes at least) belongs to a sender that is gone. A sender
# starts no send on a claim older than half of it (see _Batch.fresh), so no live send is taken.
STALE_CLAIM = max(timedelta(minutes=2), 10 * timedelta(seconds=settings.smtp_timeout_seconds))
# While the SMTP server cannot be reached, the row that found it so waits this long; its attempts
# are kept for the server's answers about the email itself.
RELAY_WAIT = timedelta(seconds=60)
# Rows claimed, judged and recorded together: one transaction each way for this many emails.
CLAIM_SIZE = 100
# A connection costs a few round trips (more with TLS and AUTH) before its first email: a batch
# opens one more for each this many emails, up to the pool's size.
EMAILS_PER_CONNECTION = 20

# --- claiming and recording ------------------------------------------------------------------


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


def _claim(
    now: datetime, size: int, only: list[int] | None, tried: set[int]
) -> tuple[list[OutboxEmail], datetime]:
    """Take up to `size` due rows for this sender in one statement, oldest due first, with the
    moment of the claim; rows another sender took first are not among them.

    One statement, WITH due AS (...) UPDATE ... WHERE id IN due AND still queued: SQLite takes
    its write lock for the whole of it, and on PostgreSQL SKIP LOCKED lets two senders claim side
    by side. `tried` are rows this send already tried and put back (a 4xx with no backoff): once a
    send is enough.
    """
    due = (
        select(OutboxEmail.id)
        .where(
            col(OutboxEmail.status) == OutboxStatus.queued,
            col(OutboxEmail.next_attempt_at) <= now,
            *([col(OutboxEmail.id).in_(only)] if only is not None else []),
            *([col(OutboxEmail.id).not_in(tried)] if tried else []),
        )
        .order_by(col(OutboxEmail.next_attempt_at), col(OutboxEmail.id))
        .limit(size)
        .with_for_update(skip_locked=True)
        # Materialised: as a plain subquery PostgreSQL may run it again per row, LIMIT and all,
        # and the claim would take every due row.
        .cte("due")
        .prefix_with("MATERIALIZED")
    )
    # The time of this claim, not of the send: rows claimed late in a long send must not look
    # abandoned to the next sender.
    stamp = utcnow()
    with Session(get_engine(), expire_on_commit=False) as session:
        rows = session.scalars(
            update(OutboxEmail)
            .where(
                col(OutboxEmail.id).in_(select(due.c.id)),
                col(OutboxEmail.status) == OutboxStatus.queued,
            )
            .values(status=OutboxStatus.sending, claimed_at=stamp)
            .returning(OutboxEmail)
            .execution_options(synchronize_session=False)
        ).all()
        session.commit()
    return sorted(rows, key=lambda r: (r.next_attempt_at, r.id or 0)), stamp


def _settle(outcomes: list[dict[str, Any]], stamp: datetime) -> None:
    """Record a batch's outcomes in one transaction: each a row id and the values it ends with.

    Only while the row is still this sender's claim: a row some other sender took back after a
    stall is theirs to settle.
    """
    table: sa.Table = OutboxEmail.__table__  # type: ignore[attr-defined]
    by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for outcome in outcomes:
        values = {**outcome, "claimed_at": None}
        if "last_error" in values:
            values["last_error"] = values["last_error"][:2000]
        shape = tuple(sorted(name for name in values if name != "id"))
        by_shape.setdefault(shape, []).append(
            {"row_id": values.pop("id"), "stamp": stamp, **{f"v_{n}": v for n, v in values.items()}}
        )
    with get_engine().begin() as connection:
        for shape, params in by_shape.items():
            statement = (
                sa.update(table)
                .where(
                    table.c.id == sa.bindparam("row_id"),
                    table.c.status == OutboxStatus.sending.value,
                    table.c.claimed_at == sa.bindparam("stamp", type_=table.c.claimed_at.type),
                )
                .values({n: sa.bindparam(f"v_{n}", type_=table.c[n].type) for n in shape})
            )
            connection.execute(statement, params)


# --- what each row comes to ------------------------------------------------------------------


def _attempted(row: OutboxEmail, **values: Any) -> dict[str, Any]:
    """The server was asked to take this email: one attempt used."""
    return {"id": row.id, "attempts": row.attempts + 1, **values}


def _sent(row: OutboxEmail) -> dict[str, Any]:
    # Marked after the server accepted it: a crash in between sends it again, with the same
    # Message-ID, which is better than losing it.
    sent = _attempted(row, status=OutboxStatus.sent, sent_at=utcnow(), last_error="")
    if (kept := once_sent(row.context)) is not None:
        sent["context"] = kept
    return sent


def _failed(row: OutboxEmail, error: str) -> dict[str, Any]:
    return _attempted(row, status=OutboxStatus.failed, last_error=error)


def _retry_later(row: OutboxEmail, now: datetime, error: str) -> dict[str, Any]:
    attempts = row.attempts + 1
    if attempts >= settings.outbox_max_attempts:
        return _failed(row, f"gave up after {attempts} attempts: {error}")
    delays = settings.outbox_backoff_seconds or [60.0]
    delay = delays[min(attempts, len(delays)) - 1]
    return _attempted(
        row,
        status=OutboxStatus.queued,
        next_attempt_at=now + timedelta(seconds=delay),
        last_error=error,
    )


_WAITING = "SMTP relay unreachable since "
_WAITING_SINCE = re.compile(re.escape(_WAITING) + r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC")


def _wait_for_relay(row: OutboxEmail, now: datetime, error: RelayUnavailable) -> dict[str, Any]:
    """Put the row back a little later, its attempts untouched: the server, not it, is at fault."""
    # A row that waits through several batches keeps the moment it first found the server gone.
    earlier = _WAITING_SINCE.match(row.last_error)
    since = datetime.fromisoformat(earlier[1]).replace(tzinfo=UTC) if earlier else utcnow()
    return {
        "id": row.id,
        "status": OutboxStatus.queued,
        "next_attempt_at": now + RELAY_WAIT,
        "last_error": f"{_WAITING}{since:%Y-%m-%d %H:%M:%S} UTC; waiting, no attempt used: {error}",
    }


def _untouched(row: OutboxEmail) -> dict[str, Any]:
    """Back in the queue as it was: this send never got to it."""
    return {"id": row.id, "status": OutboxStatus.queued}


def _by_verdict(row: OutboxEmail, decided: Verdict) -> tuple[str, dict[str, Any]] | None:
    """What a row comes to without being sent, or None when it is to be sent."""
    if decided.skip is not None:
        return "skipped", {"id": row.id, "status": OutboxStatus.skipped, "last_error": decided.skip}
    if decided.hold is not None:
        # Not a failure, so no attempt is used.
        held = {"next_attempt_at": decided.hold.until, "last_error": decided.hold.reason}
        return "deferred", {"id": row.id, "status": OutboxStatus.queued, **held}
    if decided.ask_again:
        return "", _untouched(row)
    return None


# --- sending ---------------------------------------------------------------------------------


@dataclass
class _Batch:
    """One claim's rows on their way: each worker takes the next, and every row ends with an
    outcome to record; counts are what send_due reports."""

    now: datetime
    stamp: datetime
    waiting: deque[tuple[OutboxEmail, bytes]]  # each row to send, and its email
    counts: dict[str, int]
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    relay_down: bool = False
    stale: bool = False

    def fresh(self) -> bool:
        # A row is sent only while its claim is young: past half of STALE_CLAIM another sender
        # may soon take it back, and it would go twice.
        self.stale = self.stale or utcnow() - self.stamp > STALE_CLAIM / 2
        return not self.stale

    def settle(self, what: str, outcome: dict[str, Any]) -> None:
        if what:
            self.counts[what] += 1
        self.outcomes.append(outcome)

    def prepare(self, rows: list[OutboxEmail]) -> None:
        """Ask each row its verdict and build the emails that go: run in a thread, so the event
        loop is free meanwhile; one hand-over a batch, as one a row would cost more than the
        rendering (the GIL runs the two one at a time anyway)."""
        with Session(get_engine()) as session:
            decided = verdicts(session=session, rows=rows, now=self.now)
        for row, verdict in zip(rows, decided, strict=True):
            settled = _by_verdict(row, verdict)
            if settled is not None:
                self.settle(*settled)
                continue
            try:
                self.waiting.append((row, encode_message(row, verdict.reader)))
            except Exception as exc:  # a broken template or address: retrying cannot mend it
                self.settle("failed", _failed(row, f"cannot build: {exc!r}"))

    async def work(self, connection: Connection) -> None:
        while self.waiting and not self.relay_down and self.fresh():
            row, message = self.waiting.popleft()
            try:
                await connection.send(message, recipient_address(row.recipient))
            except RelayUnavailable as exc:
                if self.relay_down:  # another connection found it first: this row never went
                    self.settle("", _untouched(row))
                    continue
                # Hammering a server that is down helps nobody: this row waits, the rest stay
                # due, and none of them loses an attempt, however long the outage lasts.
                log.warning("%s; %s waits and the send stopped", exc, row.idempotency_key)
                self.relay_down = True
                self.settle("deferred", _wait_for_relay(row, self.now, exc))
            except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused) as exc:
                refusal = (
                    exc.recipients[0] if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) else exc
                )
                reply = f"{refusal.code} {refusal.message}"
                if refusal.code >= 500:
                    self.settle("failed", _failed(row, reply))
                else:
                    outcome = _retry_later(row, self.now, reply)
                    self.settle(
                        "failed" if outcome["status"] == OutboxStatus.failed else "deferred",
                        outcome,
                    )
            except (aiosmtplib.SMTPNotSupported, ValueError) as exc:
                self.settle("failed", _failed(row, f"cannot send: {exc}"))
            else:
                self.settle("sent", _sent(row))


async def _send_batch(
    rows: list[OutboxEmail], stamp: datetime, now: datetime, pool: Pool, counts: dict[str, int]
) -> _Batch:
    batch = _Batch(now, stamp, deque(), counts)
    await asyncio.to_thread(batch.prepare, rows)
    try:
        wanted = math.ceil(len(batch.waiting) / EMAILS_PER_CONNECTION)
        await asyncio.gather(*(batch.work(c) for c in pool.connections(wanted)))
    finally:
        # Whatever stopped the batch (the relay, a stale claim, a cancelled run), the rows it
        # never got to go back as they were, and what it did is recorded.
        batch.outcomes.extend(_untouched(row) for row, _ in batch.waiting)
        await asyncio.shield(asyncio.to_thread(_settle, batch.outcomes, stamp))
    return batch


async def send_due(
    *, limit: int | None = None, now: datetime | None = None, only: list[int] | None = None
) -> dict[str, int]:
    """Send the outbox rows that are due (or just those in `only`), at most `limit` of them
    (settings.outbox_batch_limit by default), each claimed first so no two senders send one row.
    Returns how many were sent, deferred, failed and skipped."""
    now = now or utcnow()
    limit = settings.outbox_batch_limit if limit is None else limit
    counts = {"sent": 0, "deferred": 0, "failed": 0, "skipped": 0}
    await asyncio.to_thread(_release_stale_claims)
    pool = Pool()
    tried: set[int] = set()
    try:
        while (done := sum(counts.values())) < limit:
            rows, stamp = await asyncio.to_thread(
                _claim, now, min(CLAIM_SIZE, limit - done), only, tried
            )
            if not rows:
                break
            batch = await _send_batch(rows, stamp, now, pool, counts)
            tried.update(
                o["id"]
                for o in batch.outcomes
                if o["status"] == OutboxStatus.queued and "attempts" in o
            )
            if batch.relay_down or batch.stale:
                break
    finally:
        await pool.close()
    return counts


# --- how far a big send has got --------------------------------------------------------------


def outbox_progress(*, session: Session, key_prefix: str) -> dict[str, int]:
    """How many emails whose idempotency key starts with `key_prefix` (e.g. "policy:7:") are
    queued (due now), held (queued for later: a contact window, a weekly limit, a retry, a relay
    outage), sending, sent, failed and skipped.

    One query over the unique key index: the prefix is matched literally, its % and _ escaped.
    """
    if not key_prefix:
        raise ValueError("key_prefix must not be empty: it would count the whole outbox")
    pattern = re.sub(r"([\\%_])", r"\\\1", key_prefix) + "%"
    now = utcnow()
    waiting = sa.and_(
        col(OutboxEmail.status) == OutboxStatus.queued, col(OutboxEmail.next_attempt_at) > now
    )
    state = sa.case((waiting, "held"), else_=col(OutboxEmail.status))
    counts = dict.fromkeys(("queued", "held", "sending", "sent", "failed", "skipped"), 0)
    for name, n in session.exec(
        select(state, func.count())
        .where(col(OutboxEmail.idempotency_key).like(pattern, escape="\\"))
        .group_by(state)
    ):
        counts[str(name)] = int(n)
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
