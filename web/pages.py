"""Staff pages: the dashboard, a page per improvement, the submission form, asking for help."""

import hmac
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from pydantic import ValidationError
from sqlalchemy import func
from sqlmodel import Session, select
from starlette.responses import HTMLResponse, RedirectResponse, Response

from improve.errors import InvalidInput
from improve.formatting import payback_months
from models import (
    Access,
    ActionItem,
    Authority,
    Category,
    Channel,
    Colleague,
    Improvement,
    ImprovementCreate,
    Status,
)
from models.db import get_engine, session_scope, utcnow
from tasks.access import set_access
from tasks.estimates import comparison, comparison_by_category, working
from tasks.factors import activities, factor_sets
from tasks.help import active_colleagues, ask_for_help, help_panel
from tasks.impact import impact_totals
from tasks.outbox import resend
from tasks.policies import policies_of_improvement
from tasks.submission import KEY_LIFETIME, IdempotencyKeyReused
from web.auth import Staff, _mac, may_see_contacts, require
from web.forms import (
    ACTIVITY_ROWS,
    ESTIMATE_FIELDS,
    WHOLE_NUMBER_FIELDS,
    ActivityRows,
    Id,
    activity_field_names,
    activity_lines,
    parse_amount,
    plain_errors,
    row_errors,
    split_emails,
)
from web.render import page
from web.views import dashboard as load_dashboard
from web.views import improvement_view, submit

router = APIRouter(include_in_schema=False)
# Included before the public links in web/app.py: POST /actions/{id}/help would otherwise be
# taken for an action link whose token is "help".
help_router = APIRouter(include_in_schema=False)

ESTIMATE_LABELS = {
    "estimated_cost": ("One-off cost", "£"),
    "annual_saving": ("Saving a year", "£"),
    "kwh": ("Energy saved a year", "kWh"),
    "kg_co2e": ("Emissions avoided a year", "kg CO2e"),
    "kg_waste": ("Waste diverted a year", "kg"),
    "sheets_paper": ("Paper saved a year", "sheets"),
}

FIELD_NAMES = {
    "title": "Title",
    "description": "Description",
    "category": "Category",
    "submitter_email": "On behalf of",
    "customer_emails": "Customers affected",
    "partner_emails": "Service partners affected",
    **{name: text for name, (text, _unit) in ESTIMATE_LABELS.items()},
}


@router.get("/")
def dashboard(request: Request) -> HTMLResponse:
    """Improvements by status, the approvals waiting and for how long, recent ones, the impact."""
    with Session(get_engine()) as session:
        data = load_dashboard(session)
        totals = impact_totals(session=session)
        by_category = comparison_by_category(session=session)
    context = {"data": data, "totals": totals, "by_category": by_category}
    return page(request, "dashboard.html", context)


@router.get("/improvements")
def improvement_list(
    request: Request, status: str = "", category: str = "", limit: int = 200
) -> HTMLResponse:
    """Improvements, newest first, filtered by status and category (unknown values: no filter)."""
    wanted_status = status if status in Status.__members__ else None
    wanted_category = category if category in Category.__members__ else None
    query = select(Improvement)
    count = select(func.count()).select_from(Improvement)
    if wanted_status:
        query = query.where(Improvement.status == wanted_status)
        count = count.where(Improvement.status == wanted_status)
    if wanted_category:
        query = query.where(Improvement.category == wanted_category)
        count = count.where(Improvement.category == wanted_category)
    with Session(get_engine()) as session:
        rows = session.exec(
            query.order_by(Improvement.id.desc()).limit(max(1, min(limit, 1000)))  # type: ignore[union-attr]
        ).all()
        total = session.exec(count).one()
        context = {
            "rows": rows,
            "total": int(total),
            "status": wanted_status,
            "category": wanted_category,
            "statuses": list(Status),
            "categories": list(Category),
        }
        return page(request, "improvements.html", context)


@router.get("/improvements/{improvement_id}")
def improvement_page(request: Request, improvement_id: Id, colleague: Staff) -> HTMLResponse:
    """Everything about one improvement: estimates, results, people, approvals, plan, history."""
    with Session(get_engine()) as session:
        view = improvement_view(session, improvement_id)
        imp = view.improvement
        people = active_colleagues(session)
        context = {
            # Asking a colleague for help, beside each action item (templates/web/_help.html).
            "help_panels": {
                a.item.id: help_panel(
                    session=session,
                    signed_in_id=colleague.id,
                    action_id=a.item.id,
                    colleagues=people,
                )
                for a in view.actions
            },
            "see_contacts": may_see_contacts(colleague),
            "view": view,
            "imp": imp,
            "labels": ESTIMATE_LABELS,
            "payback": payback_months(imp.estimated_cost, imp.annual_saving),
            "measured": {
                "annual_saving": imp.measured_saving,
                "kwh": imp.measured_kwh,
                "kg_co2e": imp.measured_kg_co2e,
                "kg_waste": imp.measured_kg_waste,
                "sheets_paper": imp.measured_sheets_paper,
            },
            "working": working(session=session, improvement_id=improvement_id),
            "comparison": comparison(imp),
            "policies": policies_of_improvement(session=session, improvement_id=improvement_id),
        }
        return page(request, "improvement.html", context)


