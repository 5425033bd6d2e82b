"""Who may come in and what they may do: emailed sign-in links, sessions, API tokens, roles."""

import logging
from datetime import datetime, timedelta
from urllib.parse import quote

from sqlalchemy import update
from sqlmodel import Session, col, select

from improve.errors import InvalidInput, LinkRefused, NotFound
from improve.settings import settings
from models import Access, ApiToken, Colleague, OutboxEmail, SignInLink, WebSession
from models.db import utcnow
from tasks import links
from tasks.mail import queue_email

log = logging.getLogger(__name__)
API_TOKEN_PREFIX = "imp_"  # tells a leaked token apart at a glance (and for secret scanners)


def find_colleague(*, session: Session, email: str) -> Colleague | None:
    """The active colleague with this email (any case), or None."""
    colleague = session.exec(
        select(Colleague).where(Colleague.email == email.strip().lower())
    ).first()
    return colleague if colleague is not None and colleague.active else None


# --- emailed sign-in links -------------------------------------------------------------------


def sign_in_url(token: str, next_path: str = "/") -> str:
    url = f"{settings.base_url}/signin/{token}"
    return url if next_path == "/" else f"{url}?next={quote(next_path, safe='/')}"


def new_sign_in_link(
    *, session: Session, colleague: Colleague, now: datetime | None = None
) -> tuple[SignInLink, str]:
    """A fresh sign-in link for a colleague, and its token (for the email or the console only)."""
    assert colleague.id is not None
    now = now or utcnow()
    token, token_hash = links.new_token()
    link = SignInLink(
        colleague_id=colleague.id,
        token_hash=token_hash,
        created_at=now,
        expires_at=now + timedelta(minutes=settings.sign_in_link_minutes),
    )
    session.add(link)
    session.flush()
    return link, token


def email_sign_in_link(
    *, session: Session, email: str, next_path: str = "/", now: datetime | None = None
) -> OutboxEmail | None:
    """Queue a sign-in email for the colleague with this address; None if there is none.

    The caller answers the same either way, so the form does not tell strangers who works here.
    """
    colleague = find_colleague(session=session, email=email)
    if colleague is None:
        return None
    link, token = new_sign_in_link(session=session, colleague=colleague, now=now)
    return queue_email(
        session=session,
        key=f"sign-in:{link.id}",
        to=colleague.email,
        template="sign_in",
        context={"colleague_name": colleague.name, "minutes": settings.sign_in_link_minutes},
        links={"url": sign_in_url(token, next_path)},
    )


def sign_in_requests_since(*, session: Session, email: str, since: datetime) -> int:
    """How many sign-in links this address was sent since `since` (the per-address limit)."""
    colleague = find_colleague(session=session, email=email)
    if colleague is None:
        return 0
    return len(
        session.exec(
            select(SignInLink.id).where(
                SignInLink.colleague_id == colleague.id, col(SignInLink.created_at) >= since
            )
        ).all()
    )


def check_sign_in_link(*, session: Session, token: str, now: datetime | None = None) -> Colleague:
    """The colleague an unused, unexpired sign-in link is for, or LinkRefused saying why not."""
    now = now or utcnow()
    link = session.exec(
        select(SignInLink).where(SignInLink.token_hash == links.hash_token(token))
    ).first()
    if link is None:
        raise LinkRefused(
            "tampered",
            "This sign-in link is not valid: it may have been cut short. Ask for a new one.",
            404,
        )
    if link.used_at is not None:
        raise LinkRefused(
            "used",
            f"This sign-in link was already used, on {link.used_at:%Y-%m-%d %H:%M} UTC. "
            "Ask for a new one.",
            410,
        )
    if now >= link.expires_at:
        raise LinkRefused(
            "expired",
            f"This sign-in link expired at {link.expires_at:%Y-%m-%d %H:%M} UTC. "
            "Ask for a new one.",
            410,
        )
    colleague = session.get(Colleague, link.colleague_id)
    if colleague is None or not colleague.active:
        raise LinkRefused("foreign", "This sign-in link is for someone no longer active.", 403)
    return colleague


