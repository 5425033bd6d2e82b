"""The JSON API (described at /docs): submit improvements, list them, read one with its story."""

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import Session, select

from improve.settings import settings
from models import (
    ActionStatus,
    ApprovalStatus,
    Category,
    Channel,
    Improvement,
    ImprovementCreate,
    ImprovementPublic,
    Status,
)
from models.db import MAX_INT, get_engine
from web.auth import Staff
from web.forms import Id
from web.views import improvement_view, submit

router = APIRouter(prefix="/api", tags=["api"])


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


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such improvement."},
    422: {"model": ErrorBody, "description": "Bad input: one message per field."},
}


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


@router.post(
    "/improvements", status_code=201, response_model=ImprovementOut, responses={422: ERRORS[422]}
)
def create_improvement(
    data: ImprovementCreate, response: Response, colleague: Staff
) -> ImprovementOut:
    """Submit an improvement as yourself (or, with the operations role, for someone else).

    It is stored, then announced so it is routed to its approvers."""
    improvement_id = submit(data, channel=Channel.api, by=colleague)
    with Session(get_engine()) as session:
        improvement = session.get(Improvement, improvement_id)
        assert improvement is not None
        response.headers["Location"] = f"/api/improvements/{improvement_id}"
        return _out(improvement)


@router.get("/improvements", response_model=ImprovementList, responses={422: ERRORS[422]})
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


@router.get("/improvements/{improvement_id}", response_model=ImprovementDetail, responses=ERRORS)
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
