"""The JSON API (described at /docs): submit improvements, list them, read one with its story."""

import re
from collections.abc import Callable, Coroutine
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, Field, StrictBool, ValidationInfo, field_validator
from pydantic.json_schema import JsonDict
from sqlalchemy import func
from sqlmodel import Session, select
from starlette.exceptions import HTTPException
from starlette.responses import Response as StarletteResponse
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from improve import events
from improve.settings import settings
from models import (
    RECORD_UNITS,
    Access,
    ActionStatus,
    ApprovalStatus,
    Basis,
    Case,
    CaseStatus,
    Category,
    Channel,
    Colleague,
    ContactFormat,
    Customer,
    CustomerConsent,
    Improvement,
    ImprovementCreate,
    ImprovementPublic,
    Per,
    Purpose,
    RecordKind,
    Status,
)
from models.db import MAX_INT, get_engine, session_scope, utcnow
from models.idempotency import MAX_KEY_LENGTH
from models.improvement import NO_NUL_PATTERN, WHITESPACE
from tasks import cases, records, updates
from tasks.consent import record_consent
from tasks.contact import CustomerNotFound, set_contact_preferences, window_text
from tasks.estimates import comparison, comparison_by_category, working
from tasks.lifecycle import get_improvement
from web.auth import Staff, require
from web.forms import Id
from web.views import improvement_view, submit


class ErrorBody(BaseModel):
    detail: str = Field(description="What is wrong, in one sentence.")
    errors: dict[str, str] = Field(default_factory=dict, description="One message per bad field.")


class ImprovementOut(ImprovementPublic):
    measured_saving: float | None = None
    measured_kwh: float | None = None
    measured_kg_co2e: float | None = None
    measured_kg_waste: float | None = None
    measured_sheets_paper: float | None = None
    factor_set_id: int | None = Field(
        default=None, description="The factor set its figures were worked out with, if any."
    )
    url: str = Field(description="The improvement's page in the web app.")


class ImprovementList(BaseModel):
    items: list[ImprovementOut]
    total: int
    limit: int
    offset: int


class ApprovalOut(BaseModel):
    id: int
    level: int
    status: ApprovalStatus
    approver_id: int
    approver_name: str | None
    on_behalf_of_id: int | None
    on_behalf_of_name: str | None
    reason: str
    comment: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    reminded_at: datetime | None
    escalated_at: datetime | None


class ActionOut(BaseModel):
    id: int
    position: int
    title: str
    owner_id: int | None
    owner_name: str | None
    due_on: date
    status: ActionStatus
    automatic_step: str | None
    measured_saving: float | None
    measured_kwh: float | None
    measured_kg_co2e: float | None
    measured_kg_waste: float | None
    result_note: str
    completed_by: str | None
    completed_at: datetime | None


class TransitionOut(BaseModel):
    from_status: Status | None
    to_status: Status
    actor: str
    channel: Channel
    reason: str
    at: datetime


class FactorOut(BaseModel):
    factor: str = Field(description='Improve\'s name for it, e.g. "van_mile".')
    times: float = Field(description="How many of the factor's units one unit of activity is.")
    kg_co2e_per_unit: float
    unit: str
    source: str = Field(description="The published document, its table and the row's ID.")
    note: str = Field(description="How a derived factor is derived; empty when published as is.")


class WorkingLine(BaseModel):
    """One activity line and what it comes to a year."""

    basis: Basis = Field(description="forecast (the estimate) or actual (the measured result).")
    activity: str
    quantity: float
    per: Per
    text: str = Field(description='e.g. "2,000 fewer letters posted a month".')
    per_year: float
    unit: str
    factor_set: str
    factors: list[FactorOut]
    kg_co2e: float
    kwh: float
    kg_waste: float
    sheets_paper: float
    saving: float


class ComparisonRow(BaseModel):
    measure: str = Field(description="kg_co2e, kwh, kg_waste, sheets_paper or saving (£).")
    forecast: float
    actual: float | None = Field(description="null until it is measured.")
    variance: float | None = Field(description="actual − forecast.")
    variance_percent: float | None = Field(description="The variance as % of the forecast.")


class ImprovementDetail(ImprovementOut):
    working: list[WorkingLine] = Field(description="How the figures were worked out.")
    forecast_vs_actual: list[ComparisonRow]
    approvals: list[ApprovalOut]
    actions: list[ActionOut]
    history: list[TransitionOut]
    customer_ids: list[int]
    partner_ids: list[int]


