"""Staff pages for customer cases: the list, a page per case, and the update the owner sends."""

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from sqlmodel import Session, select
from starlette.responses import HTMLResponse, RedirectResponse, Response

from improve import events
from improve.errors import InvalidInput
from models import CaseStatus, Colleague, Customer
from models.db import get_engine, session_scope, utcnow
from tasks import cases, updates
from tasks.help import help_panel
from web.alternatives import panel_context
from web.auth import Staff
from web.forms import Id, parse_day, parse_moment
from web.render import page

router = APIRouter(include_in_schema=False)

FIELD_NAMES = {
    "customer_email": "Customer's email",
    "subject": "Subject",
    "details": "Details",
    "owner_email": "Owner",
    "promised_on": "Promised by",
    "next_update_due": "Next update due",
    "reason": "Reason",
    "body": "Message",
    "status": "Status",
}


def case_filter(status: str, overdue: str) -> cases.CaseFilter:
    """The list's filters from a query string; an unknown value filters nothing."""
    return cases.CaseFilter(
        status=CaseStatus(status) if status in CaseStatus.__members__ else None,
        overdue={"yes": True, "no": False}.get(overdue),
    )


def _list_page(
    request: Request,
    *,
    status: str = "",
    overdue: str = "",
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> HTMLResponse:
    wanted = case_filter(status, overdue)
    with Session(get_engine()) as session:
        rows, total = cases.list_cases(session=session, wanted=wanted, limit=200)
        customers = {
            c.id: c
            for c in session.exec(
                select(Customer).where(Customer.id.in_({r.customer_id for r in rows}))  # type: ignore[union-attr]
            )
        }
        owners = {
            c.id: c
            for c in session.exec(
                select(Colleague).where(Colleague.id.in_({r.owner_id for r in rows}))  # type: ignore[union-attr]
            )
        }
    context = {
        "rows": rows,
        "total": total,
        "customers": customers,
        "owners": owners,
        "status": wanted.status,
        "overdue": overdue if wanted.overdue is not None else "",
        "statuses": list(CaseStatus),
        "now": utcnow(),
        "values": values or {},
        "errors": errors or {},
        "field_names": FIELD_NAMES,
    }
    return page(request, "cases.html", context, status_code=422 if errors else 200)


@router.get("/cases")
def case_list(request: Request, status: str = "", overdue: str = "") -> HTMLResponse:
    """Cases whose update is due soonest first, by status and overdue or not; a form to open one."""
    return _list_page(request, status=status, overdue=overdue)


@router.post("/cases")
def open_from_form(
    request: Request,
    colleague: Staff,
    customer_email: Annotated[str, Form()] = "",
    subject: Annotated[str, Form()] = "",
    details: Annotated[str, Form()] = "",
    owner_email: Annotated[str, Form()] = "",
    promised_on: Annotated[str, Form()] = "",
    next_update_due: Annotated[str, Form()] = "",
) -> Response:
    """Open a case (owned by you unless you name someone) and go to its page."""
    values = dict(
        customer_email=customer_email, subject=subject, details=details, owner_email=owner_email,
        promised_on=promised_on, next_update_due=next_update_due,
    )  # fmt: skip
    errors: dict[str, str] = {}
    promised = parse_day(promised_on, "promised_on", errors)
    due = parse_moment(next_update_due, "next_update_due", errors)
    try:
        if errors:
            raise InvalidInput(errors)
        with session_scope() as session:
            case = cases.open_case(
                session=session, by=colleague, channel="web", customer_email=customer_email,
                subject=subject, details=details, owner_email=owner_email.strip() or None,
                promised_on=promised, next_update_due=due,
            )  # fmt: skip
            case_id = case.id
    except InvalidInput as exc:
        return _list_page(request, values=values, errors={**errors, **exc.errors})
    return RedirectResponse(f"/cases/{case_id}", status_code=303)


def _case_page(
    request: Request,
    case_id: int,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    done: str = "",
) -> HTMLResponse:
    signed_in = getattr(request.state, "colleague", None)
    with Session(get_engine()) as session:
        view = cases.case_view(session=session, case_id=case_id)
        help_asked = help_panel(
            session=session, signed_in_id=signed_in.id if signed_in else None, case_id=case_id
        )
        more = panel_context(session, case_id, signed_in) if signed_in else {}
    context: dict[str, Any] = {
        **more,
        "help": help_asked,
        "view": view,
        "case": view.case,
        "now": utcnow(),
        "overdue": cases.is_overdue(view.case, utcnow()),
        "errors": errors or {},
        "values": values or {},
        "field_names": FIELD_NAMES,
        "done": done,
    }
    return page(request, "case.html", context, status_code=422 if errors else 200)


DONE = {
    "opened": "The case is open.",
    "delayed": "The case is marked delayed.",
    "changed": "The case is changed.",
    "closed": "The case is closed.",
    "sent": "The update is on its way to the customer.",
}


@router.get("/cases/{case_id}")
def case_page(request: Request, case_id: Id, done: str = "") -> HTMLResponse:
    """One case: its customer, owner, promise, the updates sent and every change, with forms."""
    return _case_page(request, case_id, done=DONE.get(done, ""))


@router.post("/cases/{case_id}/delay")
def delay_from_form(
    request: Request,
    case_id: Id,
    colleague: Staff,
    reason: Annotated[str, Form()] = "",
    next_update_due: Annotated[str, Form()] = "",
) -> Response:
    """Mark the case off plan, with a reason and when the customer next hears from us."""
    errors: dict[str, str] = {}
    due = parse_moment(next_update_due, "next_update_due", errors)
    try:
        if errors:
            raise InvalidInput(errors)
        with session_scope() as session:
            cases.mark_delayed(
                session=session, case_id=case_id, by=colleague, channel="web", reason=reason,
                next_update_due=due,
            )  # fmt: skip
    except InvalidInput as exc:
        values = {"reason": reason, "next_update_due": next_update_due}
        return _case_page(request, case_id, errors={**errors, **exc.errors}, values=values)
    return RedirectResponse(f"/cases/{case_id}?done=delayed", status_code=303)


@router.post("/cases/{case_id}/change")
def change_from_form(
    request: Request,
    case_id: Id,
    colleague: Staff,
    subject: Annotated[str, Form()] = "",
    details: Annotated[str, Form()] = "",
    owner_email: Annotated[str, Form()] = "",
    promised_on: Annotated[str, Form()] = "",
    next_update_due: Annotated[str, Form()] = "",
) -> Response:
    """Change the subject, details, owner, promised date or when the next update is due."""
    errors: dict[str, str] = {}
    promised = parse_day(promised_on, "promised_on", errors)
    due = parse_moment(next_update_due, "next_update_due", errors)
    try:
        if errors:
            raise InvalidInput(errors)
        with session_scope() as session:
            cases.change_case(
                session=session, case_id=case_id, by=colleague, channel="web", subject=subject,
                details=details, owner_email=owner_email.strip() or None, promised_on=promised,
                next_update_due=due,
            )  # fmt: skip
    except InvalidInput as exc:
        values = dict(
            subject=subject, details=details, owner_email=owner_email, promised_on=promised_on,
            next_update_due=next_update_due,
        )  # fmt: skip
        return _case_page(request, case_id, errors={**errors, **exc.errors}, values=values)
    return RedirectResponse(f"/cases/{case_id}?done=changed", status_code=303)


@router.post("/cases/{case_id}/close")
def close_from_form(
    request: Request, case_id: Id, colleague: Staff, reason: Annotated[str, Form()] = ""
) -> Response:
    """Close the case: no more updates fall due."""
    try:
        with session_scope() as session:
            cases.change_case(
                session=session, case_id=case_id, by=colleague, channel="web", close=True,
                reason=reason,
            )  # fmt: skip
    except InvalidInput as exc:
        return _case_page(request, case_id, errors=exc.errors, values={"reason": reason})
    return RedirectResponse(f"/cases/{case_id}?done=closed", status_code=303)


def _update_page(
    request: Request,
    case_id: int,
    *,
    subject: str | None = None,
    body: str | None = None,
    next_update_due: str | None = None,
    key: str = "",
    errors: dict[str, str] | None = None,
) -> HTMLResponse:
    with Session(get_engine()) as session:
        view = cases.case_view(session=session, case_id=case_id)
        draft = updates.preview_update(session=session, case_id=case_id)
    context = {
        "view": view,
        "case": view.case,
        "subject": draft.subject if subject is None else subject,
        "body": draft.body if body is None else body,
        "next_update_due": f"{draft.next_update_due:%Y-%m-%dT%H:%M}"
        if next_update_due is None
        else next_update_due,
        # One per rendering: the same form sent twice (a double click) sends one email.
        "key": key or secrets.token_urlsafe(16),
        "errors": errors or {},
        "field_names": FIELD_NAMES,
        "text_only": view.customer.contact_format == "text",
    }
    return page(request, "case_update.html", context, status_code=422 if errors else 200)


@router.get("/cases/{case_id}/update")
def update_form(request: Request, case_id: Id) -> HTMLResponse:
    """The update the customer will get, drafted from the case, for the owner to edit and send.

    Showing it changes nothing: the email in the owner's inbox links here."""
    return _update_page(request, case_id)


@router.post("/cases/{case_id}/update")
def send_from_form(
    request: Request,
    case_id: Id,
    colleague: Staff,
    subject: Annotated[str, Form()] = "",
    body: Annotated[str, Form()] = "",
    next_update_due: Annotated[str, Form()] = "",
    key: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Send the update as edited; it completes the overdue step, if there is one."""
    errors: dict[str, str] = {}
    due = parse_moment(next_update_due, "next_update_due", errors)
    try:
        if errors:
            raise InvalidInput(errors)
        with session_scope() as session:
            sent = updates.send_update(
                session=session, case_id=case_id, by=colleague, channel="web", subject=subject,
                body=body, next_update_due=due, key=f"web:{key}" if key else None,
            )  # fmt: skip
    except InvalidInput as exc:
        return _update_page(
            request, case_id, subject=subject, body=body, next_update_due=next_update_due,
            key=key, errors={**errors, **exc.errors},
        )  # fmt: skip
    events.emit_actions_completed(
        improvement_id=sent.improvement_id,
        action_ids=sent.completed_action_ids,
        owner_id=colleague.id,
    )
    return RedirectResponse(f"/cases/{case_id}?done=sent", status_code=303)
