"""The FastAPI app: email-link pages, staff pages, the JSON API, and errors a person can act on.

Run with `uvicorn web.app:app`. Every handler opens its own session, commits, and only then emits
the event that starts the next flow.
"""

import hashlib
import logging
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from improve.errors import (
    ImproveError,
    InvalidInput,
    LinkRefused,
    NotFound,
    NotSignedIn,
    TooManyRequests,
)
from improve.settings import settings
from web import (
    alternatives,
    api,
    cases,
    choices,
    impact,
    initiatives,
    invitations,
    links,
    mailsink,
    pages,
    partners,
    policies,
    records,
    signin,
    suggest,
)
from web.auth import staff
from web.forms import plain_errors
from web.limits import count_guess
from web.render import page

log = logging.getLogger(__name__)

LINK_TITLES = {
    "used": "This link has already been used",
    "expired": "This link has expired",
    "foreign": "This link is not yours",
    "tampered": "This link is not valid",
    "replaced": "This link was replaced by a newer one",
}
STATUS_TITLES = {
    400: "That request could not be understood",
    401: "Please sign in",
    403: "You cannot do that",
    404: "Page not found",
    405: "That is not allowed here",
    409: "That cannot happen now",
    422: "Please check what you entered",
    429: "Too many tries",
    500: "Something went wrong on our side",
}


def _wants_json(request: Request) -> bool:
    return request.url.path == "/api" or request.url.path.startswith("/api/")


def _json(status_code: int, detail: str, errors: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "errors": errors or {}}, status_code=status_code)