# --- submission ------------------------------------------------------------------------------


class SubmitForm(ActivityRows):
    """The fields of the submission form, exactly as typed (checked below, kept on error)."""

    title: str = ""
    description: str = ""
    category: str = ""
    submitter_email: str = ""
    estimated_cost: str = ""
    annual_saving: str = ""
    kwh: str = ""
    kg_co2e: str = ""
    kg_waste: str = ""
    sheets_paper: str = ""
    customer_emails: str = ""
    partner_emails: str = ""
    # One per rendered form (see new_form_token): sent twice, it makes one improvement.
    form_token: str = ""


def new_form_token(colleague_id: int) -> str:
    """A random one-time token for one rendering of the form, signed for this colleague.

    Signed, not stored: rendering the form writes nothing. What a token made is remembered
    under the key "form:<issued>.<nonce>" when it is used (tasks.submission.remember_submission).
    """
    body = f"{int(utcnow().timestamp())}.{secrets.token_urlsafe(16)}"
    return f"{body}.{_mac('submit-form', f'{colleague_id}.{body}')}"


def form_key(token: str, colleague_id: int) -> str | None:
    """The idempotency key of a form token this app gave this colleague in the last
    KEY_LIFETIME, or None for a missing, forged, foreign or too old one."""
    body, _, mac = token.rpartition(".")
    issued, _, nonce = body.partition(".")
    if not (issued.isdigit() and nonce and mac):
        return None
    if not hmac.compare_digest(mac, _mac("submit-form", f"{colleague_id}.{body}")):
        return None
    # Older than the key it makes would live: by now a repeat would no longer be recognised.
    if datetime.fromtimestamp(int(issued), UTC) <= utcnow() - KEY_LIFETIME:
        return None
    return f"form:{body}"


def _submit_page(
    request: Request,
    form: SubmitForm,
    errors: dict[str, str],
    colleague: Colleague,
    status_code: int = 200,
) -> HTMLResponse:
    assert colleague.id is not None
    order = list({**FIELD_NAMES, **activity_field_names()})
    # A token not yet used is kept, so correcting a field and sending again stays one submission.
    token = form.form_token if form_key(form.form_token, colleague.id) else ""
    context: dict[str, Any] = {
        "values": form.model_dump(exclude={"form_token"}),
        "form_token": token or new_form_token(colleague.id),
        # In the order of the form, so the summary reads top to bottom like the page.
        "errors": dict(
            sorted(errors.items(), key=lambda e: order.index(e[0]) if e[0] in order else 99)
        ),
        "categories": list(Category),
        "labels": ESTIMATE_LABELS,
        "field_names": {**FIELD_NAMES, **activity_field_names(), "form_token": "This form"},
        "activities": activities(),
        "activity_count": ACTIVITY_ROWS,
        "on_behalf": Access(colleague.access).includes(Access.operations),
    }
    return page(request, "submit.html", context, status_code=status_code)


@router.get("/submit")
def submit_form(request: Request, colleague: Staff) -> HTMLResponse:
    return _submit_page(request, SubmitForm(), {}, colleague)


@router.post("/submit")
def submit_from_form(
    request: Request, form: Annotated[SubmitForm, Form()], colleague: Staff
) -> Response:
    """Validate on the server, show each problem beside its field, or store and go to its page."""
    errors: dict[str, str] = {}
    data: dict[str, Any] = {
        "title": form.title,
        "description": form.description.strip(),
        "category": form.category,
        "submitter_email": form.submitter_email.strip() or None,
        "customer_emails": split_emails(form.customer_emails),
        "partner_emails": split_emails(form.partner_emails),
    }
    for name in ESTIMATE_FIELDS:
        value = parse_amount(getattr(form, name), name, errors, whole=name in WHOLE_NUMBER_FIELDS)
        if value is not None:
            data[name] = value
    data["activities"], rows = activity_lines(form, errors)
    if not form.category:
        errors["category"] = "choose a category"
    try:
        create = ImprovementCreate.model_validate(data)
    except ValidationError as exc:
        for field, message in row_errors(plain_errors(exc.errors()), rows).items():
            errors.setdefault(field, message)
        create = None
    assert colleague.id is not None
    key = form_key(form.form_token, colleague.id)
    if key is None:
        errors["form_token"] = (
            "had expired or was not one this page gave you, so nothing was submitted; "
            "check the fields and submit again"
        )
    if create is not None and not errors:
        try:
            improvement_id, _replayed = submit(
                create, channel=Channel.web, by=colleague, key=key, field="form_token"
            )
        except IdempotencyKeyReused as exc:
            # Sent again, say from the back button: the form already made its improvement.
            improvement_id = exc.improvement_id
        except InvalidInput as exc:  # a missing factor names its line: activities[n].activity
            errors.update(row_errors(exc.errors, rows))
            return _submit_page(request, form, errors, colleague, status_code=422)
        return RedirectResponse(f"/improvements/{improvement_id}", status_code=303)
    return _submit_page(request, form, errors, colleague, status_code=422)


