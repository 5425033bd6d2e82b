"""Email: queue a templated message in the caller's transaction, render it, build the message
(tasks/outbox.py sends it)."""

import base64
import functools
import hashlib
import logging
import re
from collections.abc import Sequence
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from pathlib import Path
from typing import Any, NamedTuple

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
from sqlmodel import Session, col, select

from improve.formatting import FILTERS, payback_months
from improve.settings import settings
from models import ContactFormat, Customer, OutboxEmail
from models.db import utcnow
from tasks import mime
from tasks.links import seal, suggest_url, unseal

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "email"

# The context key under which a row keeps its sealed links until it is sent.
SEALED = "sealed_links"
# Emails a person needs in order to do their job: they never offer an unsubscribe header, and to
# a customer they are never held for a contact window or counted against a weekly limit.
ESSENTIAL = frozenset(
    {
        "approval_request",
        "decision",
        "action_assigned",
        "sign_in",
        "help_request",
        "help_answer",
        # Service on a customer's own case, not news: no consent asked, never unsubscribed from.
        "case_update",
        "alternatives_offer",
        "alternative_done",
        # Asked for a moment ago on the public form, by someone who may be no customer yet.
        "suggestion_confirm",
    }
)
# The context key under which a customer email keeps the purpose it serves (Purpose.value): the
# consent it needs and the unsubscribe link it carries. Set by tasks/consent.queue_customer_email.
PURPOSE = "purpose"
# The context key naming the customer an email was queued for (when it was).
CUSTOMER_ID = "customer_id"
# The context key under which an email carries images its HTML shows inline, {content id: base64
# PNG}: sent as parts of a multipart/related HTML body (<img src="cid:...">), which email clients
# show without fetching anything, where a linked image is often blocked until the reader allows it.
INLINE_IMAGES = "inline_images"
# The languages templates are written in; the first is the one every template has.
LANGUAGES = ("en", "cy")

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
        **outbox_values(
            key=key,
            to=to,
            template=template,
            context=context,
            links=links,
            improvement_id=improvement_id,
        )
    )
    session.add(row)
    session.flush()
    return row


def outbox_values(
    *,
    key: str,
    to: str,
    template: str,
    context: dict[str, Any],
    links: dict[str, str] | None = None,
    improvement_id: int | None = None,
) -> dict[str, Any]:
    """The columns of one email's outbox row (the rest take their defaults): what queue_email
    stores, and what a bulk queue (tasks/consent.queue_customer_emails) inserts many of at once."""
    return {
        "idempotency_key": key,
        "recipient": to,
        "template": template,
        "context": {**context, SEALED: {name: seal(url) for name, url in links.items()}}
        if links
        else context,
        "improvement_id": improvement_id,
        "message_id": message_id_for(key),
    }


# What an outbox row's context forgets once the email is sent: its links lived only in the
# email, and its images (a report's charts, ~100 kB) are in the email too.
SENT_FORGETS = frozenset({SEALED, INLINE_IMAGES})


def once_sent(context: dict[str, Any] | None) -> dict[str, Any] | None:
    """What an outbox row keeps of its context once sent, or None when it keeps all of it."""
    if not SENT_FORGETS & set(context or {}):
        return None
    return {name: value for name, value in (context or {}).items() if name not in SENT_FORGETS}


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
    # Templates ship with the code: no stat of each file per email to see whether it changed.
    auto_reload=False,
)
_env.filters.update(FILTERS, paragraphs=paragraphs)
_env.globals["payback_months"] = payback_months
_env.globals["suggest_url"] = suggest_url  # the customer footer's "suggest an improvement"
_inliner = css_inline.CSSInliner(load_remote_stylesheets=False)


class Rendered(NamedTuple):
    subject: str
    text: str
    html: str


class Reader(NamedTuple):
    """How the person an email goes to reads it: in which language, and whether HTML at all."""

    language: str = LANGUAGES[0]
    text_only: bool = False


def language_of(value: str | None) -> str:
    """One of LANGUAGES for what a customer record says ("cy", "CY", "cy-GB"); English otherwise."""
    code = re.split(r"[-_]", (value or "").strip().lower(), maxsplit=1)[0]
    return code if code in LANGUAGES else LANGUAGES[0]


def customer_of(*, session: Session, row: OutboxEmail) -> Customer | None:
    """The customer an email goes to: the one it was queued for, else the one with its address.

    A colleague, a partner or anyone else is no customer: their email has no preferences to follow.
    """
    return customers_of(session=session, rows=[row])[0]


def customers_of(*, session: Session, rows: Sequence[OutboxEmail]) -> list[Customer | None]:
    """`customer_of` for each of `rows`, in two queries however many rows there are."""

    def queued_for(row: OutboxEmail) -> int | None:
        customer_id = (row.context or {}).get(CUSTOMER_ID)
        return customer_id if isinstance(customer_id, int) else None

    ids = {i for i in map(queued_for, rows) if i is not None}
    by_id = (
        {c.id: c for c in session.exec(select(Customer).where(col(Customer.id).in_(ids)))}
        if ids
        else {}
    )
    found = [by_id.get(queued_for(row)) for row in rows]
    addresses = {row.recipient for row, customer in zip(rows, found, strict=True) if not customer}
    by_address: dict[str, Customer] = {}
    if addresses:
        # Newest first, so the first-made customer with an address wins should two share one.
        for customer in session.exec(
            select(Customer)
            .where(col(Customer.email).in_(addresses))
            .order_by(col(Customer.id).desc())
        ):
            by_address[customer.email] = customer
    return [
        customer or by_address.get(row.recipient) for row, customer in zip(rows, found, strict=True)
    ]


