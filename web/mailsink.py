"""The local mail sink's Maildir, read in the browser and the API: development and tests only.

Its messages hold live links, so web/app.py serves these routes to signed-in colleagues, and
not at all in production.
"""

import email
import email.policy
import mailbox
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import HTMLResponse

from improve.errors import NotFound
from improve.settings import settings
from web.api import ERRORS, EVERY_ROUTE
from web.render import page

LINK = re.compile(r"https?://[^\s<>\"')\]]+")


@dataclass
class SinkMessage:
    key: str
    sender: str
    to: list[str]
    subject: str
    date: datetime | None
    text: str
    html: str | None
    links: list[str] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)


def sink_dir() -> Path:
    return settings.data_dir / "mailsink"


def _open() -> mailbox.Maildir | None:
    path = sink_dir()
    if not (path / "cur").is_dir() and not (path / "new").is_dir():
        return None  # nothing has been received yet
    return mailbox.Maildir(path, factory=None, create=False)


def _part(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    try:
        return str(part.get_content())
    except (LookupError, ValueError):  # an unknown charset: show what can be shown
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)


def _date(message: EmailMessage, fallback: float) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(str(message["Date"])) if message["Date"] else None
    except (TypeError, ValueError):
        parsed = None
    if parsed is None:
        return datetime.fromtimestamp(fallback, UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def links_in(text: str) -> list[str]:
    """The http(s) links in a text body, in order, each once, without trailing punctuation."""
    seen: dict[str, None] = {}
    for match in LINK.finditer(text):
        seen.setdefault(match.group(0).rstrip(".,;:!?"), None)
    return list(seen)


def _delivered(key: str) -> tuple[int, int]:
    """(seconds, microseconds) of delivery from a Maildir key "<sec>.M<usec>P<pid>Q<n>.<host>":
    orders messages whose Date headers fall in the same second."""
    match = re.match(r"(\d+)\.M(\d+)", key)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _read(box: mailbox.Maildir, key: str) -> SinkMessage:
    raw = box.get_bytes(key)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text = _part(message, "plain")
    html = _part(message, "html")
    stamp = float(_delivered(key)[0])  # when the Date header is missing or unreadable
    return SinkMessage(
        key=key,
        sender=str(message["From"] or ""),
        to=[str(a) for a in (message.get_all("To") or [])],
        subject=str(message["Subject"] or "(no subject)"),
        date=_date(message, stamp),
        text=text if text is not None else "",
        html=html,
        links=links_in(text or ""),
        headers=[(k, str(v)) for k, v in message.items()],
    )


def list_messages(limit: int = 200) -> list[SinkMessage]:
    """The newest `limit` messages, newest first; an empty list before the first one arrives."""
    box = _open()
    if box is None:
        return []
    messages = []
    for key in box.iterkeys():
        try:
            messages.append(_read(box, key))
        except (KeyError, FileNotFoundError):  # taken away while we looked
            continue
    messages.sort(
        key=lambda m: (m.date or datetime.min.replace(tzinfo=UTC), _delivered(m.key)), reverse=True
    )
    return messages[:limit]


def get_message(key: str) -> SinkMessage:
    """One message by its Maildir key; only keys the Maildir itself lists are ever opened."""
    box = _open()
    if box is None:
        raise NotFound("message", key)
    try:
        return _read(box, key)
    except (KeyError, FileNotFoundError):
        raise NotFound("message", key) from None


# --- routes ----------------------------------------------------------------------------------

router = APIRouter()


@router.get("/mail", include_in_schema=False)
def mail_list(request: Request) -> HTMLResponse:
    """The emails the local SMTP sink received, newest first."""
    return page(request, "mail_list.html", {"messages": list_messages(), "folder": str(sink_dir())})


@router.get("/mail/{key}", include_in_schema=False)
def mail_message(request: Request, key: str) -> HTMLResponse:
    """One email: its text, its links, and its HTML in a sandboxed frame that runs no script."""
    return page(request, "mail_message.html", {"message": get_message(key)})


class MailOut(BaseModel):
    key: str
    sender: str = Field(serialization_alias="from")
    to: list[str]
    subject: str
    date: datetime | None
    text: str
    links: list[str]
    url: str


@router.get(
    "/api/mail",
    tags=["api"],
    response_model=list[MailOut],
    response_model_by_alias=True,
    responses={status: ERRORS[status] for status in EVERY_ROUTE},
)
def list_mail(limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[MailOut]:
    """What the local SMTP sink received, newest first (empty until the first email)."""
    return [
        MailOut(
            key=m.key,
            sender=m.sender,
            to=m.to,
            subject=m.subject,
            date=m.date,
            text=m.text,
            links=m.links,
            url=f"{settings.base_url}/mail/{quote(m.key, safe='')}",
        )
        for m in list_messages(limit)
    ]
