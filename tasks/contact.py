"""When and how an email may go to its reader: consent, a customer's contact window and weekly
limit (which hold non-essential email, never essential), and their language and format."""

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import NamedTuple

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from improve.errors import InvalidInput, NotFound
from improve.settings import settings
from models import ContactFormat, Customer, OutboxEmail, OutboxStatus
from models.db import utcnow
from tasks.consent import consents_of, row_withheld
from tasks.mail import ESSENTIAL, LANGUAGES, Reader, customers_of, reader_for

WEEK = timedelta(days=7)


class Hold(NamedTuple):
    """Not yet: the moment (UTC) the email may go, and why, as a person reads it."""

    until: datetime
    reason: str


class Verdict(NamedTuple):
    """What the sender does with one claimed row."""

    reader: Reader
    skip: str | None = None  # never send it, for this reason
    hold: Hold | None = None  # send it later
    # Not decided in this batch: an earlier row in it counts against the same weekly limit, so
    # this one is asked about again once that one is settled.
    ask_again: bool = False


def _bounds(customer: Customer) -> tuple[time, time] | None:
    """The window as (opens, closes) local times, or None when any time will do.

    A missing end reads as midnight, so "from 09:00" alone is 09:00 to midnight and "until 17:00"
    alone is midnight to 17:00; a window that opens and closes at the same minute is no window
    (holding mail for ever would be a worse reading of it).
    """
    opens = customer.contact_from or time(0)
    closes = customer.contact_until or time(0)
    if opens == closes:
        return None
    return opens, closes


def window_text(customer: Customer) -> str:
    """How a person reads the window: "09:00–17:00 Europe/London", or "any time"."""
    bounds = _bounds(customer)
    if bounds is None:
        return "any time"
    return f"{bounds[0]:%H:%M}–{bounds[1]:%H:%M} {settings.timezone}"


def window_opens(customer: Customer, at: datetime) -> datetime:
    """The first moment from `at` on when the customer's contact window is open (`at` itself when
    it is open then). Local wall-clock times in settings.timezone; a window that spans midnight
    (22:00–06:00) is open from its start to midnight and from midnight to its end."""
    bounds = _bounds(customer)
    if bounds is None:
        return at
    opens, closes = bounds
    local = at.astimezone(settings.zone)
    now = local.time().replace(tzinfo=None)
    is_open = opens <= now < closes if opens < closes else (now >= opens or now < closes)
    if is_open:
        return at
    # Closed: it opens at the next `opens` after `at`, today or tomorrow (the day after covers a
    # clock change landing on the boundary). A start inside a spring-forward gap is read with the
    # offset before the change, which puts it just after the gap.
    for days in range(3):
        start = datetime.combine(local.date() + timedelta(days=days), opens, tzinfo=settings.zone)
        if start.astimezone(UTC) > at:
            return start.astimezone(UTC)
    raise AssertionError("a daily window opens within two days")  # pragma: no cover


def weekly_limit_frees(customer: Customer, sent: Sequence[datetime]) -> datetime | None:
    """When the customer's weekly limit lets one more non-essential email go, if not now; `sent`
    are the moments their non-essential emails went in the seven days before now, oldest first.

    The limit is over any seven days: with N sent in the seven days before now and a limit of N,
    the next may go once the oldest of them is seven days old.
    """
    limit = customer.weekly_limit
    if limit is None or len(sent) < limit:
        return None
    return sent[len(sent) - limit] + WEEK


def _sent_in_week(
    *, session: Session, addresses: Iterable[str], now: datetime
) -> dict[str, list[datetime]]:
    """When non-essential email went to each of these addresses in the seven days before `now`,
    oldest first: one query for a batch."""
    wanted = set(addresses)
    sent: dict[str, list[datetime]] = {address: [] for address in wanted}
    if not wanted:
        return sent
    for recipient, sent_at in session.exec(
        select(OutboxEmail.recipient, OutboxEmail.sent_at)
        .where(
            col(OutboxEmail.recipient).in_(wanted),
            col(OutboxEmail.status) == OutboxStatus.sent,
            col(OutboxEmail.template).not_in(ESSENTIAL),
            col(OutboxEmail.sent_at) > now - WEEK,
        )
        .order_by(col(OutboxEmail.sent_at))
    ):
        assert sent_at is not None
        sent[recipient].append(sent_at)
    return sent


def _local(moment: datetime) -> str:
    return f"{moment.astimezone(settings.zone):%Y-%m-%d %H:%M %Z}"


def held_until(
    customer: Customer, template: str, now: datetime, sent: Sequence[datetime]
) -> Hold | None:
    """Whether a `template` email to `customer` must wait, and until when; essential never waits.
    `sent` as for `weekly_limit_frees`.

    The weekly limit first, then the window from that moment: the email goes at the first moment
    both allow.
    """
    if template in ESSENTIAL:
        return None
    until, reasons = now, []
    frees = weekly_limit_frees(customer, sent)
    if frees is not None:
        until = frees
        reasons.append(
            f"{customer.name} has had their {customer.weekly_limit} non-essential email(s) "
            "in the last seven days"
        )
    opens = window_opens(customer, until)
    if opens != until:
        until = opens
        reasons.append(f"{customer.name} takes non-urgent email {window_text(customer)}")
    if not reasons:
        return None
    return Hold(until, f"held until {_local(until)}, no attempt used: {'; '.join(reasons)}")


