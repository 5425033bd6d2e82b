"""Signing in and out: an emailed single-use link (the default) or OpenID Connect."""

import logging
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from sqlmodel import Session
from starlette.background import BackgroundTask
from starlette.responses import HTMLResponse, RedirectResponse, Response

from improve.errors import Forbidden, LinkRefused
from improve.settings import settings
from models.db import get_engine, utcnow
from tasks.access import (
    check_sign_in_link,
    email_sign_in_link,
    end_session,
    find_colleague,
    sign_in_requests_since,
    start_session,
    use_sign_in_link,
)
from tasks.outbox import send_due
from web import auth
from web.limits import check_guesses, client_of, sign_in_per_client
from web.render import page

log = logging.getLogger(__name__)

# Every route here takes a token or starts a sign-in, so all of them count refused guesses.
router = APIRouter(include_in_schema=False, dependencies=[Depends(check_guesses)])


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this site only, never another site's address."""
    value = value or "/"
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _signed_in_redirect(colleague_id: int, via: str, next_path: str) -> Response:
    with Session(get_engine()) as session:
        token = start_session(session=session, colleague_id=colleague_id, via=via)
        session.commit()
    response = RedirectResponse(safe_next(next_path), status_code=303)
    auth.set_session_cookie(response, token)
    return response


def _signin_page(request: Request, **context: Any) -> HTMLResponse:
    values = {
        "sent": False,
        "signed_out": False,
        "email": "",
        "errors": {},
        "next": "/",
        "minutes": settings.sign_in_link_minutes,
        "oidc_name": settings.oidc_name if settings.oidc_configured else "",
    }
    status_code = 422 if context.get("errors") else 200
    return page(
        request, "signin.html", {**values, **context}, status_code=status_code, private=True
    )


@router.get("/signin")
def signin_form(request: Request, next: str = "/", signed_out: bool = False) -> HTMLResponse:
    """Ask for an email address (and offer the organisation's provider when there is one)."""
    return _signin_page(request, next=safe_next(next), signed_out=signed_out)


@router.post("/signin")
def request_link(
    request: Request, email: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/"
) -> HTMLResponse:
    """Email a sign-in link; the answer is the same whether or not the address is a colleague's."""
    email, next_path = email.strip().lower()[:254], safe_next(next)
    if "@" not in email or "\x00" in email:
        return _signin_page(
            request, email=email, next=next_path, errors={"email": "Enter your work email address."}
        )
    sign_in_per_client.check(client_of(request))
    sign_in_per_client.hit(client_of(request))
    with Session(get_engine()) as session:
        since = utcnow() - timedelta(minutes=15)
        if sign_in_requests_since(session=session, email=email, since=since) >= (
            settings.sign_in_requests_per_address
        ):
            log.warning("sign-in links for %s withheld: too many asked for", email)
            row = None  # the same answer, so the limit does not tell who works here either
        else:
            row = email_sign_in_link(session=session, email=email, next_path=next_path)
            session.commit()
        row_id = row.id if row is not None else None
    response = _signin_page(request, sent=True, email=email, next=next_path)
    if row_id is not None:
        # Sent now rather than by the next sweep: someone is waiting for it.
        response.background = BackgroundTask(send_due, only=[row_id])
    return response


# --- OpenID Connect (before /signin/{token}, which would take /signin/oidc) ------------------

_oauth: dict[tuple[str, str], Any] = {}


def _provider() -> Any:
    """The Authlib client for the configured provider (made once per issuer and client)."""
    if not settings.oidc_configured:
        raise LinkRefused("tampered", "Sign-in with an identity provider is not set up here.", 404)
    key = (settings.oidc_issuer, settings.oidc_client_id)
    if key not in _oauth:
        # Imported here: only an organisation with a provider pays for Authlib's import.
        from authlib.integrations.starlette_client import OAuth

        oauth = OAuth()
        _oauth[key] = oauth.register(
            "provider",
            server_metadata_url=settings.oidc_issuer.rstrip("/")
            + "/.well-known/openid-configuration",
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret.get_secret_value(),
            client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256"},
        )
    return _oauth[key]


def callback_url() -> str:
    return f"{settings.base_url}/signin/oidc/callback"


@router.get("/signin/oidc")
async def oidc_start(request: Request, next: str = "/") -> Response:
    """Send the browser to the provider; it comes back to the callback."""
    provider = _provider()
    request.session["next"] = safe_next(next)
    response: Response = await provider.authorize_redirect(request, callback_url())
    return response


@router.get("/signin/oidc/callback")
async def oidc_callback(request: Request) -> Response:
    """Check what the provider says (signature, issuer, audience, nonce), then map the verified
    email claim to an active colleague."""
    from authlib.integrations.base_client import OAuthError

    provider = _provider()
    try:
        token = await provider.authorize_access_token(request)
    except OAuthError as exc:
        raise LinkRefused(
            "tampered", f"The identity provider did not sign you in: {exc.description}", 400
        ) from None
    claims = token.get("userinfo") or {}
    email = str(claims.get("email") or "")
    if not email or claims.get("email_verified") is False:
        raise Forbidden(
            "Your identity provider did not confirm an email address, so Improve cannot tell "
            "which colleague you are."
        )
    with Session(get_engine()) as session:
        colleague = find_colleague(session=session, email=email)
        colleague_id = colleague.id if colleague is not None else None
    if colleague_id is None:
        raise Forbidden(
            f"{email} is not the email of an active colleague in Improve. "
            "Ask an admin to add you, or sign in with the address Improve knows."
        )
    log.info("%s signed in with %s", email, settings.oidc_issuer)
    return _signed_in_redirect(colleague_id, "oidc", request.session.pop("next", "/"))


# --- emailed links ---------------------------------------------------------------------------


@router.api_route("/signin/{token}", methods=["GET", "HEAD"])
def show_link(request: Request, token: str) -> HTMLResponse:
    """Who the link signs in, with a button; changes nothing (mail scanners open links)."""
    with Session(get_engine()) as session:
        colleague = check_sign_in_link(session=session, token=token)
    return page(request, "signin_link.html", {"colleague": colleague}, private=True)


@router.post("/signin/{token}")
def use_link(request: Request, token: str, next: str = "/") -> Response:
    """Spend the link and start a session."""
    with Session(get_engine()) as session:
        colleague = use_sign_in_link(session=session, token=token)
        session.commit()
        colleague_id, email = colleague.id, colleague.email
    assert colleague_id is not None
    log.info("%s signed in by emailed link", email)
    return _signed_in_redirect(colleague_id, "email", next)


@router.post("/signout")
async def sign_out(request: Request) -> Response:
    """End the session (its cookie opens nothing any more, wherever a copy is) and forget it."""
    token = auth.session_token(request)
    if token is not None:
        # A sign-out from another site would be a nuisance, not a breach; refuse it all the same.
        await auth.check_csrf(request, token)
        with Session(get_engine()) as session:
            end_session(session=session, token=token)
            session.commit()
    response = RedirectResponse("/signin?signed_out=true", status_code=303)
    auth.clear_session_cookie(response)
    return response
