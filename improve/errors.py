"""Errors that name what is wrong, so a page, a JSON body or the CLI can say it plainly."""

from collections.abc import Sequence

from pydantic import ValidationError


class ImproveError(Exception):
    """Base of every error Improve raises on purpose; its message is meant for a person."""

    status_code = 400


class NotFound(ImproveError):
    status_code = 404

    def __init__(self, kind: str, key: object) -> None:
        super().__init__(f"{kind} {key} not found")
        self.kind, self.key = kind, key


class ImprovementNotFound(NotFound):
    def __init__(self, improvement_id: int) -> None:
        super().__init__("improvement", f"IMP-{improvement_id}")


class IllegalTransition(ImproveError):
    status_code = 409

    def __init__(self, reference: str, from_status: str | None, to_status: str) -> None:
        super().__init__(f"{reference} cannot move from {from_status or 'nothing'} to {to_status}")
        self.from_status, self.to_status = from_status, to_status


class InvalidInput(ImproveError):
    """Bad input, with one message per offending field."""

    status_code = 422

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


class LinkRefused(ImproveError):
    """A link from an email that cannot act: tampered, foreign, used or expired."""

    def __init__(self, kind: str, message: str, status_code: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.status_code = status_code


def field_name(loc: Sequence[object]) -> str:
    """("activities", 0, "activity") → "activities[0].activity": a field of one list item is
    named with its index; a bad item of a plain list (customer_emails.2) on the list itself."""
    parts = [str(part) for part in loc]
    while parts and parts[-1].isdigit():
        parts.pop()
    name = ""
    for part in parts:
        name += f"[{part}]" if part.isdigit() else (f".{part}" if name else part)
    return name


def field_errors(exc: ValidationError) -> InvalidInput:
    """Turn pydantic's report into one plain message per field."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        errors.setdefault(field_name(error["loc"]) or "input", error["msg"])
    return InvalidInput(errors)


class NotSignedIn(ImproveError):
    """A staff page or API route asked for without a session or token."""

    status_code = 401

    def __init__(self, message: str = "Please sign in: this page is for colleagues.") -> None:
        super().__init__(message)


class Forbidden(ImproveError):
    """Signed in, but not allowed: the message says what is missing."""

    status_code = 403


class TooManyRequests(ImproveError):
    status_code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