# --- asking a colleague for help --------------------------------------------------------------


@help_router.post("/cases/{case_id}/help")
def ask_help_on_case(
    case_id: Id,
    colleague: Staff,
    helper_email: Annotated[str, Form()] = "",
    message: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Ask a colleague for help on a case; they are emailed a link to accept or decline."""
    assert colleague.id is not None
    with session_scope() as session:
        ask_for_help(
            session=session,
            asked_by_id=colleague.id,
            helper_email=helper_email,
            message=message,
            case_id=case_id,
        )
    return RedirectResponse(f"/cases/{case_id}#help-case-{case_id}", status_code=303)


@help_router.post("/actions/{action_id}/help")
def ask_help_on_action(
    action_id: Id,
    colleague: Staff,
    helper_email: Annotated[str, Form()] = "",
    message: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Ask a colleague for help on an action item; back to its improvement's page."""
    assert colleague.id is not None
    with session_scope() as session:
        asked = ask_for_help(
            session=session,
            asked_by_id=colleague.id,
            helper_email=helper_email,
            message=message,
            action_id=action_id,
        )
        item = session.get(ActionItem, asked.action_id)
        assert item is not None
        improvement_id = item.improvement_id
    return RedirectResponse(
        f"/improvements/{improvement_id}#help-action-{action_id}", status_code=303
    )


# --- colleagues ------------------------------------------------------------------------------


def _colleagues_page(
    request: Request, colleague: Colleague, *, changed: str = "", error: str = ""
) -> HTMLResponse:
    with Session(get_engine()) as session:
        people = session.exec(select(Colleague).order_by(Colleague.name)).all()  # type: ignore[arg-type]
        authorities = session.exec(
            select(Authority).order_by(Authority.category, Authority.level)  # type: ignore[arg-type]
        ).all()
    held: dict[int, list[Authority]] = {}
    for authority in authorities:
        held.setdefault(authority.colleague_id, []).append(authority)
    context = {
        "rows": [(person, held.get(person.id or -1, [])) for person in people],
        "roles": list(Access),
        "can_change": Access(colleague.access).includes(Access.admin),
        "changed": changed,
        "error": error,
    }
    return page(request, "colleagues.html", context, status_code=422 if error else 200)


@router.get("/colleagues")
def colleague_list(request: Request, colleague: Staff) -> HTMLResponse:
    """Every colleague with their authority and role; admins change roles here."""
    return _colleagues_page(request, colleague)


@router.post("/colleagues/access")
def change_access(
    request: Request,
    admin: Annotated[Colleague, Depends(require(Access.admin))],
    email: Annotated[str, Form()] = "",
    access: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Give a colleague a role (admins only)."""
    try:
        with session_scope() as session:
            changed = set_access(session=session, email=email, access=access, by=admin.email)
            message = f"{changed.name} now has the {changed.access} role."
    except InvalidInput as exc:
        return _colleagues_page(request, admin, error=str(exc))
    return _colleagues_page(request, admin, changed=message)


# --- conversion factors ----------------------------------------------------------------------


@router.get("/factors")
def factor_list(request: Request) -> HTMLResponse:
    """Every loaded factor set with its factors and sources, and which is in force (read-only:
    `improve factors import` and `use` change them)."""
    with session_scope() as session:  # the shipped set is loaded on first use
        sets = factor_sets(session=session)
        return page(request, "factors.html", {"sets": sets, "activities": activities()})


# --- emails ----------------------------------------------------------------------------------


@router.post("/improvements/{improvement_id}/emails/{email_id}/resend")
def resend_email(
    improvement_id: Id,
    email_id: Id,
    colleague: Annotated[Colleague, Depends(require(Access.operations))],
) -> RedirectResponse:
    """Queue a failed email about this improvement again (operations and admins); the outbox
    sends it."""
    with session_scope() as session:
        resend(session=session, email_id=email_id, by=colleague.name, improvement_id=improvement_id)
    return RedirectResponse(f"/improvements/{improvement_id}#emails", status_code=303)
