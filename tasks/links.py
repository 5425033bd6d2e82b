"""Links that act: random single-use tokens, stored only as a hash, bound to one request."""

import base64
import hashlib
import hmac
import secrets
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken
from sqlmodel import Session, col, select

from improve.errors import LinkRefused
from improve.settings import settings
from models import (
    ActionItem,
    ActionStatus,
    ApprovalRequest,
    ApprovalStatus,
    Case,
    CaseNote,
    CaseStatus,
    HelpRequest,
    HelpStatus,
    Invitation,
    InvitationStatus,
    RetiredLink,
    Suggestion,
)
from models.db import utcnow

TOKEN_BYTES = 32  # 256 bits: guessing one is out of reach, so a plain hash is enough to store


def new_token() -> tuple[str, str]:
    """A fresh token and the hash to store; the token itself goes only into the email."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def signature(message: str) -> str:
    """`message` signed with the secret key (HMAC-SHA256, URL-safe): the token of a link that
    never expires, as an unsubscribe must not (RFC 8058), and that cannot be edited to reach
    someone else, because the message names who and what it is for."""
    secret = settings.secret_key.get_secret_value().encode()
    digest = hmac.new(secret, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def signed(message: str, token: str) -> bool:
    """Whether `token` is `signature(message)`, compared in constant time."""
    return hmac.compare_digest(signature(message), str(token))


def unsigned(what: str = "link") -> LinkRefused:
    """The refusal of a signed link that does not check out: edited, cut short, or for nobody
    we know, all alike, so the link says nothing about who is on record."""
    return LinkRefused(
        "tampered",
        f"This {what} is not valid: it may have been cut short or changed. "
        "Please use the link from the email exactly as it arrived.",
        404,
    )


def _sealer() -> Fernet:
    secret = settings.secret_key.get_secret_value().encode()
    return Fernet(
        base64.urlsafe_b64encode(hashlib.sha256(b"improve:outbox-links:" + secret).digest())
    )


def seal(url: str) -> str:
    """A link encrypted with a key derived from the secret key, for an outbox row to carry.

    The row waits in the database until it is sent; sealed, its link opens nothing for someone
    who has a copy of the database but not the secret key. The sender unseals it and, once the
    email is sent, forgets it.
    """
    return _sealer().encrypt(url.encode()).decode()


def unseal(sealed: str) -> str:
    try:
        return _sealer().decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise ValueError(
            "its links were sealed with another secret key (was IMPROVE_SECRET_KEY changed?)"
        ) from None


def approval_url(approval_id: int, token: str) -> str:
    return f"{settings.base_url}/approvals/{approval_id}/{token}"


def action_url(action_id: int, token: str) -> str:
    return f"{settings.base_url}/actions/{action_id}/{token}"


def help_url(help_id: int, token: str) -> str:
    return f"{settings.base_url}/help/{help_id}/{token}"


def case_update_url(case_id: int) -> str:
    """The page where a case's owner previews, edits and sends the customer's update (signed in:
    it sends in their name, so it is no token link)."""
    return f"{settings.base_url}/cases/{case_id}/update"


def choice_url(case_id: int, token: str) -> str:
    return f"{settings.base_url}/choices/{case_id}/{token}"


def suggest_url() -> str:
    """The public suggestion form, which every customer email's footer offers."""
    return f"{settings.base_url}/suggest"


def suggestion_confirm_url(suggestion_id: int, token: str) -> str:
    return f"{settings.base_url}/suggest/confirm/{suggestion_id}/{token}"


def invitation_url(invitation_id: int, token: str) -> str:
    return f"{settings.base_url}/invitations/{invitation_id}/{token}"


def _same(stored: str | None, offered: str) -> bool:
    return stored is not None and hmac.compare_digest(stored, offered)


def retire(
    *, session: Session, token_hash: str | None, kind: str, target_id: int | None, at: datetime
) -> None:
    """Remember that a newer email, sent `at`, replaced this link, so the old one can say so."""
    if token_hash and target_id is not None and session.get(RetiredLink, token_hash) is None:
        session.add(
            RetiredLink(token_hash=token_hash, kind=kind, target_id=target_id, replaced_at=at)
        )


