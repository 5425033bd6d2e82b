"""Who is asking: the signed-in colleague from the session cookie or an API token, CSRF, roles.

Every staff page and API route depends on `staff`; the routers in web/app.py attach it, so a new
route is protected by the router it joins (tests/web/test_access.py walks every route to check).
"""

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session
from starlette.responses import Response

from improve.errors import Forbidden, NotSignedIn
from improve.settings import settings
from models import Access, Colleague
from models.db import get_engine
from tasks.access import api_token_colleague, session_colleague
from web.limits import check_guesses, count_guess

# "__Host-" makes the browser refuse the cookie unless it is Secure, from this host, for path /.
COOKIE = "__Host-improve_session" if settings.base_url.startswith("https://") else "improve_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer = HTTPBearer(auto_error=False, description="An API token from `improve token create`.")
cookie = APIKeyCookie(name=COOKIE, auto_error=False, description="A signed-in browser session.")


def _mac(purpose: str, value: str) -> str:
    key = settings.secret_key.get_secret_value().encode()
    digest = hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def sign_cookie(token: str) -> str:
    return f"{token}.{_mac('session', token)}"


def unsign_cookie(value: str) -> str | None:
    token, _, mac = value.rpartition(".")
    return token if token and hmac.compare_digest(mac, _mac("session", token)) else None


def csrf_token_for(session_token: str) -> str:
    """The token every state-changing form of this session carries; derived, never stored."""
    return _mac("csrf", session_token)


def set_session_cookie(response: Response, token: str) -> None:
    response.set_cookie(
        COOKIE,
        sign_cookie(token),
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        secure=settings.base_url.startswith("https://"),
        samesite="lax",  # sent when following a link from an email, never on another site's POST
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", secure=settings.base_url.startswith("https://"))


def session_token(request: Request) -> str | None:
    """The token of the request's session cookie, if its signature holds."""
    raw = request.cookies.get(COOKIE)
    return unsign_cookie(raw) if raw else None


async def check_csrf(request: Request, token: str) -> None:
    offered = request.headers.get("x-csrf-token")
    if offered is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        # Starlette keeps the parsed form, so the route still reads its own fields from it.
        offered = str((await request.form()).get("csrf_token", ""))
    if not offered or not hmac.compare_digest(offered, csrf_token_for(token)):
        raise Forbidden(
            "This form has expired or came from another site: its CSRF token is missing or wrong. "
            "Reload the page and try again."
        )


async def staff(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    _cookie: Annotated[str | None, Depends(cookie)],
) -> Colleague:
    """The signed-in colleague, or NotSignedIn (a redirect to sign in, or 401 for the API)."""
    check_guesses(request)
    # The colleague outlives this session (handlers read it), so committing must not expire it.
    with Session(get_engine(), expire_on_commit=False) as session:
        if credentials is not None:
            colleague = api_token_colleague(session=session, token=credentials.credentials)
            session.commit()
            if colleague is None:
                count_guess(request)
                raise NotSignedIn("This API token is not valid, or it was revoked.")
        else:
            token = session_token(request)
            colleague = session_colleague(session=session, token=token) if token else None
            if colleague is None:
                if request.cookies.get(COOKIE):
                    count_guess(request)
                    raise NotSignedIn("Your sign-in has ended. Please sign in again.")
                raise NotSignedIn()
            assert token is not None
            # Only a browser sends the cookie by itself, so only cookie requests need the token.
            if request.method not in SAFE_METHODS:
                await check_csrf(request, token)
            request.state.csrf_token = csrf_token_for(token)
    request.state.colleague = colleague
    return colleague


Staff = Annotated[Colleague, Depends(staff)]


def require(access: Access) -> Callable[[Colleague], Colleague]:
    """A dependency that lets through only colleagues whose access includes `access`."""

    def allowed(colleague: Staff) -> Colleague:
        if not Access(colleague.access).includes(access):
            raise Forbidden(
                f"This needs the {access} role; you are signed in as {colleague.name}, "
                f"whose role is {colleague.access}. Ask an admin if your work needs it."
            )
        return colleague

    return allowed


def may_see_contacts(colleague: Colleague) -> bool:
    """Customer contact details are for operations and admins, whose work needs them."""
    return Access(colleague.access).includes(Access.operations)