def counts_against_limit(row: OutboxEmail, customer: Customer | None) -> bool:
    """Whether sending this row uses one of its reader's weekly allowance."""
    return (
        customer is not None
        and customer.weekly_limit is not None
        and (row.template not in ESSENTIAL)
    )


def verdict(*, session: Session, row: OutboxEmail, now: datetime) -> Verdict:
    """The one question the sender asks of a claimed row: skip it, hold it, or build it for whom."""
    return verdicts(session=session, rows=[row], now=now)[0]


def verdicts(*, session: Session, rows: Sequence[OutboxEmail], now: datetime) -> list[Verdict]:
    """`verdict` for each of `rows`, read in four queries however many rows there are.

    Consent first (a skip is final), then a weekly limit of nought (no non-essential email at all
    is a refusal, not a wait), then the weekly limit and the contact window. Each row is judged on
    what was sent before the batch: two rows that count against one reader's limit must not be in
    one batch (the sender asks about the second once the first is settled).
    """
    customers = customers_of(session=session, rows=rows)
    consents = consents_of(session=session, customer_ids={c.id for c in customers if c and c.id})
    limited = {
        customer.email
        for row, customer in zip(rows, customers, strict=True)
        if customer is not None and counts_against_limit(row, customer)
    }
    sent = _sent_in_week(session=session, addresses=limited, now=now)
    decided = []
    counted: set[str] = set()
    for row, customer in zip(rows, customers, strict=True):
        reader = reader_for(customer)
        skip = row_withheld(row, customer, consents)
        if skip is not None or customer is None:
            decided.append(Verdict(reader, skip=skip))
        elif counts_against_limit(row, customer) and customer.email in counted:
            decided.append(Verdict(reader, ask_again=True))
        elif row.template not in ESSENTIAL and customer.weekly_limit == 0:
            decided.append(
                Verdict(
                    reader,
                    skip=f"skipped: {customer.name} takes no non-essential email (weekly limit 0)",
                )
            )
        else:
            if counts_against_limit(row, customer):
                counted.add(customer.email)
            hold = held_until(customer, row.template, now, sent.get(customer.email, []))
            decided.append(Verdict(reader, hold=hold))
    return decided


# --- changing a customer's preferences -------------------------------------------------------


class CustomerNotFound(NotFound):
    def __init__(self, email: str) -> None:
        super().__init__("customer", email)


_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d\d)\s*[-–]\s*(\d{1,2}):(\d\d)\s*$")


def parse_window(text: str) -> tuple[time | None, time | None]:
    """A window as people write it, "09:00-17:00" (or "22:00-06:00", across midnight), as
    (from, until); "any" for no window."""
    if text.strip().lower() in {"any", "none", ""}:
        return None, None
    match = _WINDOW.match(text)
    try:
        if match is None:
            raise ValueError
        h1, m1, h2, m2 = (int(part) for part in match.groups())
        return time(h1, m1), time(h2, m2)
    except ValueError:
        raise InvalidInput(
            {"window": f"{text!r} is not a window like 09:00-17:00 (or 'any' for none)"}
        ) from None


def customer_by_email(*, session: Session, email: str) -> Customer:
    """The customer with this email, whatever its case, or CustomerNotFound."""
    email = email.strip().lower()
    customer = (  # no address holds a NUL, and PostgreSQL refuses one even in a query
        session.exec(select(Customer).where(func.lower(col(Customer.email)) == email)).first()
        if "\x00" not in email
        else None
    )
    if customer is None:
        raise CustomerNotFound(email)
    return customer


def set_contact_preferences(
    *,
    session: Session,
    customer_id: int,
    language: str | None = None,
    contact_format: ContactFormat | str | None = None,
    window: str | None = None,
    weekly_limit: int | None = None,
    no_weekly_limit: bool = False,
) -> Customer:
    """Change how a customer is written to; what is not given stays. The caller commits.

    Mail already waiting follows the change, since the sender reads preferences when it sends.
    """
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise CustomerNotFound(f"#{customer_id}")
    errors: dict[str, str] = {}
    if language is not None:
        if language.strip().lower() not in LANGUAGES:
            errors["language"] = f"{language!r}: we write in {' or '.join(LANGUAGES)}"
        else:
            customer.language = language.strip().lower()
    if contact_format is not None:
        try:
            customer.contact_format = ContactFormat(contact_format)
        except ValueError:
            errors["format"] = f"{contact_format!r}: html or text"
    if window is not None:
        try:
            customer.contact_from, customer.contact_until = parse_window(window)
        except InvalidInput as exc:
            errors.update(exc.errors)
    if weekly_limit is not None and no_weekly_limit:
        errors["weekly_limit"] = "give a number or say there is no limit, not both"
    elif weekly_limit is not None:
        if not 0 <= weekly_limit <= 100:
            errors["weekly_limit"] = f"{weekly_limit}: from 0 (none) to 100 a week"
        else:
            customer.weekly_limit = weekly_limit
    elif no_weekly_limit:
        customer.weekly_limit = None
    if errors:
        raise InvalidInput(errors)
    session.add(customer)
    # What waits for them was held by the old window or limit: due again now, the sender asks
    # the new preferences (and holds it again if they say so).
    session.execute(
        update(OutboxEmail)
        .where(
            col(OutboxEmail.recipient) == customer.email,
            col(OutboxEmail.status) == OutboxStatus.queued,
            col(OutboxEmail.next_attempt_at) > utcnow(),
        )
        .values(next_attempt_at=utcnow())
    )
    session.flush()
    return customer
