"""Links that act: random single-use tokens, stored only as a hash, bound to one request."""

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlmodel import Session, select

from improve.errors import LinkRefused
from improve.settings import settings
from models import ActionItem, ActionStatus, ApprovalRequest, ApprovalStatus
from models.db import utcnow

TOKEN_BYTES = 32  # 256 bits: guessing one is out of reach, so a plain hash is enough to store


def new_token() -> tuple[str, str]:
    """A fresh token and the hash to store; the token itself goes only into the email."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def approval_url(approval_id: int, token: str) -> str:
    return f"{settings.base_url}/approvals/{approval_id}/{token}"


def action_url(action_id: int, token: str) -> str:
    return f"{settings.base_url}/actions/{action_id}/{token}"


def _same(stored: str | None, offered: str) -> bool:
    return stored is not None and hmac.compare_digest(stored, offered)


def _refuse_unknown(session: Session, token_hash: str) -> LinkRefused:
    foreign = (
        session.exec(
            select(ApprovalRequest.id).where(ApprovalRequest.token_hash == token_hash)
        ).first()
        or session.exec(select(ActionItem.id).where(ActionItem.token_hash == token_hash)).first()
    )
    if foreign is not None:
        return LinkRefused(
            "foreign",
            "This link belongs to a different request. Please use the link from your own email.",
            403,
        )
    return LinkRefused(
        "tampered",
        "This link is not valid: it may have been cut short or changed. "
        "Please open it again from your email.",
        404,
    )


def _refuse_expired(expires_at: datetime | None, now: datetime) -> None:
    if expires_at is not None and now >= expires_at:
        raise LinkRefused("expired", f"This link expired on {expires_at:%Y-%m-%d %H:%M} UTC.", 410)


def check_approval_link(
    *, session: Session, approval_id: int, token: str, now: datetime | None = None
) -> ApprovalRequest:
    """The pending approval request this link may decide, or LinkRefused saying why not."""
    now = now or utcnow()
    token_hash = hash_token(token)
    approval = session.get(ApprovalRequest, approval_id)
    if approval is None or not _same(approval.token_hash, token_hash):
        raise _refuse_unknown(session, token_hash)
    if approval.status != ApprovalStatus.pending:
        when = f" on {approval.decided_at:%Y-%m-%d %H:%M} UTC" if approval.decided_at else ""
        raise LinkRefused(
            "used",
            f"This link has already been used: the request is {approval.status}{when}.",
            410,
        )
    _refuse_expired(approval.expires_at, now)
    return approval


def check_action_link(
    *, session: Session, action_id: int, token: str, now: datetime | None = None
) -> ActionItem:
    """The open action item this link may complete, or LinkRefused saying why not."""
    now = now or utcnow()
    token_hash = hash_token(token)
    action = session.get(ActionItem, action_id)
    if action is None or not _same(action.token_hash, token_hash):
        raise _refuse_unknown(session, token_hash)
    if action.status != ActionStatus.open:
        when = f" on {action.completed_at:%Y-%m-%d %H:%M} UTC" if action.completed_at else ""
        raise LinkRefused("used", f"This action is already {action.status}{when}.", 410)
    _refuse_expired(action.token_expires_at, now)
    return action