def refusal(session: Session, token_hash: str) -> LinkRefused:
    """Why a token that is not the live one of its request is refused: replaced, foreign, or
    simply not valid."""
    retired = session.get(RetiredLink, token_hash)
    if retired is not None:
        return LinkRefused(
            "replaced",
            f"This link was replaced by a newer one, sent on {retired.replaced_at:%Y-%m-%d}. "
            "Please use the link in the most recent email about it.",
            410,
        )
    foreign = (
        session.exec(
            select(ApprovalRequest.id).where(ApprovalRequest.token_hash == token_hash)
        ).first()
        or session.exec(select(ActionItem.id).where(ActionItem.token_hash == token_hash)).first()
        or session.exec(select(HelpRequest.id).where(HelpRequest.token_hash == token_hash)).first()
        or session.exec(select(Case.id).where(Case.choice_token_hash == token_hash)).first()
        or session.exec(select(Suggestion.id).where(Suggestion.token_hash == token_hash)).first()
        or session.exec(select(Invitation.id).where(Invitation.token_hash == token_hash)).first()
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
        raise refusal(session, token_hash)
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
        raise refusal(session, token_hash)
    if action.status != ActionStatus.open:
        when = f" on {action.completed_at:%Y-%m-%d %H:%M} UTC" if action.completed_at else ""
        raise LinkRefused("used", f"This action is already {action.status}{when}.", 410)
    _refuse_expired(action.token_expires_at, now)
    return action


def check_help_link(
    *, session: Session, help_id: int, token: str, now: datetime | None = None
) -> HelpRequest:
    """The unanswered help request this link may answer, or LinkRefused saying why not."""
    now = now or utcnow()
    token_hash = hash_token(token)
    help_request = session.get(HelpRequest, help_id)
    if help_request is None or not _same(help_request.token_hash, token_hash):
        raise refusal(session, token_hash)
    if help_request.status != HelpStatus.asked:
        when = (
            f" on {help_request.answered_at:%Y-%m-%d %H:%M} UTC" if help_request.answered_at else ""
        )
        raise LinkRefused(
            "used",
            f"This link has already been used: the request for help was {help_request.status}"
            f"{when}.",
            410,
        )
    _refuse_expired(help_request.expires_at, now)
    return help_request


def check_choice_link(
    *, session: Session, case_id: int, token: str, now: datetime | None = None
) -> Case:
    """The case whose offered alternatives this link may choose from, or LinkRefused saying why
    not: the customer already chose (or declined), or the link expired."""
    now = now or utcnow()
    token_hash = hash_token(token)
    case = session.get(Case, case_id, populate_existing=True)
    if case is None or not _same(case.choice_token_hash, token_hash):
        raise refusal(session, token_hash)
    if case.status != CaseStatus.awaiting_customer:
        answer = session.exec(
            select(CaseNote)
            .where(CaseNote.case_id == case_id, col(CaseNote.what).in_(["accepted", "declined"]))
            .order_by(col(CaseNote.id).desc())
        ).first()
        said = (
            f"you {answer.what} the options for {case.reference} on {answer.at:%Y-%m-%d %H:%M} UTC"
            if answer
            else f"{case.reference} no longer waits for your choice"
        )
        raise LinkRefused(
            "used",
            f"This link has already been used: {said}. If you would like to change your "
            "answer, please reply to our email and we will help.",
            410,
        )
    _refuse_expired(case.choice_expires_at, now)
    return case


def check_invitation_link(
    *, session: Session, invitation_id: int, token: str, now: datetime | None = None
) -> Invitation:
    """The unanswered invitation this link may answer, or LinkRefused saying why not."""
    now = now or utcnow()
    token_hash = hash_token(token)
    invitation = session.get(Invitation, invitation_id, populate_existing=True)
    if invitation is None or not _same(invitation.token_hash, token_hash):
        raise refusal(session, token_hash)
    if invitation.status != InvitationStatus.invited:
        when = f" on {invitation.answered_at:%Y-%m-%d %H:%M} UTC" if invitation.answered_at else ""
        raise LinkRefused(
            "used",
            f"This link has already been used: you {invitation.status} the invitation{when}. "
            "If you would like to change your answer, please reply to our email.",
            410,
        )
    _refuse_expired(invitation.expires_at, now)
    return invitation