def error_response(
    description: str, headers: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A documented refusal: always the ErrorBody JSON, with any headers it always carries."""
    answer: dict[str, Any] = {"model": ErrorBody, "description": description}
    if headers:
        answer["headers"] = {name: {**header, "required": True} for name, header in headers.items()}
    return answer


ERRORS: dict[int | str, dict[str, Any]] = {
    401: error_response(
        "No API token, or one that is not valid or was revoked.",
        {
            "WWW-Authenticate": {
                "description": "`Bearer`: send `Authorization: Bearer <API token>`.",
                "schema": {"type": "string", "pattern": "^Bearer"},
            }
        },
    ),
    403: error_response(
        "Signed in, but your role does not allow it: the detail says what is missing."
    ),
    404: error_response("No such improvement."),
    422: error_response("Bad input: one message per field."),
    429: error_response(
        "Too many refused tokens from this client: wait, then try again.",
        {
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    ),
}
# What any route of this router may answer; each route adds the refusals only it can give.
EVERY_ROUTE = (401, 422, 429)


class ApiRoute(APIRoute):
    """An API route that refuses the way the rest of the API does.

    - A 405 lists in `Allow` every method the path takes: Starlette answers from the first route
      on the path alone, so `PUT /api/improvements` said `Allow: POST` though GET works too.
    - A body FastAPI cannot even read as JSON text (not UTF-8, nested too deep) is a 422 naming
      `body`, like any other bad JSON, not a bare 400 that names nothing.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            # Every API route the app serves, whichever router holds it (web/partners.py and
            # web/initiatives.py have their own): the app's router is in the scope.
            served = iter_route_contexts(scope["router"].routes) if "router" in scope else ()
            allowed = sorted(
                method
                for route in served
                if (route.path or "").startswith("/api/")
                and isinstance(route.original_route, APIRoute)
                and route.matches(scope)[0] != Match.NONE
                for method in route.methods or ()
            )
            raise HTTPException(405, headers={"Allow": ", ".join(allowed or sorted(self.methods))})
        await super().handle(scope, receive, send)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, StarletteResponse]]:
        handler = super().get_route_handler()

        async def unreadable_body_is_bad_json(request: Request) -> StarletteResponse:
            try:
                return await handler(request)
            except HTTPException as exc:
                cause = exc.__cause__
                if exc.status_code != 400 or not isinstance(cause, ValueError | RecursionError):
                    raise
                reason = "not UTF-8 text" if isinstance(cause, UnicodeDecodeError) else str(cause)
                raise RequestValidationError(
                    [
                        {
                            "type": "json_invalid",
                            "loc": ("body",),
                            "msg": "JSON decode error",
                            "input": {},
                            "ctx": {"error": reason},
                        }
                    ]
                ) from exc

        return unreadable_body_is_bad_json


router = APIRouter(
    prefix="/api",
    tags=["api"],
    route_class=ApiRoute,
    responses={status: ERRORS[status] for status in EVERY_ROUTE},
)


def _fields(row: object, model: type[BaseModel], **extra: object) -> dict[str, object]:
    """The attributes of a table row that `model` answers with (never a token hash).

    Read attribute by attribute: a row loaded from the database holds enum columns as plain
    strings, which the answer's model validates back into enums.
    """
    values = {name: getattr(row, name) for name in model.model_fields if hasattr(row, name)}
    return {**values, **extra}


def _out(improvement: Improvement) -> ImprovementOut:
    return ImprovementOut.model_validate(
        _fields(
            improvement,
            ImprovementOut,
            url=f"{settings.base_url}/improvements/{improvement.id}",
        )
    )


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        pattern=r"^[!-~]+$",
        description=(
            "Any unique value of yours (a UUID, say), printable ASCII without spaces. Sent again "
            "with the same body within 24 hours, the request creates nothing and answers with "
            "the improvement the first one made, with `Idempotent-Replayed: true`; sent with a "
            "different body it is a 422 naming `Idempotency-Key`. Keys are per caller."
        ),
    ),
]


