"""Suggestions from the public form: taken in, confirmed by link, turned into a `customer`
improvement, and the sender told what became of it.

Nothing happens for a suggestion until the sender follows the emailed link: before that it is
a row with a hashed token and one confirmation email. Bots are dropped without a word (a filled
honeypot, a form sent faster than a person types); people and addresses are rate limited.
"""

import hashlib
import hmac
import math
import re
import secrets
from datetime import datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import ColumnElement, func, update
from sqlmodel import Session, col, select

from improve.errors import InvalidInput, LinkRefused, TooManyRequests, field_errors
from improve.formatting import when
from improve.settings import settings
from models import (
    ActionItem,
    ApprovalRequest,
    ApprovalStatus,
    Category,
    Channel,
    Customer,
    CustomerConsent,
    Improvement,
    ImprovementCreate,
    OutboxEmail,
    Purpose,
    Source,
    Status,
    Suggestion,
    SuggestionStatus,
)
from models.db import utcnow
from tasks import links
from tasks.consent import queue_customer_email, record_consent
from tasks.lifecycle import get_improvement
from tasks.mail import queue_email, recipient_address
from tasks.submission import submit_customer_suggestion

# What a customer may choose on the form; the first is the default.
CATEGORIES = (Category.process, Category.waste, Category.energy, Category.resource)
CONSENT_CHANNEL = "suggestion"  # how a customer's consent given through the form is recorded
WINDOW = timedelta(hours=1)  # the rate limit's window (settings.suggestions_per_hour)
_DOMAIN = re.compile(r"^[^@]+@[^@.]+(\.[^@.]+)+$")


def client_key(address: str) -> str:
    """What a suggestion keeps of where it came from: enough to count, not to find the address."""
    secret = settings.secret_key.get_secret_value().encode()
    return hmac.new(secret, f"suggestion-client:{address}".encode(), hashlib.sha256).hexdigest()


def _checked(
    *, name: str, email: str, title: str, description: str, category: str
) -> tuple[str, str, str, str, Category]:
    """The form's fields, tidied, or InvalidInput naming every bad one."""
    errors: dict[str, str] = {}
    name, email = " ".join(name.split()), email.strip().lower()
    title, description = " ".join(title.split()), description.strip()
    for field, value in (
        ("name", name),
        ("email", email),
        ("title", title),
        ("description", description),
    ):
        if "\x00" in value:
            errors[field] = "must not contain a NUL character"
    if len(name) > 120:
        errors["name"] = "is too long: at most 120 characters"
    if not email:
        errors.setdefault("email", "is needed: we confirm it is you, then tell you the outcome")
    elif len(email) > 254 or not _DOMAIN.match(email) or not _is_address(email):
        errors.setdefault("email", f"{email[:80]!r} is not an email address")
    if len(title) < 3:
        errors.setdefault("title", "needs at least 3 characters: what could be better, in a line")
    elif len(title) > 200:
        errors["title"] = "is too long: at most 200 characters (say more below)"
    if len(description) > 4000:
        errors["description"] = "is too long: at most 4,000 characters"
    chosen = category.strip() or CATEGORIES[0].value
    if chosen not in {c.value for c in CATEGORIES}:
        errors["category"] = f"must be one of {', '.join(c.value for c in CATEGORIES)}"
    if errors:
        raise InvalidInput(errors)
    return name, email, title, description, Category(chosen)


def _is_address(email: str) -> bool:
    try:
        recipient_address(email)
    except ValueError:
        return False
    return True


def _limit(session: Session, where: ColumnElement[bool], now: datetime, what: str) -> None:
    """TooManyRequests when `where` already matches the hour's allowance of suggestions."""
    since = now - WINDOW
    count, oldest = session.exec(
        select(func.count(col(Suggestion.id)), func.min(Suggestion.created_at)).where(
            where, col(Suggestion.created_at) > since
        )
    ).one()
    if count < settings.suggestions_per_hour or oldest is None:
        return
    again = oldest + WINDOW
    retry_after = max(1, math.ceil((again - now).total_seconds()))
    raise TooManyRequests(
        f"Thank you — but {what} has sent {count} suggestions in the last hour, as many as we "
        f"take. Please try again after {when(again)} (in {math.ceil(retry_after / 60)} minutes).",
        retry_after,
    )


