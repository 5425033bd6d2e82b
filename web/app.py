"""The FastAPI app: email-link pages, staff pages, the JSON API, and errors a person can act on.

Run with `uvicorn web.app:app`. Every handler opens its own session, commits, and only then emits
the event that starts the next flow.
"""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from improve.errors import ImproveError, InvalidInput, LinkRefused, NotFound
from web import api, links, pages
from web.forms import plain_errors
from web.render import page

log = logging.getLogger(__name__)

LINK_TITLES = {
    "used": "This link has already been used",
    "expired": "This link has expired",
    "foreign": "This link is not yours",
    "tampered": "This link is not valid",
}
STATUS_TITLES = {
    400: "That request could not be understood",
    404: "Page not found",
    405: "That is not allowed here",
    409: "That cannot happen now",
    422: "Please check what you entered",
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
    errors = exc.errors if isinstance(exc, InvalidInput) else {}
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
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
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


def create_app() -> FastAPI:
    """The whole web app; `app` below is the instance uvicorn serves."""
    app = FastAPI(
        title="Improve",
        summary="Service improvement actions, from the idea to the measured result.",
        version="0.1.0",
    )
    app.add_exception_handler(ImproveError, improve_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_middleware(UnexpectedErrors)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """The stack waits for this before it says the web app is up."""
        return {"status": "ok"}

    app.include_router(api.router)
    app.include_router(links.router)
    app.include_router(pages.router)
    return app


app = create_app()