@router.post(
    "/improvements",
    status_code=201,
    response_model=ImprovementOut,
    responses={
        201: {
            "headers": {
                "Location": {
                    "description": "The new improvement in this API.",
                    "required": True,
                    "schema": {"type": "string"},
                },
                "Idempotent-Replayed": {
                    "description": "`true` when an earlier request with this `Idempotency-Key` "
                    "made the improvement and this one created nothing.",
                    "schema": {"type": "string", "enum": ["true"]},
                },
            }
        },
        403: ERRORS[403],
    },
)
def create_improvement(
    data: ImprovementCreate,
    response: Response,
    colleague: Staff,
    idempotency_key: IdempotencyKeyHeader = None,
) -> ImprovementOut:
    """Submit an improvement as yourself (or, with the operations role, for someone else).

    It is stored, then announced so it is routed to its approvers. With an `Idempotency-Key`
    a retry answers with the improvement the first request made instead of making another."""
    improvement_id, replayed = submit(
        data,
        channel=Channel.api,
        by=colleague,
        key=f"api:{idempotency_key}" if idempotency_key else None,
        field="Idempotency-Key",
    )
    with Session(get_engine()) as session:
        improvement = get_improvement(session=session, improvement_id=improvement_id)
        response.headers["Location"] = f"/api/improvements/{improvement_id}"
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return _out(improvement)


