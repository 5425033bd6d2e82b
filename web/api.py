"""The JSON API (described at /docs): submit improvements, list them, read one with its story."""

from collections.abc import Callable, Coroutine
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, StrictBool, field_validator
from sqlalchemy import func
from sqlmodel import Session, select
from starlette.exceptions import HTTPException
from starlette.responses import Response as StarletteResponse
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from improve.settings import settings
from models import (
    Access,
    ActionStatus,
    ApprovalStatus,
    Category,
    Channel,
    Colleague,
    ContactFormat,
    Customer,
    CustomerConsent,
    Improvement,
    ImprovementCreate,
    ImprovementPublic,
    Purpose,
    Status,
)
from models.db import MAX_INT, get_engine
from models.idempotency import MAX_KEY_LENGTH
from tasks.consent import record_consent
from tasks.contact import CustomerNotFound, set_contact_preferences, window_text
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


class ImprovementDetail(ImprovementOut):
    approvals: list[ApprovalOut]
    actions: list[ActionOut]
    history: list[TransitionOut]
    customer_ids: list[int]
    partner_ids: list[int]


def _error(description: str, headers: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A documented refusal: always the ErrorBody JSON, with any headers it always carries."""
    answer: dict[str, Any] = {"model": ErrorBody, "description": description}
    if headers:
        answer["headers"] = {name: {**header, "required": True} for name, header in headers.items()}
    return answer


ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error(
        "No API token, or one that is not valid or was revoked.",
        {
            "WWW-Authenticate": {
                "description": "`Bearer`: send `Authorization: Bearer <API token>`.",
                "schema": {"type": "string", "pattern": "^Bearer"},
            }
        },
    ),
    403: _error("Signed in, but your role does not allow it: the detail says what is missing."),
    404: _error("No such improvement."),
    422: _error("Bad input: one message per field."),
    429: _error(
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


class _Route(APIRoute):
    """An API route that refuses the way the rest of the API does.

    - A 405 lists in `Allow` every method the path takes: Starlette answers from the first route
      on the path alone, so `PUT /api/improvements` said `Allow: POST` though GET works too.
    - A body FastAPI cannot even read as JSON text (not UTF-8, nested too deep) is a 422 naming
      `body`, like any other bad JSON, not a bare 400 that names nothing.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            allowed = sorted(
                method
                for route in router.routes
                if isinstance(route, APIRoute) and route.matches(scope)[0] != Match.NONE
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
    route_class=_Route,
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
            )
        )


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
    responses={403: ERRORS[403], 404: _error("No such customer.")},
)
def read_customer_preferences(customer_id: Id, colleague: OPERATIONS) -> CustomerPreferences:
    """A customer's preferences and consents (operations and admins: contact details)."""
    with Session(get_engine()) as session:
        return _preferences(session, customer_id)


@router.patch(
    "/customers/{customer_id}/preferences",
    response_model=CustomerPreferences,
    responses={403: ERRORS[403], 404: _error("No such customer.")},
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