def receive(
    *,
    session: Session,
    name: str,
    email: str,
    title: str,
    description: str,
    client: str,
    form_age_seconds: float | None,
    honeypot: str,
    category: str = "",
    now: datetime | None = None,
) -> Suggestion | None:
    """Take in a suggestion from the public form, uncommitted; None when it was dropped as a bot's.

    A filled honeypot, or a form sent sooner than `suggestion_min_seconds` after it was shown (or
    whose timestamp is missing or forged: `form_age_seconds` None), is dropped: the caller answers
    as if it were taken, so a bot learns nothing. Bad fields raise InvalidInput naming them; more
    than `suggestions_per_hour` from one client (`client` is its address) or to one email raise
    TooManyRequests. Otherwise the suggestion is stored unconfirmed and the email with its
    single-use confirmation link is queued; nothing else happens until that link is followed.
    """
    if honeypot.strip() or form_age_seconds is None:
        return None
    if form_age_seconds < settings.suggestion_min_seconds:
        return None
    name, email, title, description, chosen = _checked(
        name=name, email=email, title=title, description=description, category=category
    )
    now = now or utcnow()
    key = client_key(client)
    _limit(session, col(Suggestion.client) == key, now, "this connection")
    _limit(session, col(Suggestion.email) == email, now, "this email address")
    token = secrets.token_urlsafe(links.TOKEN_BYTES)
    suggestion = Suggestion(
        name=name,
        email=email,
        title=title,
        description=description,
        category=chosen,
        client=key,
        token_hash=links.hash_token(token),
        expires_at=now + timedelta(days=settings.suggestion_link_expiry_days),
        created_at=now,
    )
    session.add(suggestion)
    session.flush()
    assert suggestion.id is not None
    # Essential (tasks/mail.py ESSENTIAL): the sender asked for it a moment ago and may be no
    # customer yet, so it needs no consent and is never held for a contact window.
    queue_email(
        session=session,
        key=_confirm_key(suggestion.id),
        to=email,
        template="suggestion_confirm",
        context={
            "name": name,
            "title": title,
            "days": settings.suggestion_link_expiry_days,
        },
        links={"url": links.suggestion_confirm_url(suggestion.id, token)},
    )
    return suggestion


def _confirm_key(suggestion_id: int) -> str:
    return f"suggestion:{suggestion_id}:confirm"


def confirmation_email_id(*, session: Session, suggestion_id: int) -> int | None:
    """The outbox row of a suggestion's confirmation email, to send it at once."""
    return session.exec(
        select(OutboxEmail.id).where(OutboxEmail.idempotency_key == _confirm_key(suggestion_id))
    ).first()


def check_confirm_link(
    *, session: Session, suggestion_id: int, token: str, now: datetime | None = None
) -> Suggestion:
    """The unconfirmed suggestion this link may confirm, or LinkRefused saying why not."""
    now = now or utcnow()
    token_hash = links.hash_token(token)
    suggestion = session.get(Suggestion, suggestion_id, populate_existing=True)
    if suggestion is None or not _same(suggestion.token_hash, token_hash):
        raise links.refusal(session, token_hash)
    if suggestion.status != SuggestionStatus.unconfirmed:
        made = f": it became IMP-{suggestion.improvement_id}" if suggestion.improvement_id else ""
        on = f" on {suggestion.confirmed_at:%Y-%m-%d %H:%M} UTC" if suggestion.confirmed_at else ""
        raise LinkRefused(
            "used",
            f"This link has already been used: your suggestion was confirmed{on}{made}. "
            "We will email you what becomes of it.",
            410,
        )
    if suggestion.expires_at is not None and now >= suggestion.expires_at:
        raise LinkRefused(
            "expired",
            f"This link expired on {suggestion.expires_at:%Y-%m-%d %H:%M} UTC. If you would "
            "still like to suggest it, please send it again from the suggestion page.",
            410,
        )
    return suggestion


def _same(stored: str | None, offered: str) -> bool:
    return stored is not None and hmac.compare_digest(stored, offered)