@router.get("/improvements", response_model=ImprovementList)
def list_improvements(
    status: Status | None = None,
    category: Category | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> ImprovementList:
    """Improvements, newest first, optionally of one status and/or category."""
    query = select(Improvement)
    count = select(func.count()).select_from(Improvement)
    if status is not None:
        query = query.where(Improvement.status == status)
        count = count.where(Improvement.status == status)
    if category is not None:
        query = query.where(Improvement.category == category)
        count = count.where(Improvement.category == category)
    with Session(get_engine()) as session:
        rows = session.exec(
            query.order_by(Improvement.id.desc()).offset(offset).limit(limit)  # type: ignore[union-attr]
        ).all()
        total = session.exec(count).one()
        return ImprovementList(
            items=[_out(row) for row in rows], total=int(total), limit=limit, offset=offset
        )


@router.get(
    "/improvements/{improvement_id}", response_model=ImprovementDetail, responses={404: ERRORS[404]}
)
def read_improvement(improvement_id: Id) -> ImprovementDetail:
    """One improvement with its approvals, action items and whole history."""
    with Session(get_engine()) as session:
        view = improvement_view(session, improvement_id)
        return ImprovementDetail.model_validate(
            _fields(
                view.improvement,
                ImprovementDetail,
                url=f"{settings.base_url}/improvements/{improvement_id}",
                approvals=[
                    _fields(
                        a.request,
                        ApprovalOut,
                        approver_name=a.approver.name if a.approver else None,
                        on_behalf_of_name=a.on_behalf_of.name if a.on_behalf_of else None,
                    )
                    for a in view.approvals
                ],
                actions=[
                    _fields(a.item, ActionOut, owner_name=a.owner.name if a.owner else None)
                    for a in view.actions
                ],
                history=[_fields(t, TransitionOut) for t in view.history],
                customer_ids=[c.id for c in view.customers],
                partner_ids=[p.id for p in view.partners],
                working=working(session=session, improvement_id=improvement_id),
                forecast_vs_actual=comparison(view.improvement),
            )
        )


class Impact(BaseModel):
    """Completed improvements' forecast against what was measured."""

    by_category: dict[Category, list[ComparisonRow]]
    total: list[ComparisonRow]


@router.get("/impact", response_model=Impact)
def read_impact() -> Impact:
    """Forecast, actual and variance per measure: for each category and in total."""
    with Session(get_engine()) as session:
        rows = comparison_by_category(session=session)
    total = rows.pop("total")
    return Impact.model_validate({"by_category": rows, "total": total})


# --- customers' preferences ----------------------------------------------------------------------


class CustomerPreferences(BaseModel):
    """How and when a customer is written to, and their yes or no to each purpose."""

    id: int
    name: str
    language: str = Field(description="en or cy: the language of their emails.")
    contact_format: ContactFormat = Field(description="html, or text for plain text only.")
    window: str = Field(description='When non-urgent email may arrive, e.g. "09:00–17:00 …".')
    weekly_limit: int | None = Field(description="Most non-essential emails in any seven days.")
    consents: dict[Purpose, bool] = Field(description="Their yes or no to each purpose.")


class CustomerPreferencesChange(BaseModel):
    """What to change; a field left out stays as it is (weekly_limit null takes the limit away)."""

    language: Literal["en", "cy"] | None = Field(None, description="en or cy.")
    contact_format: ContactFormat | None = None
    window: str | None = Field(
        None,
        pattern=r"^(any|([01]?\d|2[0-3]):[0-5]\d-([01]?\d|2[0-3]):[0-5]\d)$",
        description='"09:00-17:00" (or "22:00-06:00", across midnight), or "any" for none.',
    )
    weekly_limit: int | None = Field(None, ge=0, le=100)
    consents: dict[Purpose, StrictBool] = Field(
        default_factory=dict, description="As the customer told you: recorded with channel api."
    )

    @field_validator("weekly_limit", mode="before")
    @classmethod
    def _a_number(cls, value: object) -> object:
        # JSON's true and "2" are no numbers, though pydantic would read them as 1 and 2 (as
        # ImprovementCreate refuses them too).
        if isinstance(value, bool | str):
            raise ValueError("must be a number")
        return value


def _preferences(session: Session, customer_id: int) -> CustomerPreferences:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise CustomerNotFound(f"#{customer_id}")
    consents = session.exec(
        select(CustomerConsent).where(CustomerConsent.customer_id == customer_id)
    ).all()
    return CustomerPreferences(
        id=customer_id,
        name=customer.name,
        language=customer.language,
        contact_format=customer.contact_format,
        window=window_text(customer),
        weekly_limit=customer.weekly_limit,
        consents={Purpose(c.purpose): c.granted for c in consents},
    )


OPERATIONS = Annotated[Colleague, Depends(require(Access.operations))]


@router.get(
    "/customers/{customer_id}/preferences",
    response_model=CustomerPreferences,
    responses={403: ERRORS[403], 404: error_response("No such customer.")},
)
def read_customer_preferences(customer_id: Id, colleague: OPERATIONS) -> CustomerPreferences:
    """A customer's preferences and consents (operations and admins: contact details)."""
    with Session(get_engine()) as session:
        return _preferences(session, customer_id)


@router.patch(
    "/customers/{customer_id}/preferences",
    response_model=CustomerPreferences,
    responses={403: ERRORS[403], 404: error_response("No such customer.")},
)
def change_customer_preferences(
    customer_id: Id, change: CustomerPreferencesChange, colleague: OPERATIONS
) -> CustomerPreferences:
    """Change how a customer is written to; emails already waiting follow the change."""
    with Session(get_engine()) as session:
        customer = set_contact_preferences(
            session=session,
            customer_id=customer_id,
            language=change.language,
            contact_format=change.contact_format,
            window=change.window,
            weekly_limit=change.weekly_limit,
            no_weekly_limit="weekly_limit" in change.model_fields_set
            and change.weekly_limit is None,
        )
        for purpose, granted in change.consents.items():
            record_consent(
                session=session, customer=customer, purpose=purpose, granted=granted, channel="api"
            )
        session.commit()
        return _preferences(session, customer_id)


# --- customer cases ----------------------------------------------------------------------------

CASE_NOT_FOUND = error_response("No such case.")
CASE_CLOSED = error_response("The case is closed: it cannot change.")


# What the domain checks (tasks/cases.py), told to API clients; it answers 422 naming the field.
TEXT: JsonDict = {"pattern": NO_NUL_PATTERN}
SOME_TEXT: JsonDict = {"pattern": rf"^[^\x00]*[^{WHITESPACE}\x00][^\x00]*$"}  # not only spaces
FUTURE = "A time in the future (UTC without a zone)"


class _Times(BaseModel):
    """JSON text only, as the document says: pydantic alone would take 1700000000 as a time, or
    "2026-12-01" as midnight."""

    @field_validator("promised_on", "next_update_due", mode="before", check_fields=False)
    @classmethod
    def _iso_text(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            return value
        is_day = info.field_name == "promised_on"
        shape = r"\d{4}-\d{2}-\d{2}" if is_day else r"\d{4}-\d{2}-\d{2}[Tt ].+"
        if not isinstance(value, str) or not re.fullmatch(shape, value):
            example = "2026-12-01" if is_day else "2026-12-01T09:30:00Z"
            raise ValueError(f"must be a {'date' if is_day else 'date and time'} like {example}")
        return value


class CaseCreate(_Times):
    customer_email: str = Field(
        max_length=254, description="A customer Improve knows.", json_schema_extra=SOME_TEXT
    )
    subject: str = Field(
        max_length=200,
        description="What the case is about, in a line.",
        json_schema_extra=SOME_TEXT,
    )
    details: str = Field(default="", max_length=10_000, json_schema_extra=TEXT)
    owner_email: str | None = Field(
        default=None,
        max_length=254,
        description="Who owns it (a colleague); leave it out or blank to own it yourself.",
        json_schema_extra={
            "anyOf": [{"type": "string", "maxLength": 254, **TEXT}, {"type": "null"}]
        },
    )
    promised_on: date | None = Field(default=None, description="What the customer was promised.")
    next_update_due: datetime | None = Field(
        default=None,
        description=f"{FUTURE}: when the customer must next hear from us; leave it out for the "
        "usual number of days.",
    )


class CaseDelay(_Times):
    reason: str = Field(
        max_length=2000, description="Why the case is off plan.", json_schema_extra=SOME_TEXT
    )
    next_update_due: datetime | None = Field(
        default=None,
        description=f"{FUTURE}: when the customer next hears from us; leave it out for the "
        "usual number of days. A delay always sets it.",
    )


class CaseChange(_Times):
    """Only what is given changes; `delay` marks it off plan, `close` ends it (after the rest)."""

    subject: str | None = Field(
        default=None,
        max_length=200,
        json_schema_extra={
            "anyOf": [{"type": "string", "maxLength": 200, **SOME_TEXT}, {"type": "null"}]
        },
    )
    details: str | None = Field(
        default=None,
        max_length=10_000,
        json_schema_extra={
            "anyOf": [{"type": "string", "maxLength": 10_000, **TEXT}, {"type": "null"}]
        },
    )
    owner_email: str | None = Field(
        default=None,
        max_length=254,
        description="Give it to this colleague; blank or left out: the owner stays.",
        json_schema_extra={
            "anyOf": [{"type": "string", "maxLength": 254, **TEXT}, {"type": "null"}]
        },
    )
    promised_on: date | None = Field(default=None, description="null clears it.")
    next_update_due: datetime | None = Field(default=None, description=FUTURE)
    delay: CaseDelay | None = None
    close: bool = Field(default=False, description="Close it: no more updates fall due.")
    outcome: str = Field(
        default="",
        max_length=2000,
        description="How it ended, when closing.",
        json_schema_extra=TEXT,
    )


class CaseUpdateCreate(_Times):
    """Leave subject or body out to send the draft that the case's web page previews."""

    subject: str | None = Field(
        default=None,
        max_length=200,
        json_schema_extra={
            "anyOf": [{"type": "string", "maxLength": 200, **SOME_TEXT}, {"type": "null"}]
        },
    )
    body: str | None = Field(
        default=None,
        max_length=10_000,
        json_schema_extra={
            "anyOf": [{"type": "string", "maxLength": 10_000, **SOME_TEXT}, {"type": "null"}]
        },
    )
    next_update_due: datetime | None = Field(
        default=None, description=f"{FUTURE}; left out: the usual number of days."
    )


class CaseOut(BaseModel):
    id: int
    reference: str
    customer_id: int
    customer_name: str
    subject: str
    details: str
    owner_id: int
    owner_email: str
    status: CaseStatus
    promised_on: date | None
    next_update_due: datetime | None
    delay_reason: str
    overdue: bool = Field(description="Its next update is due now.")
    overdue_improvement_id: int | None = Field(
        description="The customer_update improvement raised because the update fell due."
    )
    created_at: datetime
    updated_at: datetime
    url: str


class CaseUpdateOut(BaseModel):
    id: int
    subject: str
    body: str
    sent_by: str
    channel: str
    email_id: int | None
    at: datetime


class CaseNoteOut(BaseModel):
    what: str
    note: str
    actor: str
    channel: str
    at: datetime


class CaseDetail(CaseOut):
    updates: list[CaseUpdateOut]
    history: list[CaseNoteOut]


class CaseList(BaseModel):
    items: list[CaseOut]
    total: int
    limit: int
    offset: int


def _case_out(session: Session, case: Case, model: type[CaseOut] = CaseOut, **extra: object):
    customer = session.get(Customer, case.customer_id)
    owner = session.get(Colleague, case.owner_id)
    return model.model_validate(
        _fields(
            case,
            model,
            reference=case.reference,
            customer_name=customer.name if customer else "",
            owner_email=owner.email if owner else "",
            overdue=cases.is_overdue(case, utcnow()),
            url=cases.case_url(case.id or 0),
            **extra,
        )
    )


def _case_detail(case_id: int) -> CaseDetail:
    with Session(get_engine()) as session:
        view = cases.case_view(session=session, case_id=case_id)
        detail = _case_out(
            session,
            view.case,
            CaseDetail,
            updates=[_fields(u, CaseUpdateOut) for u in view.updates],
            history=[_fields(n, CaseNoteOut) for n in view.notes],
        )
        assert isinstance(detail, CaseDetail)
        return detail


@router.get("/cases", response_model=CaseList)
def list_cases(
    status: CaseStatus | None = None,
    overdue: Annotated[
        bool | None, Query(description="true: the update is due now; false: it is not.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> CaseList:
    """Cases whose update is due soonest first, optionally of one status, overdue or not."""
    with Session(get_engine()) as session:
        rows, total = cases.list_cases(
            session=session,
            wanted=cases.CaseFilter(status=status, overdue=overdue),
            limit=limit,
            offset=offset,
        )
        return CaseList(
            items=[_case_out(session, row) for row in rows], total=total, limit=limit, offset=offset
        )


@router.get("/cases/{case_id}", response_model=CaseDetail, responses={404: CASE_NOT_FOUND})
def read_case(case_id: Id) -> CaseDetail:
    """One case with the updates sent and its whole history."""
    return _case_detail(case_id)


@router.post("/cases", status_code=201, response_model=CaseDetail)
def create_case(data: CaseCreate, response: Response, colleague: Staff) -> CaseDetail:
    """Open a case for a known customer; you own it unless `owner_email` names someone."""
    fields = data.model_dump()
    fields["owner_email"] = (data.owner_email or "").strip() or None
    with session_scope() as session:
        case = cases.open_case(session=session, by=colleague, channel=Channel.api, **fields)
        case_id = case.id
    assert case_id is not None
    response.headers["Location"] = f"/api/cases/{case_id}"
    return _case_detail(case_id)


@router.patch(
    "/cases/{case_id}", response_model=CaseDetail, responses={404: CASE_NOT_FOUND, 409: CASE_CLOSED}
)
def change_case(case_id: Id, data: CaseChange, colleague: Staff) -> CaseDetail:
    """Change a case: its subject, details, owner, promise or next update; delay or close it."""
    changes = data.model_dump(exclude_unset=True, exclude={"delay", "close", "outcome"})
    if not (changes.get("owner_email") or "").strip():
        changes.pop("owner_email", None)
    if "promised_on" not in changes:
        changes["promised_on"] = cases.UNSET
    with session_scope() as session:
        cases.change_case(
            session=session, case_id=case_id, by=colleague, channel=Channel.api, **changes
        )
        if data.delay is not None:
            cases.mark_delayed(
                session=session, case_id=case_id, by=colleague, channel=Channel.api,
                reason=data.delay.reason, next_update_due=data.delay.next_update_due,
            )  # fmt: skip
        if data.close:
            cases.change_case(
                session=session, case_id=case_id, by=colleague, channel=Channel.api, close=True,
                reason=data.outcome,
            )  # fmt: skip
    return _case_detail(case_id)


@router.post(
    "/cases/{case_id}/updates",
    status_code=201,
    response_model=CaseUpdateOut,
    responses={404: CASE_NOT_FOUND, 409: CASE_CLOSED},
)
def send_case_update(
    case_id: Id,
    data: CaseUpdateCreate,
    response: Response,
    colleague: Staff,
    idempotency_key: IdempotencyKeyHeader = None,
) -> CaseUpdateOut:
    """Email the customer an update (the draft, or your own words) and move the next one on.

    With an `Idempotency-Key`, a retry sends nothing more and answers with the first update."""
    with session_scope() as session:
        draft = updates.preview_update(session=session, case_id=case_id)
        sent = updates.send_update(
            session=session, case_id=case_id, by=colleague, channel=Channel.api,
            subject=draft.subject if data.subject is None else data.subject,
            body=draft.body if data.body is None else data.body,
            next_update_due=data.next_update_due,
            key=f"api:{idempotency_key}" if idempotency_key else None,
        )  # fmt: skip
        out = CaseUpdateOut.model_validate(_fields(sent.update, CaseUpdateOut))
    if sent.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    events.emit_actions_completed(
        improvement_id=sent.improvement_id,
        action_ids=sent.completed_action_ids,
        owner_id=colleague.id,
    )
    return out


# --- service records -----------------------------------------------------------------------------

MAX_RECORDS_PER_REQUEST = 10_000
SomeText = Annotated[str | None, Query(max_length=120, pattern=NO_NUL_PATTERN)]


class RecordsIn(BaseModel):
    records: list[dict[str, Any]] = Field(
        max_length=MAX_RECORDS_PER_REQUEST,
        description=(
            "Each an object with key (your system's own id; leave it out and a hash of the "
            "fields is used), process (a new name creates it), kind ("
            + ", ".join(RecordKind)
            + "), occurred_at (ISO 8601; without a zone, the organisation's local time), "
            "quantity (0 or more, in the kind's unit), and optionally customer_email, "
            "partner_email (someone Improve knows), site, route, detail. A bad one is refused "
            "in the answer, naming it; the others go in."
        ),
    )


class RecordRefusal(BaseModel):
    field: str = Field(description='Which record and field: "records[3].quantity".')
    message: str


class RecordsImported(BaseModel):
    taken: int = Field(description="New records stored.")
    already: int = Field(description="Records whose key was already stored: sent before.")
    refused: list[RecordRefusal]
    processes_created: list[str]


class RecordOut(BaseModel):
    id: int
    key: str
    process: str
    kind: RecordKind
    unit: str = Field(description="The unit of quantity.")
    occurred_at: datetime
    quantity: float
    customer_id: int | None
    partner_id: int | None
    site: str
    route: str
    detail: str


class RecordList(BaseModel):
    items: list[RecordOut]
    total: int
    limit: int
    offset: int


class ProcessOut(BaseModel):
    id: int
    name: str
    description: str
    records: int = Field(description="How many records the process has.")
    by_kind: dict[str, int] = Field(description="How many of each kind.")


@router.post("/records", response_model=RecordsImported)
def create_records(data: RecordsIn) -> RecordsImported:
    """Store service records (up to 10,000 a request); sending the same ones again stores
    nothing more. Each record's own problems are in `refused`; the rest go in."""
    with Session(get_engine()) as session:
        summary = records.import_records(session=session, rows=data.records, first_line=0)
    return RecordsImported(
        taken=summary.taken,
        already=summary.already,
        refused=[
            RecordRefusal(field=f"records[{r.line}].{r.field}", message=r.message)
            for r in summary.refused
        ],
        processes_created=summary.processes_created,
    )


@router.get("/records", response_model=RecordList)
def list_records(
    kind: RecordKind | None = None,
    process: SomeText = None,
    customer: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    partner: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    site: SomeText = None,
    route: SomeText = None,
    since: Annotated[
        records.When | None, Query(description="A day, or a time (local unless it says).")
    ] = None,
    until: Annotated[
        records.When | None, Query(description="A day (all of it), or a time.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> RecordList:
    """Service records, latest first, with the filters of the records page (an evidence link's
    query string works here too)."""
    filters: dict[str, Any] = {
        "kind": kind, "process": process, "customer_id": customer, "partner_id": partner,
        "site": site, "route": route, "since": since, "until": until,
    }  # fmt: skip
    with Session(get_engine()) as session:
        rows = records.records_query(session=session, **filters, limit=limit, offset=offset)
        total = records.count_records(session=session, **filters)
        names = records.process_names(session=session)
        items = [
            RecordOut.model_validate(
                _fields(
                    row,
                    RecordOut,
                    process=names.get(row.process_id, ""),
                    unit=RECORD_UNITS[RecordKind(row.kind)],
                )
            )
            for row in rows
        ]
    return RecordList(items=items, total=total, limit=limit, offset=offset)


@router.get("/processes", response_model=list[ProcessOut])
def list_processes() -> list[ProcessOut]:
    """The service processes by name, with their records counted by kind."""
    with Session(get_engine()) as session:
        return [
            ProcessOut(
                id=row.process.id or 0,
                name=row.process.name,
                description=row.process.description,
                records=row.total,
                by_kind=row.by_kind,
            )  # fmt: skip
            for row in records.process_counts(session=session)
        ]
