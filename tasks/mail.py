"""Email: queue a templated message in the caller's transaction, render it, build the message
(tasks/outbox.py sends it)."""

import hashlib
import logging
import re
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, NamedTuple

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
from sqlmodel import Session, select

from improve.formatting import FILTERS, payback_months
from improve.settings import settings
from models import OutboxEmail
from models.db import utcnow
from tasks.links import seal, unseal

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "email"

# The context key under which a row keeps its sealed links until it is sent.
SEALED = "sealed_links"
# Emails a person needs in order to do their job: they never offer an unsubscribe header.
# An update on a customer's own case is service, not news: it is never unsubscribed from.
ESSENTIAL = frozenset({"approval_request", "decision", "action_assigned", "sign_in", "case_update"})

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