def confirm(
    *, session: Session, suggestion_id: int, token: str, now: datetime | None = None
) -> Suggestion:
    """The sender confirmed their address: make the suggestion a `customer` improvement, once.

    The sender becomes a customer if they were not one, with their consent to improvement updates
    recorded as given through the form (they asked to hear the outcome); a customer's earlier
    "no" stands. The improvement goes in through the one submission path, linked to them.
    Uncommitted; the caller commits, then announces the improvement (emit_submitted). The same
    link twice, even at once, makes one improvement: the other gets LinkRefused "used".
    """
    now = now or utcnow()
    suggestion = check_confirm_link(
        session=session, suggestion_id=suggestion_id, token=token, now=now
    )
    taken = session.execute(
        update(Suggestion)
        .where(
            col(Suggestion.id) == suggestion_id,
            col(Suggestion.status) == SuggestionStatus.unconfirmed,
            col(Suggestion.token_hash) == links.hash_token(token),
        )
        .values(status=SuggestionStatus.confirmed, confirmed_at=now)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        check_confirm_link(session=session, suggestion_id=suggestion_id, token=token, now=now)
        raise LinkRefused("used", "This link has already been used.", 410)
    session.refresh(suggestion)
    customer = _customer_for(session, suggestion)
    try:
        data = ImprovementCreate(
            title=suggestion.title,
            description=suggestion.description,
            category=suggestion.category,
            source=Source.customer,
        )
    except ValidationError as exc:  # checked when received; a guard, not a path
        raise field_errors(exc) from None
    improvement = submit_customer_suggestion(
        session=session, data=data, customer=customer, channel=Channel.web
    )
    suggestion.customer_id, suggestion.improvement_id = customer.id, improvement.id
    session.add(suggestion)
    session.flush()
    return suggestion


def _customer_for(session: Session, suggestion: Suggestion) -> Customer:
    customer = session.exec(select(Customer).where(Customer.email == suggestion.email)).first()
    if customer is None:
        customer = Customer(
            name=suggestion.name or suggestion.email.split("@", 1)[0], email=suggestion.email
        )
        session.add(customer)
        session.flush()
    said = session.exec(
        select(CustomerConsent).where(
            CustomerConsent.customer_id == customer.id,
            CustomerConsent.purpose == Purpose.improvement_updates,
        )
    ).first()
    if said is None:
        record_consent(
            session=session,
            customer=customer,
            purpose=Purpose.improvement_updates,
            granted=True,
            channel=CONSENT_CHANNEL,
        )
    return customer


# --- the outcome ------------------------------------------------------------------------------


def tell_outcome(*, session: Session, improvement_id: int) -> str | None:
    """Queue the suggester's suggestion_outcome for where their improvement now is; idempotent.

    "approved" once it is planned (in progress, or already completed), with when it should be
    done; "rejected" with the approver's reason. Anything else, or an improvement no suggestion
    made, tells nobody (None). The completion itself reaches them with the notice every consenting
    customer it touched gets (tasks/impact.py). Keys f"suggestion:{id}:outcome:{outcome}".
    Called in the flow steps that move the improvement, in their transaction.
    """
    suggestion = session.exec(
        select(Suggestion).where(Suggestion.improvement_id == improvement_id)
    ).first()
    if suggestion is None or suggestion.customer_id is None:
        return None
    improvement = get_improvement(session=session, improvement_id=improvement_id)
    if improvement.status in (Status.in_progress, Status.completed):
        outcome = "approved"
    elif improvement.status == Status.rejected:
        outcome = "rejected"
    else:
        return None
    customer = session.get(Customer, suggestion.customer_id)
    if customer is None:
        return None
    queue_customer_email(
        session=session,
        key=f"suggestion:{suggestion.id}:outcome:{outcome}",
        customer=customer,
        template="suggestion_outcome",
        context={
            "reference": improvement.reference,
            "title": improvement.title,
            "outcome": outcome,
            "reason": _rejection_reason(session, improvement) if outcome == "rejected" else "",
            "done_by": _done_by(session, improvement),
        },
        purpose=Purpose.improvement_updates,
        improvement_id=improvement_id,
    )
    return outcome


def _rejection_reason(session: Session, improvement: Improvement) -> str:
    comment = session.exec(
        select(ApprovalRequest.comment)
        .where(
            ApprovalRequest.improvement_id == improvement.id,
            ApprovalRequest.status == ApprovalStatus.rejected,
        )
        .order_by(col(ApprovalRequest.decided_at).desc(), col(ApprovalRequest.id).desc())
    ).first()
    return comment or ""


def _done_by(session: Session, improvement: Improvement) -> str:
    """The day the plan's last step is due, as "2026-12-14", or "" without a plan."""
    last = session.exec(
        select(func.max(ActionItem.due_on)).where(ActionItem.improvement_id == improvement.id)
    ).one()
    return f"{last:%Y-%m-%d}" if last else ""


def list_suggestions(
    *, session: Session, status: SuggestionStatus | None = None, limit: int = 100
) -> list[Suggestion]:
    """The newest suggestions first, optionally only confirmed or unconfirmed ones."""
    query = select(Suggestion).order_by(col(Suggestion.id).desc()).limit(limit)
    if status is not None:
        query = query.where(Suggestion.status == status)
    return list(session.exec(query).all())