def reader_for(customer: Customer | None) -> Reader:
    """The one rule for how an email reads: a customer's language and format, decided when the
    email is built (so a preference changed while the email waited is honoured); anyone who is no
    customer reads English with HTML."""
    if customer is None:
        return Reader()
    return Reader(
        language=language_of(customer.language),
        text_only=customer.contact_format == ContactFormat.text,
    )


def template_names(template: str, language: str) -> tuple[str, str]:
    """The .txt and .html files `template` is rendered from in `language`: `name.cy.txt` and
    `name.cy.html` when both exist, the English pair otherwise (never a mixed pair: the subject
    comes from the .txt, and must be in the same language as the body)."""
    if language != LANGUAGES[0]:
        txt, html = f"{template}.{language}.txt", f"{template}.{language}.html"
        if (TEMPLATES / txt).is_file() and (TEMPLATES / html).is_file():
            return txt, html
    return f"{template}.txt", f"{template}.html"


def in_language(context: dict[str, Any], language: str) -> dict[str, Any]:
    """The context as `language` reads it: a value given in several languages, as a mapping
    {"en": ..., "cy": ...} (see `translations`), becomes the one for `language`, else English."""

    def pick(value: Any) -> Any:
        if isinstance(value, dict) and LANGUAGES[0] in value and set(value) <= set(LANGUAGES):
            return value.get(language, value[LANGUAGES[0]])
        return value

    return {name: pick(value) for name, value in context.items()}


def translations(**by_language: Any) -> dict[str, Any]:
    """A context value in several languages, e.g. translations(en="About 5 kWh", cy="Tua 5 kWh").

    Text a program writes for a customer (not a person's own words) is given this way, so the
    email is in one language whichever the customer reads; English is required, as the fallback.
    """
    unknown = set(by_language) - set(LANGUAGES)
    if unknown or LANGUAGES[0] not in by_language:
        raise ValueError(f"translations need {LANGUAGES[0]!r} and only {LANGUAGES}: {unknown}")
    return by_language


def render(template: str, context: dict[str, Any], language: str = LANGUAGES[0]) -> Rendered:
    """Render `template`.txt (which sets the subject) and `template`.html with inlined CSS, in
    `language` where the template is written in it."""
    txt_name, html_name = template_names(template, language)
    context = {**in_language(context, language), "language": language}
    module = _env.get_template(txt_name).make_module(context)
    subject = one_line(getattr(module, "subject", ""))
    text = re.sub(r"\n{3,}", "\n\n", str(module)).strip() + "\n"
    html = _env.get_template(html_name).render({**context, "subject": subject})
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


class MissingUnsubscribe(ValueError):
    """A non-essential email that offers an unsubscribe header but not the link in its body."""


def encode_message(row: OutboxEmail, reader: Reader | None = None) -> bytes:
    """The email for an outbox row as its reader reads it (see `reader_for`), as the bytes the
    outbox sends: in their language, multipart/alternative, or plain text alone if they ask."""
    reader = reader or Reader()
    context = context_of(row)
    rendered = render(row.template, context, reader.language)
    headers = [
        mime.header("From", sender_header()),
        mime.header("To", recipient_address(row.recipient), verbatim=True),
        mime.header("Subject", rendered.subject),
        mime.header("Date", format_datetime(utcnow())),
        mime.header("Message-ID", one_line(row.message_id), verbatim=True),
        # RFC 3834: out-of-office replies stay quiet.
        mime.header("Auto-Submitted", "auto-generated"),
        mime.header("X-Improve-Key", one_line(row.idempotency_key)),
    ]
    unsubscribe = _unsubscribe_url(row.template, context)
    if unsubscribe:
        # Every template, including one added later: a reader whose mail client shows no header
        # must still find the way out in the email itself.
        if unsubscribe not in rendered.text or (
            not reader.text_only and str(escape(unsubscribe)) not in rendered.html
        ):
            raise MissingUnsubscribe(
                f"{row.template} offers an unsubscribe header but its body has no unsubscribe "
                "link: extend _customer.html / _customer.txt, whose footer carries it"
            )
        headers.append(mime.header("List-Unsubscribe", f"<{unsubscribe}>", verbatim=True))
        headers.append(mime.header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    text = mime.text_part("plain", rendered.text)
    if reader.text_only:
        return mime.message(headers, text)
    html = mime.text_part("html", rendered.html)
    if images := context.get(INLINE_IMAGES):
        # The HTML part becomes multipart/related, each image after it under its Content-ID.
        html = mime.multipart(
            "related",
            [
                html,
                *(
                    mime.image_part(
                        base64.b64decode(data),
                        one_line(cid),
                        f"{one_line(cid).split('@', 1)[0]}.png",
                    )
                    for cid, data in images.items()
                ),
            ],
        )
    return mime.message(headers, mime.multipart("alternative", [text, html]))


def build_message(row: OutboxEmail, reader: Reader | None = None) -> EmailMessage:
    """The email `encode_message` writes, read back as a message (to show or check it)."""
    # Read as a mail client reads it: lines end in "\n" once off the wire.
    wire = encode_message(row, reader)
    message = message_from_bytes(wire.replace(b"\r\n", b"\n"), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def sender_header() -> str:
    """settings.mail_from as a From header: a display name beyond ASCII as encoded words."""
    return _address_header(settings.mail_from)


@functools.lru_cache(maxsize=8)
def _address_header(value: str) -> str:
    name, address = parseaddr(one_line(value))
    return formataddr((name, address), charset="utf-8")