def _error_page(
    request: Request,
    status_code: int,
    message: str,
    *,
    title: str | None = None,
    kind: str | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    context: dict[str, Any] = {
        "status_code": status_code,
        "title": title or STATUS_TITLES.get(status_code, "That did not work"),
        "message": message,
        "kind": kind,
        "errors": errors or {},
    }
    # Link errors are about a private address: keep them out of caches like the pages themselves.
    return page(request, "error.html", context, status_code=status_code, private=kind is not None)


async def improve_error(request: Request, exc: Exception) -> Response:
    """Errors Improve raises on purpose already say what is wrong; show that, with their code."""
    assert isinstance(exc, ImproveError)
    if isinstance(exc, LinkRefused) and exc.kind in ("tampered", "foreign"):
        count_guess(request)  # someone trying tokens: web.limits stops them after a few
    response = _answer(request, exc)
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _answer(request: Request, exc: ImproveError) -> Response:
    errors = exc.errors if isinstance(exc, InvalidInput) else {}
    if isinstance(exc, NotSignedIn):
        if _wants_json(request):
            response = _json(401, f"{exc} Send `Authorization: Bearer <API token>`.")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        if request.method in ("GET", "HEAD"):
            next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/signin?next={quote(next_path)}", status_code=303)
    if _wants_json(request):
        return _json(exc.status_code, str(exc), errors)
    if isinstance(exc, LinkRefused):
        return _error_page(
            request, exc.status_code, str(exc), title=LINK_TITLES.get(exc.kind), kind=exc.kind
        )
    title = f"{exc.kind.capitalize()} not found" if isinstance(exc, NotFound) else None
    return _error_page(request, exc.status_code, str(exc), title=title, errors=errors)


async def validation_error(request: Request, exc: Exception) -> Response:
    """422 naming each bad field for the API; for a page, a bad address is simply not found."""
    assert isinstance(exc, RequestValidationError)
    errors = plain_errors(exc.errors(), skip=("body", "query", "path"))
    if _wants_json(request):
        summary = "; ".join(f"{field}: {message}" for field, message in errors.items())
        return _json(422, summary or "the request is not valid", errors)
    # Pages read their forms themselves, so this is a malformed address such as /improvements/abc.
    return _error_page(request, 404, f"There is no page at {request.url.path}.")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    response: Response
    if _wants_json(request):
        response = _json(exc.status_code, str(exc.detail))
    elif exc.status_code == 404:
        response = _error_page(request, 404, f"There is no page at {request.url.path}.")
    else:
        response = _error_page(request, exc.status_code, str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


class UnexpectedErrors:
    """Turn any unexpected exception into a plain 500 page or JSON body; the traceback is logged
    here, on the server, and never shown to the person."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception:
            # The route, not the path: a path may hold a token, and logs are read by many.
            route = getattr(scope.get("route"), "path", "(no route)")
            log.exception("unexpected error on %s %s", scope.get("method"), route)
            if started:  # too late to answer with a page; the connection is closed instead
                raise
            request = Request(scope)
            message = (
                "The problem has been logged for the Improve team. Please try again in a minute."
            )
            if _wants_json(request):
                response: Response = _json(500, "internal error: the server logged the details")
            else:
                response = _error_page(request, 500, message)
            await response(scope, receive, send)


class RouteOnlyAccessLog(logging.Filter):
    """uvicorn's access log names the route (/approvals/{approval_id}/{token}), never the path
    or query that was asked for, so no token from a link or a sign-in callback reaches a log."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__()
        self.app = app

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            client, method, path, version, status = args
            record.args = (client, method, self.route_of(str(method), str(path)), version, status)
        return True

    def route_of(self, method: str, path: str) -> str:
        scope = {"type": "http", "method": method, "path": path.split("?", 1)[0]}
        for route in served_routes(self.app):
            match, _ = route.matches(scope)
            if match != Match.NONE:
                return str(route.path)
        return "(no such route)"


def served_routes(app: FastAPI) -> list[Any]:
    """Every route the app serves, each with its path template, methods and `matches`.

    FastAPI 0.150 keeps an included router as one entry of `app.routes`; this opens them up.
    """
    return list(iter_route_contexts(app.routes))


# The public routes: what people reach from an email, signing in, the suggestion form, the public
# impact report and the health check. Every other route needs a signed-in colleague or an API
# token (tests/web/test_access.py checks it).
PUBLIC_ROUTERS = (
    links.router,
    choices.router,
    invitations.router,
    signin.router,
    suggest.router,
    suggest.link_router,
    impact.router,
    impact.link_router,
    partners.link_router,
)


def create_app() -> FastAPI:
    """The whole web app; `app` below is the instance uvicorn serves."""
    app = FastAPI(
        title="Improve",
        summary="Service improvement actions, from the idea to the measured result.",
        version="0.1.0",
        # Served below to signed-in colleagues only.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_exception_handler(ImproveError, improve_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_middleware(UnexpectedErrors)
    # Holds only the state of a sign-in with the identity provider, for ten minutes.
    key = hashlib.sha256(b"improve:oidc:" + settings.secret_key.get_secret_value().encode())
    app.add_middleware(
        SessionMiddleware,
        secret_key=key.hexdigest(),
        session_cookie="improve_oidc",
        max_age=600,
        same_site="lax",
        https_only=settings.base_url.startswith("https://"),
    )

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """The stack waits for this before it says the web app is up."""
        return {"status": "ok"}

    signed_in = [Depends(staff)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=signed_in)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", include_in_schema=False, dependencies=signed_in)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Improve API")

    # Before the public links: see web.pages.help_router.
    app.include_router(pages.help_router, dependencies=signed_in)
    for router in PUBLIC_ROUTERS:
        app.include_router(router)
    app.include_router(api.router, dependencies=signed_in)
    app.include_router(partners.api_router, dependencies=signed_in)
    app.include_router(policies.api_router, dependencies=signed_in)
    app.include_router(suggest.api_router, dependencies=signed_in)
    app.include_router(initiatives.api_router, dependencies=signed_in)
    app.include_router(pages.router, dependencies=signed_in)
    app.include_router(cases.router, dependencies=signed_in)
    app.include_router(alternatives.router, dependencies=signed_in)
    app.include_router(partners.router, dependencies=signed_in)
    app.include_router(records.router, dependencies=signed_in)
    app.include_router(policies.router, dependencies=signed_in)
    app.include_router(initiatives.router, dependencies=signed_in)
    if not settings.production:  # its messages hold live links: never where real people work
        app.include_router(mailsink.router, dependencies=signed_in)
    access_log = logging.getLogger("uvicorn.access")
    for old in [f for f in access_log.filters if isinstance(f, RouteOnlyAccessLog)]:
        access_log.removeFilter(old)  # the app made last is the one served
    access_log.addFilter(RouteOnlyAccessLog(app))
    return app


app = create_app()