def use_sign_in_link(*, session: Session, token: str, now: datetime | None = None) -> Colleague:
    """Spend a sign-in link (once: of two clicks, one wins) and return its colleague."""
    now = now or utcnow()
    colleague = check_sign_in_link(session=session, token=token, now=now)
    spent = session.execute(
        update(SignInLink)
        .where(
            col(SignInLink.token_hash) == links.hash_token(token),
            col(SignInLink.used_at).is_(None),
            col(SignInLink.expires_at) > now,
        )
        .values(used_at=now)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        raise LinkRefused("used", "This sign-in link was already used. Ask for a new one.", 410)
    return colleague


# --- sessions --------------------------------------------------------------------------------


def start_session(
    *, session: Session, colleague_id: int, via: str, now: datetime | None = None
) -> str:
    """A new signed-in session; returns the token for the cookie (only its hash is stored)."""
    now = now or utcnow()
    token, token_hash = links.new_token()
    session.add(
        WebSession(
            colleague_id=colleague_id,
            token_hash=token_hash,
            via=via,
            created_at=now,
            expires_at=now + timedelta(hours=settings.session_hours),
        )
    )
    return token


def session_colleague(
    *, session: Session, token: str, now: datetime | None = None
) -> Colleague | None:
    """The active colleague a live session token belongs to, or None."""
    now = now or utcnow()
    row = session.exec(
        select(WebSession).where(WebSession.token_hash == links.hash_token(token))
    ).first()
    if row is None or row.ended_at is not None or now >= row.expires_at:
        return None
    colleague = session.get(Colleague, row.colleague_id)
    return colleague if colleague is not None and colleague.active else None


def end_session(*, session: Session, token: str, now: datetime | None = None) -> None:
    """Sign out: the session's cookie opens nothing from now on, wherever a copy of it is."""
    session.execute(
        update(WebSession)
        .where(
            col(WebSession.token_hash) == links.hash_token(token),
            col(WebSession.ended_at).is_(None),
        )
        .values(ended_at=now or utcnow())
    )


# --- API tokens ------------------------------------------------------------------------------


def create_api_token(*, session: Session, email: str, name: str) -> tuple[ApiToken, str]:
    """A new API token acting as this colleague; the token is returned once and never stored."""
    errors: dict[str, str] = {}
    colleague = find_colleague(session=session, email=email)
    if colleague is None:
        errors["colleague"] = f"no active colleague has the email {email!r}"
    name = " ".join(name.split())
    if not name:
        errors["name"] = "say what the token is for, e.g. 'billing export'"
    elif len(name) > 80:
        errors["name"] = "can be at most 80 characters"
    if errors:
        raise InvalidInput(errors)
    assert colleague is not None and colleague.id is not None
    secret, _ = links.new_token()
    token = API_TOKEN_PREFIX + secret
    row = ApiToken(colleague_id=colleague.id, name=name, token_hash=links.hash_token(token))
    session.add(row)
    session.flush()
    return row, token


def revoke_api_token(*, session: Session, token_id: int, now: datetime | None = None) -> ApiToken:
    """Revoke a token: from now on it opens nothing. Revoking twice changes nothing."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound("API token", token_id)
    if row.revoked_at is None:
        row.revoked_at = now or utcnow()
        session.add(row)
    return row


def api_token_colleague(
    *, session: Session, token: str, now: datetime | None = None
) -> Colleague | None:
    """The active colleague a live API token acts as, or None; records when it was last used."""
    now = now or utcnow()
    row = session.exec(
        select(ApiToken).where(ApiToken.token_hash == links.hash_token(token))
    ).first()
    if row is None or row.revoked_at is not None:
        return None
    colleague = session.get(Colleague, row.colleague_id)
    if colleague is None or not colleague.active:
        return None
    # Once a minute is precise enough, and keeps a busy script from writing on every call.
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        session.execute(update(ApiToken).where(col(ApiToken.id) == row.id).values(last_used_at=now))
    return colleague


# --- roles -----------------------------------------------------------------------------------


def set_access(*, session: Session, email: str, access: Access | str, by: str) -> Colleague:
    """Give a colleague a role; `by` says who did it, for the log. The caller commits.

    The last admin cannot step down: someone must be left who can give roles.
    """
    try:
        wanted = Access(access)
    except ValueError:
        raise InvalidInput({"access": f"must be one of: {', '.join(Access)}"}) from None
    colleague = find_colleague(session=session, email=email)
    if colleague is None:
        raise InvalidInput({"colleague": f"no active colleague has the email {email!r}"})
    if colleague.access == Access.admin and wanted != Access.admin:
        admins = session.exec(select(Colleague.id).where(Colleague.access == Access.admin)).all()
        if len(admins) == 1:
            raise InvalidInput(
                {"access": f"{colleague.name} is the only admin; make someone else admin first"}
            )
    if colleague.access != wanted:
        log.info("%s gave %s the %s role (was %s)", by, colleague.email, wanted, colleague.access)
        colleague.access = wanted
        session.add(colleague)
    return colleague
